"""ProsQA with the queried person renamed: the reader ``prosqa_queried_tom``.

A ProsQA question ends "Is <name> a <concept> or <concept>?". Reading it as ``prosqa_queried_tom``
renames that person "Tom" everywhere in the problem (question, steps, answer and the graph's
``idx_to_symbol``), swapping the two names where someone else is called Tom, so the person whose facts
answer the question is always the same token. Why: a 0.87 M-parameter model from scratch learns to
tell one person's facts from another's at once, but not to find, among the facts, the name the question
gives (RESULTS.md, "What the narrow model cannot learn: matching the question's name"). The renaming is
computed from the question alone and changes no answer (names are arbitrary labels that all occur in
training), so a model trained on renamed problems is scored on the official file read the same way;
its scores are then on the renamed file, and are reported under that dataset name.
"""

from __future__ import annotations

import re
from typing import Callable

from lm_latent.data.generators.prosqa import parse_query

QUERIED_NAME = "Tom"


def queried_renaming(question: str, to: str = QUERIED_NAME) -> Callable[[str], str] | None:
    """A text edit that swaps the queried person's name with ``to`` (whole words), or None when the
    question does not end "Is <name> a <concept> or <concept>?"."""
    query = parse_query(question)
    if query is None:
        return None
    name = query[0]
    if name == to:
        return lambda text: text
    swap = {name: to, to: name}
    pattern = re.compile(rf"\b({re.escape(name)}|{re.escape(to)})\b")
    return lambda text: pattern.sub(lambda m: swap[m.group(1)], text)
