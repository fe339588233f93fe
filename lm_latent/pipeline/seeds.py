"""Mean and spread over seeds: `lm-latent summarize RUN_DIR [RUN_DIR ...]`.

Each RUN_DIR is a finished `lm-latent run` folder (its `results.json`). The runs must be the same
experiment with the same strategies and evaluation sets, differing only in `seed` (checked from each
run's saved `config.yaml`): a summary of runs that differ in anything else would silently mix
settings. Spread is the sample standard deviation (n - 1) with every seed's own value beside it, since
three seeds are too few for the deviation alone to mean much.

For ProsQA and ProntoQA sets the summary adds the chain checks of
:mod:`lm_latent.evaluation.chains` (computed from each run's per-example file, `eval/<strategy>/<set>.json`):
what the generated chains got right besides the answer. Every strategy is also compared with ``cot``
(where the runs have it) problem by problem, pooled over the seeds: McNemar's exact test and the
accuracy difference with a 95% interval (:mod:`lm_latent.evaluation.paired`). ``--plot PNG`` draws
accuracy against generated tokens over the seeds (means with one-standard-deviation error bars,
0-100% axis, chance levels), as `lm-latent run` does for one run.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from lm_latent.pipeline.report import set_constant_answers, set_tasks

FIELDS = ("accuracy", "mean_generated_tokens", "mean_latent_tokens")
BASELINE = "cot"  # the strategy every other one is compared with, problem by problem
CODEBOOK_FIELDS = ("token_accuracy", "token_accuracy_random_codes", "greedy_exact_chunk_accuracy", "greedy_token_accuracy",
                   "greedy_exact_chunk_accuracy_random_codes", "greedy_token_accuracy_random_codes", "usage", "perplexity")


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def _config_without_seed(run: Path) -> dict:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True)
    cfg.pop("seed", None)
    cfg.get("mixed", {}).get("data", {}).pop("seed", None)
    return cfg


def load_runs(dirs: list[Path]) -> list[dict]:
    """Read every run's results.json; raise if the runs are not seeds of one experiment."""
    if not dirs:
        raise ValueError("give at least one run folder")
    runs, reference = [], None
    for d in dirs:
        path = d / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no results.json (is the run finished?)")
        results = json.loads(path.read_text())
        cfg = _config_without_seed(d) if (d / "config.yaml").is_file() else None
        shape = (results["experiment"], {s: sorted(t) for s, t in results["runs"].items()}, cfg)
        if reference is None:
            reference = (d, shape)
        elif shape != reference[1]:
            what = ["experiment", "strategies/evaluation sets", "configuration (other than seed)"]
            differs = [w for w, a, b in zip(what, shape, reference[1]) if a != b]
            raise ValueError(f"{d} and {reference[0]} are not seeds of one experiment: {', '.join(differs)} differ")
        results["dir"] = str(d)
        if cfg is not None:  # results.json stores strategies sorted: report them in the configured order
            order = [st for st in cfg.get("mixed", {}).get("strategies", []) if st in results["runs"]]
            results["runs"] = {st: results["runs"][st] for st in order + sorted(set(results["runs"]) - set(order))}
        runs.append(results)
    seeds = [r.get("seed") for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"runs share a seed ({seeds}): each seed must be counted once")
    return runs


