"""What a logic model's chain got right besides its final answer (ProsQA, ProntoQA generations).

Exact-match accuracy cannot tell a model that has not learned the answer format from one that writes
well-formed chains of invented facts. These checks read only the question and the generated text:

- ``rules_in_question``: the share of the chain's rule sentences (every sentence not about the queried
  entity) that appear word for word in the question. 1.0 means every rule the chain used was
  retrieved from the context; a low value means the chain invents rules. Both datasets copy their
  rules verbatim into gold chains, so gold chains score 1.0.
- ``ends_at_query`` (ProntoQA): the chain's last sentence states the queried property of the queried
  entity, in either polarity.
- ``answer_follows_chain`` (ProntoQA): it does, and the True/False answer agrees with it.
- ``answer_names_entity`` (ProsQA): the answer is "<entity> is a ...", the entity of the question's
  last sentence (a copy from the query, not yet a search).
- ``answer_is_an_option`` (ProsQA): the answer is "<entity> is a <one of the question's two options>.".
  A model that has learned the format but not the search gets this right and the answer half the time.

A latent model's text may start inside a sentence (the latent tokens replaced whole chunks of tokens,
not whole sentences): such a leading fragment is not counted.
"""

from __future__ import annotations

import re
import statistics
from typing import Iterable, Mapping

from lm_latent.data.generators.prosqa import parse_query

LOGIC_TASKS = ("prosqa", "prontoqa")
CHECKS = {
    "prosqa": ("rules_in_question", "answer_names_entity", "answer_is_an_option"),
    "prontoqa": ("rules_in_question", "ends_at_query", "answer_follows_chain"),
}
_NEED_A_CHAIN = {"rules_in_question", "ends_at_query", "answer_follows_chain"}

_PRONTOQA_QUERY = re.compile(r"True or false: (\w+) is (not )?(\w+)\.\s*$")


def _split(text: str) -> tuple[list[str], str]:
    """The chain's complete sentences, and the answer (the text after the last ``###``)."""
    chain, sep, answer = text.rpartition("###")
    if not sep:
        chain, answer = text, ""
    sentences = [s.strip() for s in re.split(r"(?<=\.)\s+", chain.strip())]
    return [s for s in sentences if s[:1].isupper() and s.endswith(".")], answer.strip()


def check_chain(task: str, question: str, text: str) -> dict[str, float | None]:
    """The checks of ``task`` for one generation (``rules_in_question`` is None without rule sentences)."""
    if task not in CHECKS:
        raise ValueError(f"chain checks exist for {LOGIC_TASKS}, not '{task}'")
    query = parse_query(question) if task == "prosqa" else _PRONTOQA_QUERY.search(question)
    if query is None:
        raise ValueError(f"{task} question does not end with its query: ...{question[-80:]!r}")
    entity = query[0] if task == "prosqa" else query.group(1)
    sentences, answer = _split(text)
    rules = [s for s in sentences if not s.startswith(entity + " ")]
    out: dict[str, float | None] = {
        "rules_in_question": sum(r in question for r in rules) / len(rules) if rules else None,
    }
    if task == "prosqa":
        out["answer_names_entity"] = float(answer.startswith(f"{entity} is a "))
        out["answer_is_an_option"] = float(answer in {f"{entity} is a {o}." for o in query[1:]})
        return out
    negated, prop = query.group(2) is not None, query.group(3)
    last = sentences[-1] if sentences else ""
    ends = last in (f"{entity} is {prop}.", f"{entity} is not {prop}.")
    implied = "True" if ("not " in last) == negated else "False"
    out["ends_at_query"] = float(ends)
    out["answer_follows_chain"] = float(ends and answer == implied)
    return out


def chain_rates(task: str, rows: Iterable[Mapping]) -> dict[str, float]:
    """Mean of each check over a results file's rows (``question`` and generated ``text`` each).

    ``rules_in_question`` is averaged over the generations that state at least one rule, and left out
    when none does (a latent model whose text after the codes is only the conclusion). When no
    generation has a chain (an answer-only model) only the checks of the answer remain.
    """
    rows = list(rows)
    has_chain = any(_split(r["text"])[0] for r in rows)
    checks = [check_chain(task, r["question"], r["text"]) for r in rows]
    rates = {}
    for name in CHECKS[task]:
        if name in _NEED_A_CHAIN and not has_chain:
            continue
        values = [c[name] for c in checks if c[name] is not None]
        if values:  # a rate of nothing is no number: leave the check out rather than write NaN
            rates[name] = statistics.fmean(values)
    return rates
