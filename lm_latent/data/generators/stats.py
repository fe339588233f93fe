"""Statistics of ProsQA/ProntoQA-style records (Coconut's JSON schema), to compare generated data with
the official splits: graph size, chain length, question length, label balance."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The per-record measures compared with the official splits, in report order.
MEASURES: tuple[str, ...] = ("nodes", "edges", "steps", "question_words")


def record_measures(record: Mapping[str, Any]) -> dict[str, int]:
    """The measures of one record: node count, edge count, step count, question length in words."""
    return {
        "nodes": len(record["idx_to_symbol"]),
        "edges": len(record["edges"]),
        "steps": len(record["steps"]),
        "question_words": len(record["question"].split()),
    }


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, min and max of every measure over ``records`` (which must not be empty)."""
    if not records:
        raise ValueError("summarize: no records")
    per = [record_measures(r) for r in records]
    out: dict[str, dict[str, float]] = {}
    for m in MEASURES:
        values = [p[m] for p in per]
        out[m] = {
            "mean": statistics.fmean(values),
            "std": statistics.pstdev(values),
            "min": min(values),
            "max": max(values),
        }
    return out


def distribution(values: Iterable[Any]) -> dict[Any, float]:
    """Share of each distinct value, keys sorted (e.g. the step-count distribution)."""
    counts = Counter(values)
    total = sum(counts.values())
    return {k: counts[k] / total for k in sorted(counts)}


def answer_balance(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Share of each answer string (ProntoQA: "True"/"False")."""
    return distribution(r["answer"] for r in records)


Summary = Mapping[str, Mapping[str, float]]  # what summarize() returns


def relative_gaps(ours: Summary, reference: Summary) -> dict[str, float]:
    """|mean(ours) - mean(reference)| / mean(reference) for every measure the two summaries share."""
    return {
        m: abs(ours[m]["mean"] - reference[m]["mean"]) / reference[m]["mean"]
        for m in MEASURES
        if m in ours and m in reference and reference[m]["mean"]
    }


def comparison_table(ours: Summary, reference: Summary) -> str:
    """A Markdown table: each measure's mean [min..max] for the reference and for ours, and the gap."""
    gaps = relative_gaps(ours, reference)
    lines = ["| measure | official mean [min..max] | generated mean [min..max] | gap |", "|---|---|---|---|"]
    for m in MEASURES:
        r, o = reference[m], ours[m]
        lines.append(
            f"| {m} | {r['mean']:.2f} [{r['min']:.0f}..{r['max']:.0f}] "
            f"| {o['mean']:.2f} [{o['min']:.0f}..{o['max']:.0f}] | {gaps[m]:.1%} |"
        )
    return "\n".join(lines)
