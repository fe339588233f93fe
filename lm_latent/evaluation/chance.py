"""Chance accuracy of each task: what answering at random scores, the floor plots draw.

ProsQA and ProntoQA ask a two-way question ("Is Tom a wumpus or a jompus?", "True or false:"), so a
coin scores 50%; a free-form answer (a number, an expression, a maze plan) is essentially never right
by guessing.

A set's own answers can sit off that level: where 55% of the gold answers are "False", answering
"False" every time scores 55%, so a model at 54% has learned nothing even though it is above the coin.
:func:`constant_answer_rate` is that second floor, measured on the set itself. A ProsQA answer names
the person ("Tom is a lempus."), so no two answers are alike as text; what a constant policy can give
there is always the first (or always the second) option of the question, and that is what is counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from lm_latent.data.generators.prosqa import parse_query
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


def constant_answer_rate(golds: Iterable[str], questions: Iterable[str] | None = None) -> float | None:
    """Share of a set's examples whose gold answer is its most common one: the best a model that
    always gives the same answer can score there. With ``questions``, a gold answer that ends with one
    of the two options of a question ending "... a <A> or <B>?" (ProsQA) counts as that option's
    position. None for an empty set."""
    golds = [str(g).strip() for g in golds]
    keys = golds if questions is None else [_answer_key(g, q) for g, q in zip(golds, questions, strict=True)]
    counts = Counter(keys)
    total = sum(counts.values())
    return counts.most_common(1)[0][1] / total if total else None


def _answer_key(gold: str, question: str) -> str:
    """The option position (``"option 1"``/``"option 2"``) a gold answer names, else the answer itself."""
    query = parse_query(question)
    if query:
        for position, option in enumerate(query[1:], start=1):
            if re.search(rf"\b{re.escape(option)}\W*$", gold):
                return f"option {position}"
    return gold
