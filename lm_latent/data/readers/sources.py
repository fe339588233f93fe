"""One small converter per source: a raw record -> :class:`Example`, or a counted :class:`Skip`.

Each converter reads only the fields it needs (type-checked through :class:`Record`, so bad input
names its file, line and field) and keeps the rest of the record in ``Example.meta``. Evaluation-only
sets get empty ``steps``: a chain of thought is never invented.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from lm_latent.data.example import Example
from lm_latent.data.readers.records import Record
from lm_latent.data.readers.renaming import queried_renaming
from lm_latent.data.readers.text import last_boxed, split_steps, strip_calculator

GSM8K_ANSWER_MARK = "#### "
METAMATH_ANSWER_MARK = "The answer is:"


@dataclass(frozen=True)
class Skip:
    """A record left out on purpose; ``reason`` is the key it is counted under."""

    reason: str


@dataclass(frozen=True)
class Context:
    """What a converter needs besides the record: the dataset name, the example id, the options."""

    source: str
    id: str
    strip_calculator: bool = True


Converter = Callable[[Record, Context], "Example | Skip"]


def _example(rec: Record, ctx: Context, question: str, steps: list[str], answer: str, used: tuple[str, ...]):
    meta = {k: v for k, v in rec.data.items() if k not in used}
    return Example(question=question, steps=tuple(steps), answer=answer, id=ctx.id, source=ctx.source, meta=meta)


def gsm8k(rec: Record, ctx: Context) -> Example:
    """Steps: the lines of ``answer`` before the ``#### `` line; answer: the text after it, as written."""
    solution = rec.get("answer", str)
    lines = solution.split("\n")
    mark = next((i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith(GSM8K_ANSWER_MARK.strip())), None)
    if mark is None:
        raise rec.error(f"no final '{GSM8K_ANSWER_MARK.strip()}' line in the solution", "answer")
    answer = lines[mark][len(GSM8K_ANSWER_MARK.strip()) :].strip()
    if not answer:
        raise rec.error(f"empty final answer after '{GSM8K_ANSWER_MARK.strip()}'", "answer")
    steps = lines[:mark]
    if ctx.strip_calculator:
        steps = [strip_calculator(s) for s in steps]
    steps = [s.strip() for s in steps if s.strip()]
    return _example(rec, ctx, rec.get("question", str), steps, answer, ("question", "answer"))


def math(rec: Record, ctx: Context) -> Example:
    """Steps: the solution split into sentences/lines; answer: the last ``\\boxed{}``/``\\fbox{}``."""
    solution = rec.get("solution", str)
    answer = last_boxed(solution)
    if answer is None:
        raise rec.error("no \\boxed{...} or \\fbox{...} answer in the solution", "solution")
    return _example(rec, ctx, rec.get("problem", str), split_steps(solution), answer, ("problem", "solution"))


def math500(rec: Record, ctx: Context) -> Example:
    """As MATH, but the answer is the set's own ``answer`` field."""
    steps = split_steps(rec.get("solution", str))
    used = ("problem", "solution", "answer")
    return _example(rec, ctx, rec.get("problem", str), steps, rec.get("answer", str), used)


def coconut(rec: Record, ctx: Context) -> Example:
    """ProsQA / ProntoQA in Coconut's format: ``question``, ``steps`` (list), ``answer``; the graph
    fields stay in ``meta``."""
    used = ("question", "steps", "answer")
    return _example(rec, ctx, rec.get("question", str), rec.str_list("steps"), rec.get("answer", str), used)


def prosqa_queried_tom(rec: Record, ctx: Context) -> Example:
    """ProsQA read with the queried person renamed "Tom" (:mod:`lm_latent.data.readers.renaming`):
    question, steps, answer and the graph's ``idx_to_symbol`` alike."""
    ex = coconut(rec, ctx)
    edit = queried_renaming(ex.question)
    if edit is None:
        raise rec.error("the question does not end 'Is <name> a <concept> or <concept>?'", "question")
    meta = dict(ex.meta)
    if isinstance(meta.get("idx_to_symbol"), list):
        meta["idx_to_symbol"] = [edit(s) if isinstance(s, str) else s for s in meta["idx_to_symbol"]]
    return dataclasses.replace(ex, question=edit(ex.question), steps=tuple(map(edit, ex.steps)),
                               answer=edit(ex.answer), meta=meta)