def summarize(runs: list[dict]) -> dict[str, Any]:
    _per_example.cache_clear()  # the files may have changed since the last summary in this process
    first = runs[0]
    from lm_latent.pipeline.run import EXTRA_RESULT_FIELDS

    table: dict[str, dict[str, dict]] = {}
    chains: dict[str, dict[str, dict]] = {}
    figures: dict[str, dict[str, dict]] = {}
    for strategy, tasks in first["runs"].items():
        for task in tasks:
            rows = [r["runs"][strategy][task] for r in runs]
            ns = {row["n"] for row in rows}
            if len(ns) != 1:
                raise ValueError(f"{strategy}/{task}: runs evaluated different numbers of examples {sorted(ns)}")
            table.setdefault(strategy, {})[task] = {
                **{f: _stats([float(row[f]) for row in rows]) for f in FIELDS},
                "n": ns.pop(),
            }
            # A task's own figures (mazes: greedy feasibility, optimality, ...), where every run has them.
            extra = {f: _stats([float(row[f]) for row in rows]) for f in EXTRA_RESULT_FIELDS if all(f in row for row in rows)}
            if extra:
                figures.setdefault(strategy, {})[task] = extra
            # Chain checks: only those every run has (a run whose model wrote no chain has none).
            per_run = [_chain_rates(Path(r["dir"]) / "eval" / strategy / f"{task}.json") if "dir" in r else None for r in runs]
            if all(per_run):
                checks = [k for k in per_run[0] if all(k in p for p in per_run)]
                chains.setdefault(strategy, {})[task] = {k: _stats([p[k] for p in per_run]) for k in checks}
    codebook = {f: _stats([float(r["codebook"][f]) for r in runs]) for f in CODEBOOK_FIELDS if f in first["codebook"]}
    first_dir = Path(first["dir"]) if "dir" in first else None
    return {"experiment": first["experiment"], "seeds": [r.get("seed") for r in runs], "codebook": codebook, "runs": table,
            "chains": chains, "figures": figures, "paired": paired_against(runs, BASELINE),
            "tasks": set_tasks(first["runs"], first_dir), "constant_answer": set_constant_answers(first["runs"], first_dir)}


def paired_against(runs: list[dict], baseline: str) -> dict[str, dict[str, dict]]:
    """Every other strategy against ``baseline`` on each set, problem by problem, pooled over the runs
    (each run's per-example file, `eval/<strategy>/<set>.json`, paired by the example's index)."""
    from lm_latent.evaluation.paired import compare

    first = runs[0]
    if baseline not in first["runs"] or not all("dir" in r for r in runs):
        return {}
    out: dict[str, dict[str, dict]] = {}
    for strategy, tasks in first["runs"].items():
        if strategy == baseline:
            continue
        for task in tasks:
            if task not in first["runs"][baseline]:
                # A set only some strategies run (an m-forced set, say): nothing of the baseline's to pair.
                out.setdefault(strategy, {})[task] = {"against": baseline, "not_paired": f"{baseline} is not evaluated on it"}
                continue
            ours, theirs, missing = [], [], None
            for r in runs:
                a, b = (_outcomes(Path(r["dir"]) / "eval" / s / f"{task}.json") for s in (strategy, baseline))
                if a is None or b is None or a.keys() != b.keys():
                    # Said in the summary, not dropped in silence: a pairing needs every seed's examples.
                    missing = f"{r['dir']}: " + ("no per-example results" if a is None or b is None
                                                 else "the two strategies scored different examples")
                    break
                ours += [a[i] for i in sorted(a)]
                theirs += [b[i] for i in sorted(a)]
            result = {"not_paired": missing} if missing else compare(ours, theirs).as_dict()
            out.setdefault(strategy, {})[task] = {"against": baseline, **result}
    return out


@functools.lru_cache(maxsize=None)
def _per_example(path: Path) -> dict | None:
    """One per-example results file, read once per summary (chain checks and every pairing use it;
    `summarize` clears the cache when it starts)."""
    return json.loads(path.read_text()) if path.is_file() else None


def _outcomes(path: Path) -> dict[int, bool] | None:
    """Example index -> correct, from one per-example results file (None when there is none, or its
    records do not say which example they are and whether it was right)."""
    data = _per_example(path)
    if data is None:
        return None
    records = data["results"]
    if not all("index" in r and "correct" in r for r in records):
        return None
    return {int(r["index"]): bool(r["correct"]) for r in records}


def _chain_rates(path: Path) -> dict[str, float] | None:
    """The chain checks of one per-example results file; None when it is not a ProsQA/ProntoQA set."""
    from lm_latent.evaluation.chains import LOGIC_TASKS, chain_rates

    data = _per_example(path)
    if data is None or data.get("task") not in LOGIC_TASKS:
        return None
    return chain_rates(data["task"], data["results"])


