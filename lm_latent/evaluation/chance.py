"""Chance accuracy of each task: what answering at random scores, the floor plots draw.

ProsQA and ProntoQA ask a two-way question ("Is Tom a wumpus or a jompus?", "True or false:"), so a
coin scores 50%; a free-form answer (a number, an expression, a maze plan) is essentially never right
by guessing.
"""

from __future__ import annotations

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