def answer_only(rec: Record, ctx: Context) -> Example | Skip:
    """Evaluation-only sets (Gaokao, College-Math, DeepMind-Math): ``question`` and ``answer``, no steps.
    A row whose gold answer is empty (two in GaoKao 2023 En) cannot be scored, so it is skipped."""
    answer = rec.get("answer", str)
    if not answer.strip():
        return Skip("empty answer")
    return _example(rec, ctx, rec.get("question", str), [], answer, ("question", "answer"))


def olympiadbench(rec: Record, ctx: Context) -> Example:
    """Steps from the first of the alternative solutions; answer: the final answers joined by ", "."""
    question = rec.get("question", str)
    context = rec.get("context", str, optional=True)
    if context:
        question = context + "\n" + question
    solutions = rec.str_list("solution")
    finals = rec.str_list("final_answer")
    if not finals:
        raise rec.error("empty list of final answers", "final_answer")
    steps = split_steps(solutions[0]) if solutions else []
    used = ("question", "context", "solution", "final_answer")
    return _example(rec, ctx, question, steps, ", ".join(finals), used)


def theoremqa(rec: Record, ctx: Context) -> Example | Skip:
    """No usable chain of thought; rows with a picture are skipped (the images are not available)."""
    if rec.get("Picture", str, optional=True) is not None:
        return Skip("needs an image")
    answer = rec.get("Answer", str, int, float, bool, list)
    used = ("Question", "Answer", "Picture")
    return _example(rec, ctx, rec.get("Question", str), [], str(answer), used)


def metamathqa(rec: Record, ctx: Context) -> Example:
    """``query`` / ``response`` ending with "The answer is: X". Steps: the response before that mark,
    split into sentences/lines, without a trailing GSM8K-style ``#### X`` line (it repeats X)."""
    response = rec.get("response", str)
    at = response.rfind(METAMATH_ANSWER_MARK)
    if at == -1:
        raise rec.error(f"no '{METAMATH_ANSWER_MARK}' in the response", "response")
    answer = response[at + len(METAMATH_ANSWER_MARK) :].strip()
    if not answer:
        raise rec.error(f"empty final answer after '{METAMATH_ANSWER_MARK}'", "response")
    steps = split_steps(response[:at])
    if steps and steps[-1].startswith(GSM8K_ANSWER_MARK.strip()):
        steps.pop()
    return _example(rec, ctx, rec.get("query", str), steps, answer, ("query", "response"))


def canonical(rec: Record, ctx: Context) -> Example:
    """A record written by :func:`write_canonical` (``Example.to_dict()``): id and source are its own."""
    meta = rec.get("meta", dict, optional=True)
    return Example(
        question=rec.get("question", str),
        steps=tuple(rec.str_list("steps")),
        answer=rec.get("answer", str),
        id=rec.get("id", str),
        source=rec.get("source", str),
        meta=meta if meta is not None else {},
    )


@dataclass(frozen=True)
class SourceSpec:
    """How to read one dataset: its converter and the field holding the source's own id, if any."""

    convert: Converter
    id_field: str | None = None


SOURCES: dict[str, SourceSpec] = {
    "gsm8k": SourceSpec(gsm8k),
    "math": SourceSpec(math, "idx"),
    "math500": SourceSpec(math500, "unique_id"),
    "prosqa": SourceSpec(coconut),
    "prosqa_queried_tom": SourceSpec(prosqa_queried_tom),  # ProsQA, the queried person renamed "Tom"
    "prontoqa": SourceSpec(coconut),
    "maze": SourceSpec(coconut),  # the same three fields; the maze's own fields stay in meta
    "fresh_gaokao_math_2023": SourceSpec(answer_only, "question_number"),
    "gaokao2023en": SourceSpec(answer_only),  # its "source" field repeats across rows
    "college_math": SourceSpec(answer_only),  # so does "question_number" here
    "deepmind_mathematics": SourceSpec(answer_only),
    "olympiadbench_math": SourceSpec(olympiadbench, "id"),
    "theoremqa": SourceSpec(theoremqa, "id"),
    "metamathqa": SourceSpec(metamathqa),
    "canonical": SourceSpec(canonical, "id"),
}
