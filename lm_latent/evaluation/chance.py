"""Chance accuracy of each task: what answering at random scores, the floor plots draw.

ProsQA and ProntoQA ask a two-way question ("Is Tom a wumpus or a jompus?", "True or false:"), so a
coin scores 50%; a free-form answer (a number, an expression, a maze plan) is essentially never right
by guessing.

A set's own answers can sit off that level: where 55% of the gold answers are "False", answering
"False" every time scores 55%, so a model at 54% has learned nothing even though it is above the coin.
:func:`constant_answer_rate` is that second floor, measured on the set itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from lm_latent.evaluation.answers import resolve_task

CHANCE: dict[str, float] = {
    "prosqa": 0.5,
    "prontoqa": 0.5,
    "gsm8k": 0.0,
    "math": 0.0,
    "maze": 0.0,
}


def chance_level(task: str | None) -> float | None:
    """Chance accuracy (a fraction) of a task or dataset name; None when unknown (nothing is drawn)."""
    if task is None:
        return None
    try:
        return CHANCE.get(resolve_task(task))
    except ValueError:
        return None


def constant_answer_rate(golds: Iterable[str]) -> float | None:
    """Share of a set's examples whose gold answer is its most common one: the best a model that
    always gives the same answer can score there. None for an empty set."""
    counts = Counter(str(g).strip() for g in golds)
    total = sum(counts.values())
    return counts.most_common(1)[0][1] / total if total else None
