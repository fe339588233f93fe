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
        "runs": {"cot": {"valid": dict(row, accuracy=acc / 2)}, "latent_ar": {"valid": row}},  # sorted, as stored
    }
    (root / "results.json").write_text(json.dumps(results))
    (root / "config.yaml").write_text(yaml.safe_dump(
        {"seed": seed, "mixed": {"strategies": ["latent_ar", "cot"], "model": {"lr": lr}, "data": {"seed": seed}}}))
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
    assert table.index("| latent_ar |") < table.index("| cot |")  # the configured order, not results.json's


def test_task_figures_of_maze_runs_are_summarized(tmp_path, capsys):
    dirs = [write_run(tmp_path / f"s{s}", s, 0.5, 10.0) for s in (0, 1)]
    for d, g in zip(dirs, (0.2, 0.4)):
        results = json.loads((d / "results.json").read_text())
        results["runs"]["latent_ar"]["valid"].update(greedy_feasible=g, greedy_optimal=g / 2, greedy_mean_tokens=30.0)
        (d / "results.json").write_text(json.dumps(results))
    out = tmp_path / "summary.json"
    assert main(["summarize", *map(str, dirs), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert list(figures) == ["latent_ar"]  # cot's rows have no task figures
    assert figures["latent_ar"]["valid"]["greedy_feasible"]["mean"] == pytest.approx(0.3)
    table = capsys.readouterr().out
    assert "| latent_ar | valid | greedy_optimal | 15.0 ± 7.1 (10.0, 20.0) |" in table
    assert "| latent_ar | valid | greedy_mean_tokens | 30.0 ± 0.0 (30.0, 30.0) |" in table


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


# -- experiments/results/run_seeds.sh -----------------------------------------------------------------
RUN_SEEDS = Path(__file__).resolve().parents[1] / "experiments" / "results" / "run_seeds.sh"

# Stands in for `lm-latent`: `run` writes a finished run folder from its seed override (failing for
# seed 13), anything else goes to the real command line.
FAKE_LM_LATENT = """#!/bin/bash
if [ "$1" = run ]; then
  out=$4 seed=${5#seed=}
  echo "$@" >> "$ARGS_LOG"
  [ "$seed" = 13 ] && { echo "stage failed" >&2; exit 1; }
  exec {python} -c "import sys; sys.path.insert(0, '{tests}'); from test_summarize import write_run; from pathlib import Path; write_run(Path('$out'), $seed, 0.5 + $seed / 10, 10.0)"
fi
exec {python} -m lm_latent.cli "$@"
"""


def fake_lm_latent(tmp_path: Path) -> dict[str, str]:
    import os
    import sys

    fake = tmp_path / "lm-latent"
    fake.write_text(FAKE_LM_LATENT.replace("{python}", sys.executable).replace("{tests}", str(Path(__file__).parent)))
    fake.chmod(0o755)
    return dict(os.environ, LM_LATENT=str(fake), ARGS_LOG=str(tmp_path / "args.log"))


def test_run_seeds_runs_every_seed_then_summarizes(tmp_path):
    import subprocess

    env = fake_lm_latent(tmp_path)
    out = tmp_path / "runs"
    result = subprocess.run(["bash", str(RUN_SEEDS), "exp.yaml", str(out), "0", "1", "2"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    calls = sorted((tmp_path / "args.log").read_text().splitlines())
    assert calls == [f"run exp.yaml --out {out}/seed{s} seed={s}" for s in range(3)]  # the seed drives every stage
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    assert summary["runs"]["latent_ar"]["valid"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert "60.0 ± 10.0 (50.0, 60.0, 70.0)" in (out / "summary.md").read_text()


def test_run_seeds_reports_a_failed_seed_and_writes_no_summary(tmp_path):
    import subprocess

    env = fake_lm_latent(tmp_path)
    out = tmp_path / "runs"
    result = subprocess.run(["bash", str(RUN_SEEDS), "exp.yaml", str(out), "0", "13"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "a seed failed" in result.stderr and "rerun this command to resume" in result.stderr
    assert (out / "seed0" / "results.json").is_file() and not (out / "summary.json").exists()


def test_chain_checks_of_logic_sets_are_summarized(tmp_path, capsys):
    question = "Wumpuses are happy. Alex is a wumpus. True or false: Alex is happy."
    good = {"question": question, "text": "Alex is a wumpus. Wumpuses are happy.\nAlex is happy.\n### True"}
    invented = {"question": question, "text": "Alex is a wumpus. Wumpuses are sad.\nAlex is sad.\n### True"}
    dirs = []
    for seed, rows in [(0, [good, good]), (1, [good, invented])]:
        d = write_run(tmp_path / f"s{seed}", seed, 0.5, 10.0)
        for strategy in ("latent_ar", "cot"):
            (d / "eval" / strategy).mkdir(parents=True)
            (d / "eval" / strategy / "valid.json").write_text(json.dumps({"task": "prontoqa", "results": rows}))
        dirs.append(d)
    out = tmp_path / "summary.json"
    assert main(["summarize", *map(str, dirs), "--json", str(out)]) == 0
    checks = json.loads(out.read_text())["chains"]["latent_ar"]["valid"]
    assert checks["rules_in_question"]["values"] == [1.0, 0.5]
    assert checks["ends_at_query"]["values"] == [1.0, 0.5]
    assert checks["answer_follows_chain"]["mean"] == pytest.approx(0.75)
    assert "| cot | valid | rules_in_question | 75.0 ± 35.4 (100.0, 50.0) |" in capsys.readouterr().out


def test_a_check_missing_from_one_seed_is_left_out_not_a_crash(tmp_path):
    from lm_latent.pipeline.seeds import load_runs, summarize

    question = "Every terpus is a lempus. Tom is a terpus. Is Tom a lempus or scrompus?"
    chain = {"question": question, "text": "Tom is a terpus.\nEvery terpus is a lempus.\n### Tom is a lempus."}
    answer_only = {"question": question, "text": "### Tom is a lempus."}  # this seed's model wrote no chain
    dirs = []
    for seed, row in [(0, chain), (1, answer_only)]:
        d = write_run(tmp_path / f"s{seed}", seed, 0.5, 10.0)
        for strategy in ("latent_ar", "cot"):
            (d / "eval" / strategy).mkdir(parents=True)
            (d / "eval" / strategy / "valid.json").write_text(json.dumps({"task": "prosqa", "results": [row]}))
        dirs.append(d)
    checks = summarize(load_runs(dirs))["chains"]["cot"]["valid"]
    assert list(checks) == ["answer_names_entity", "answer_is_an_option"]
    assert checks["answer_is_an_option"]["values"] == [1.0, 1.0]
