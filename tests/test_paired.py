"""Paired comparison of two strategies: McNemar's exact test, the difference and its interval, and
`lm-latent summarize` pooling per-example outcomes over seeds."""

from __future__ import annotations

import json
import math

import pytest

from lm_latent.cli import main
from lm_latent.evaluation.paired import compare, mcnemar_exact
from test_summarize import write_run


def test_mcnemar_exact_against_hand_computed_binomial_tails():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 P(X <= 0), X ~ Bin(5, 1/2)
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_exact(9, 1) == mcnemar_exact(1, 9)  # two-sided


def test_compare_counts_discordant_pairs_and_the_interval():
    first = [True] * 6 + [False] * 2 + [True] * 2  # right on 8 of 10
    second = [True] * 6 + [True] * 2 + [False] * 2  # right on 8 of 10, different ones
    r = compare(first, second)
    assert (r.n, r.first_only, r.second_only, r.difference) == (10, 2, 2, 0.0)
    assert r.ci95 == pytest.approx((-1.96 * math.sqrt(0.4 / 10), 1.96 * math.sqrt(0.4 / 10)))
    assert r.p_value == 1.0
    better = compare([True] * 10, [False] * 10)
    assert better.difference == 1.0 and better.ci95 == (1.0, 1.0) and better.p_value == pytest.approx(2 / 1024)
    with pytest.raises(ValueError, match="equal lengths"):
        compare([True], [True, False])


def _per_example(run, strategy, task, correct):
    d = run / "eval" / strategy
    d.mkdir(parents=True, exist_ok=True)
    results = [{"index": i, "correct": c} for i, c in enumerate(correct)]
    (d / f"{task}.json").write_text(json.dumps({"task": "gsm8k", "results": results[::-1]}))  # order must not matter


def test_summarize_pools_seeds_problem_by_problem(tmp_path, capsys):
    dirs = [write_run(tmp_path / f"s{s}", s, 0.5, 10.0, n=4) for s in (0, 1)]
    _per_example(dirs[0], "latent_ar", "valid", [True, True, False, False])
    _per_example(dirs[0], "cot", "valid", [True, False, False, True])
    _per_example(dirs[1], "latent_ar", "valid", [True, True, True, False])
    _per_example(dirs[1], "cot", "valid", [False, False, True, False])
    out = tmp_path / "summary.json"
    assert main(["summarize", *map(str, dirs), "--json", str(out)]) == 0
    paired = json.loads(out.read_text())["paired"]
    assert list(paired) == ["latent_ar"]
    t = paired["latent_ar"]["valid"]
    assert (t["against"], t["n"], t["first_only"], t["second_only"]) == ("cot", 8, 3, 1)
    assert t["difference"] == pytest.approx(0.25) and t["p_value"] == pytest.approx(mcnemar_exact(3, 1))
    assert "| latent_ar | valid | 8 | 3 | 1 | +25.0 [" in capsys.readouterr().out


def test_a_seed_without_per_example_files_is_reported_not_dropped(tmp_path, capsys):
    dirs = [write_run(tmp_path / f"s{s}", s, 0.5, 10.0, n=4) for s in (0, 1)]
    _per_example(dirs[0], "latent_ar", "valid", [True, True, False, False])
    _per_example(dirs[0], "cot", "valid", [True, False, False, True])  # seed 1 has none
    out = tmp_path / "summary.json"
    assert main(["summarize", *map(str, dirs), "--json", str(out)]) == 0
    t = json.loads(out.read_text())["paired"]["latent_ar"]["valid"]
    assert "n" not in t and t["not_paired"] == f"{dirs[1]}: no per-example results"
    assert f"| latent_ar | valid | - | - | - | not paired ({dirs[1]}: no per-example results) | - |" in capsys.readouterr().out


def test_a_set_the_baseline_does_not_run_is_reported_as_such(tmp_path, capsys):
    """An m-forced set runs for latent_ar alone (`strategies: [latent_ar]`): the summary says CoT has
    no results there, rather than blaming missing per-example files."""
    dirs = [write_run(tmp_path / f"s{s}", s, 0.5, 10.0, n=4) for s in (0, 1)]
    for d in dirs:
        results = json.loads((d / "results.json").read_text())
        results["runs"]["latent_ar"]["forced_m1"] = dict(results["runs"]["latent_ar"]["valid"])
        (d / "results.json").write_text(json.dumps(results))
        _per_example(d, "latent_ar", "valid", [True, True, False, False])
        _per_example(d, "cot", "valid", [True, False, False, True])
        _per_example(d, "latent_ar", "forced_m1", [True, False, False, False])
    out = tmp_path / "summary.json"
    assert main(["summarize", *map(str, dirs), "--json", str(out)]) == 0
    paired = json.loads(out.read_text())["paired"]["latent_ar"]
    assert paired["forced_m1"] == {"against": "cot", "not_paired": "cot is not evaluated on it"}
    assert paired["valid"]["n"] == 8
    assert "| latent_ar | forced_m1 | - | - | - | not paired (cot is not evaluated on it) | - |" in capsys.readouterr().out
