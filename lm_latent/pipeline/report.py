"""The run's answer: `results.json` (schema below), a Markdown table and an accuracy-vs-tokens plot.

results.json:
    {"experiment": str,
     "codebook": {"token_accuracy": float, "token_accuracy_random_codes": float, "exact_chunk_accuracy": float,
                  "greedy_exact_chunk_accuracy": float, "greedy_token_accuracy": float,
                  "greedy_exact_chunk_accuracy_random_codes": float, "greedy_token_accuracy_random_codes": float,
                  "usage": float, "perplexity": float},
     "runs": {STRATEGY: {SET: {"accuracy": float, "mean_generated_tokens": float,
                               "mean_latent_tokens": float, "n": int, "seconds_per_example": float,
                               "task": str, "constant_answer": float}}}}
Accuracy and usage are fractions in [0, 1]. The codebook's ``token_accuracy``/``exact_chunk_accuracy``
are teacher-forced (each token predicted from the chunk's true prefix); the ``greedy_*`` figures decode
each held-out chunk from its code and the prompt alone (see :mod:`lm_latent.codebook.module`).
``constant_answer`` is what always giving the set's most common gold answer scores
(:func:`lm_latent.evaluation.chance.constant_answer_rate`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lm_latent.pipeline.stages import write_json_atomic

RUN_FIELDS = ("accuracy", "mean_generated_tokens", "mean_latent_tokens", "n", "seconds_per_example")


def codebook_summary(metrics: dict[str, float]) -> dict[str, float]:
    """Pick the held-out codebook numbers out of the stage's last logged scalars."""
    def pick(tag: str) -> float:
        if tag not in metrics:
            raise KeyError(f"codebook stage logged no '{tag}' (have: {sorted(metrics)})")
        return float(metrics[tag])

    return {
        "token_accuracy": pick("val/token_acc"),
        "token_accuracy_random_codes": pick("val/token_acc_random_codes"),
        "exact_chunk_accuracy": pick("val/exact_chunk_acc"),
        "greedy_exact_chunk_accuracy": pick("val/greedy_exact"),
        "greedy_token_accuracy": pick("val/greedy_token_acc"),
        "greedy_exact_chunk_accuracy_random_codes": pick("val/greedy_exact_random"),
        "greedy_token_accuracy_random_codes": pick("val/greedy_token_acc_random"),
        "usage": pick("val/code_usage"),
        "perplexity": pick("val/code_perplexity"),
    }


def write_results(out: Path, experiment: str, codebook: dict, runs: dict[str, dict[str, dict]], extra: dict | None = None) -> dict:
    for strategy, tasks in runs.items():
        for task, row in tasks.items():
            missing = [f for f in RUN_FIELDS if f not in row]
            if missing:
                raise ValueError(f"results for {strategy}/{task} lack {missing}")
    results: dict[str, Any] = {"experiment": experiment, "codebook": codebook, "runs": runs, **(extra or {})}
    write_json_atomic(results, out / "results.json")
    (out / "results.md").write_text(markdown_table(results))
    plot(results, out / "accuracy_vs_tokens.png", run_dir=out)
    return results


