"""`lm-latent summarize`: mean and spread over seeds, refusing runs that are not seeds of one experiment."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import yaml

from lm_latent.cli import main


def write_run(root: Path, seed: int, acc: float, tokens: float, *, experiment="exp", n=200, lr=1e-3) -> Path:
    root.mkdir(parents=True)
    row = {"accuracy": acc, "mean_generated_tokens": tokens, "mean_latent_tokens": 1.0, "n": n, "seconds_per_example": 0.01}
    results = {
        "experiment": experiment,
        "seed": seed,
        "codebook": {"token_accuracy": 0.8, "token_accuracy_random_codes": 0.6, "exact_chunk_accuracy": 0.1,
                     "usage": 1.0, "perplexity": 50.0 + seed},
        "runs": {"latent_ar": {"valid": row}, "cot": {"valid": dict(row, accuracy=acc / 2)}},
    }
    (root / "results.json").write_text(json.dumps(results))
    (root / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "mixed": {"model": {"lr": lr}, "data": {"seed": seed}}}))
    return root


def test_mean_std_and_every_seed_value(tmp_path, capsys):
    dirs = [write_run(tmp_path / f"s{s}", s, acc, tok) for s, acc, tok in [(0, 0.5, 10.0), (1, 0.6, 12.0), (2, 0.7, 14.0)]]
    out = tmp_path / "summary.json"
    assert main(["summarize", *map(str, dirs), "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    acc = summary["runs"]["latent_ar"]["valid"]["accuracy"]
    assert acc["mean"] == pytest.approx(0.6)
    assert acc["std"] == pytest.approx(statistics.stdev([0.5, 0.6, 0.7]))  # sample std (n - 1): 0.1
    assert acc["values"] == [0.5, 0.6, 0.7]
    assert summary["runs"]["cot"]["valid"]["accuracy"]["mean"] == pytest.approx(0.3)
    assert summary["seeds"] == [0, 1, 2]
    assert summary["codebook"]["perplexity"]["mean"] == pytest.approx(51.0)
    table = capsys.readouterr().out
    assert "| latent_ar | valid | 200 | 60.0 ± 10.0 (50.0, 60.0, 70.0) | 12.0 ± 2.0 (10.0, 12.0, 14.0) |" in table


@pytest.mark.parametrize(
    "other, message",
    [
        ({"experiment": "another"}, "experiment differ"),
        ({"lr": 2e-3}, "configuration (other than seed) differ"),
        ({"seed": 0}, "share a seed"),
        ({"n": 100}, "different numbers of examples"),
    ],
)
def test_runs_that_are_not_seeds_of_one_experiment_are_refused(tmp_path, capsys, other, message):
    a = write_run(tmp_path / "a", 0, 0.5, 10.0)
    kwargs = {"seed": 1, **other}
    b = write_run(tmp_path / "b", kwargs.pop("seed"), 0.6, 12.0, **kwargs)
    assert main(["summarize", str(a), str(b)]) == 2
    assert message in capsys.readouterr().err


def test_an_unfinished_run_is_named(tmp_path, capsys):
    (tmp_path / "unfinished").mkdir()
    assert main(["summarize", str(tmp_path / "unfinished")]) == 2
    assert "unfinished/results.json: no results.json" in capsys.readouterr().err