def markdown(summary: dict[str, Any]) -> str:
    def cell(s: dict, pct: bool) -> str:
        k = 100.0 if pct else 1.0
        values = ", ".join(f"{k * v:.1f}" for v in s["values"])
        return f"{k * s['mean']:.1f} ± {k * s['std']:.1f} ({values})"

    lines = [
        f"{summary['experiment']}: seeds {', '.join(map(str, summary['seeds']))}; mean ± sample std (per-seed values)",
        "",
        "| strategy | eval set | n | accuracy (%) | generated tokens | latent tokens |",
        "|---|---|---:|---|---|---|",
    ]
    for strategy, tasks in summary["runs"].items():
        for task, r in tasks.items():
            lines.append(
                f"| {strategy} | {task} | {r['n']} | {cell(r['accuracy'], True)} | "
                f"{cell(r['mean_generated_tokens'], False)} | {cell(r['mean_latent_tokens'], False)} |"
            )
    chains = summary.get("chains") or {}
    if chains:
        lines += ["", "Chain checks (%, see lm_latent/evaluation/chains.py):", "",
                  "| strategy | eval set | check | mean ± std (per-seed values) |", "|---|---|---|---|"]
        for strategy, tasks in chains.items():
            for task, checks in tasks.items():
                lines += [f"| {strategy} | {task} | {name} | {cell(s, True)} |" for name, s in checks.items()]
    figures = summary.get("figures") or {}
    if figures:
        lines += ["", "Task figures (rates in %, token counts per generation):", "",
                  "| strategy | eval set | figure | mean ± std (per-seed values) |", "|---|---|---|---|"]
        for strategy, tasks in figures.items():
            for task, values in tasks.items():
                lines += [f"| {strategy} | {task} | {name} | {cell(s, 'tokens' not in name)} |" for name, s in values.items()]
    paired = summary.get("paired") or {}
    if paired:
        lines += ["", f"Paired against {BASELINE}, problem by problem, pooled over the seeds (b: only this strategy right; "
                  f"c: only {BASELINE} right; difference in accuracy points with a 95% interval; McNemar's exact p):", "",
                  "| strategy | eval set | pairs | b | c | difference | McNemar p |", "|---|---|---:|---:|---:|---|---:|"]
        for strategy, tasks in paired.items():
            for task, t in tasks.items():
                if "not_paired" in t:
                    lines.append(f"| {strategy} | {task} | - | - | - | not paired ({t['not_paired']}) | - |")
                    continue
                lo, hi = t["ci95"]
                lines.append(f"| {strategy} | {task} | {t['n']} | {t['first_only']} | {t['second_only']} | "
                             f"{100 * t['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {t['p_value']:.3g} |")
    cb = summary["codebook"]
    if cb:
        lines += ["", "| codebook (held out) | value |", "|---|---|"]
        lines += [f"| {f} | {cell(s, f != 'perplexity')} |" for f, s in cb.items()]
    return "\n".join(lines) + "\n"


def plot_summary(summary: dict[str, Any], path: Path) -> None:
    """accuracy_vs_tokens.png over the seeds: means, with one sample standard deviation as error bars."""
    from lm_latent.pipeline.plot import accuracy_vs_tokens

    panels, chance, constant, note = summary_panels(summary)
    accuracy_vs_tokens(panels, chance, path, note, constant)


def summary_panels(summary: dict[str, Any]) -> tuple[dict, dict, dict, str]:
    """(points per evaluation set, chance level per set, constant answer's score per set, note) of
    the plot over seeds."""
    from lm_latent.evaluation.chance import chance_level
    from lm_latent.pipeline.plot import Point

    panels: dict[str, list[Point]] = {}
    for strategy, sets in summary["runs"].items():
        for name, r in sets.items():
            acc, tokens = r["accuracy"], r["mean_generated_tokens"]
            panels.setdefault(name, []).append(Point(strategy, tokens["mean"], acc["mean"], tokens["std"], acc["std"]))
    chance = {name: chance_level(task) for name, task in (summary.get("tasks") or {}).items()}
    seeds = summary["seeds"]
    note = f"{summary['experiment']}: mean over seeds {', '.join(map(str, seeds))}" + (
        "; error bars: one sample standard deviation" if len(seeds) > 1 else "")
    return panels, chance, summary.get("constant_answer") or {}, note


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lm-latent summarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders, one per seed")
    parser.add_argument("--json", type=Path, help="also write the summary as JSON here")
    parser.add_argument("--plot", type=Path, help="also draw accuracy vs generated tokens (PNG) here")
    args = parser.parse_args(argv)
    try:
        summary = summarize(load_runs(args.runs))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        plot_summary(summary, args.plot)
    print(markdown(summary), end="")
    return 0