def markdown_table(results: dict) -> str:
    cb = results["codebook"]
    lines = [
        f"# {results['experiment']}",
        "",
        f"Codebook: usage {cb['usage']:.1%} of K, perplexity {cb['perplexity']:.1f}; held-out reconstruction "
        "(teacher-forced: each token from the chunk's true prefix; greedy: the whole chunk from its code and the prompt):",
        "",
        *codebook_reconstruction_table(cb),
        "",
        "| strategy | task | accuracy | mean generated tokens | mean latent tokens | n | s / example |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for strategy, tasks in results["runs"].items():
        for task, r in tasks.items():
            lines.append(
                f"| {strategy} | {task} | {r['accuracy']:.1%} | {r['mean_generated_tokens']:.1f} | "
                f"{r['mean_latent_tokens']:.1f} | {r['n']} | {r['seconds_per_example']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def codebook_reconstruction_table(cb: dict) -> list[str]:
    """Held-out reconstruction, teacher-forced beside greedy from the code alone, true vs random codes."""
    def row(what: str, tf: str, greedy: str) -> str:
        return (f"| {what} | {cb[tf]:.1%} | {cb[tf + '_random_codes']:.1%} | {cb[greedy]:.1%} | "
                f"{cb[greedy + '_random_codes']:.1%} |")

    return [
        "| held-out chunks | teacher-forced | teacher-forced, random codes | greedy from the code | greedy, random codes |",
        "|---|---:|---:|---:|---:|",
        row("token accuracy", "token_accuracy", "greedy_token_accuracy"),
        f"| exact chunks | {cb['exact_chunk_accuracy']:.1%} | - | {cb['greedy_exact_chunk_accuracy']:.1%} | "
        f"{cb['greedy_exact_chunk_accuracy_random_codes']:.1%} |",
    ]


def set_tasks(runs: dict[str, dict[str, dict]], run_dir: Path | None = None) -> dict[str, str | None]:
    """The task of every evaluation set: from the result rows, or, for runs whose rows predate the
    ``task`` field, from the per-example files ``eval/<strategy>/<set>.json`` in ``run_dir``."""
    return _per_set(runs, run_dir, "task", lambda per_example: per_example.get("task"))


def set_constant_answers(runs: dict[str, dict[str, dict]], run_dir: Path | None = None) -> dict[str, float | None]:
    """What a constant answer scores on every evaluation set: from the result rows, or, for runs
    whose rows predate ``constant_answer``, from the gold answers in the per-example files."""
    from lm_latent.evaluation.chance import constant_answer_rate

    def from_file(per_example: dict) -> float | None:
        rows = [r for r in per_example.get("results", []) if "gold" in r]
        if all("question" in r for r in rows):
            return constant_answer_rate([r["gold"] for r in rows], [r["question"] for r in rows])
        return constant_answer_rate(r["gold"] for r in rows)

    return _per_set(runs, run_dir, "constant_answer", from_file)


def _per_set(runs: dict[str, dict[str, dict]], run_dir: Path | None, field: str, from_file) -> dict[str, Any]:
    """``field`` of every evaluation set, from the first strategy's row that has it, else
    ``from_file(eval/<strategy>/<set>.json)`` where ``run_dir`` holds that file; None when neither."""
    import json

    values: dict[str, Any] = {}
    for strategy, sets in runs.items():
        for name, row in sets.items():
            if values.get(name) is not None:
                continue
            value = row.get(field)
            per_example = run_dir / "eval" / strategy / f"{name}.json" if run_dir is not None else None
            if value is None and per_example is not None and per_example.is_file():
                value = from_file(json.loads(per_example.read_text()))
            values[name] = value
    return values


def plot(results: dict, path: Path, run_dir: Path | None = None) -> None:
    """accuracy_vs_tokens.png of one run (:mod:`lm_latent.pipeline.plot`)."""
    from lm_latent.pipeline.plot import accuracy_vs_tokens

    panels, chance, constant, note = run_panels(results, run_dir)
    accuracy_vs_tokens(panels, chance, path, note, constant)


def run_panels(results: dict, run_dir: Path | None = None) -> tuple[dict, dict, dict, str]:
    """(points per evaluation set, chance level per set, constant answer's score per set, note) of
    one run's plot."""
    from lm_latent.evaluation.chance import chance_level
    from lm_latent.pipeline.plot import Point

    panels: dict[str, list[Point]] = {}
    for strategy, sets in results["runs"].items():
        for name, r in sets.items():
            panels.setdefault(name, []).append(Point(strategy, r["mean_generated_tokens"], r["accuracy"]))
    chance = {name: chance_level(task) for name, task in set_tasks(results["runs"], run_dir).items()}
    constant = set_constant_answers(results["runs"], run_dir)
    return panels, chance, constant, f"{results['experiment']}, seed {results.get('seed', '?')}"
