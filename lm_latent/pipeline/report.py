"""The run's answer: `results.json` (schema below), a Markdown table and an accuracy-vs-tokens plot.

results.json:
    {"experiment": str,
     "codebook": {"token_accuracy": float, "token_accuracy_random_codes": float, "exact_chunk_accuracy": float,
                  "greedy_exact_chunk_accuracy": float, "greedy_token_accuracy": float,
                  "greedy_exact_chunk_accuracy_random_codes": float, "greedy_token_accuracy_random_codes": float,
                  "usage": float, "perplexity": float},
     "runs": {STRATEGY: {TASK: {"accuracy": float, "mean_generated_tokens": float,
                                "mean_latent_tokens": float, "n": int, "seconds_per_example": float}}}}
Accuracy and usage are fractions in [0, 1]. The codebook's ``token_accuracy``/``exact_chunk_accuracy``
are teacher-forced (each token predicted from the chunk's true prefix); the ``greedy_*`` figures decode
each held-out chunk from its code and the prompt alone (see :mod:`lm_latent.codebook.module`).
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
    plot(results, out / "accuracy_vs_tokens.png")
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


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: runs happen on headless machines
    import matplotlib.pyplot as plt

    tasks = sorted({t for tasks in results["runs"].values() for t in tasks})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for strategy, runs in results["runs"].items():
            if task in runs:
                r = runs[task]
                ax.scatter(r["mean_generated_tokens"], 100 * r["accuracy"], s=40)
                ax.annotate(strategy, (r["mean_generated_tokens"], 100 * r["accuracy"]), textcoords="offset points", xytext=(4, 4))
        ax.set(title=task, xlabel="mean generated tokens", ylabel="accuracy (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
