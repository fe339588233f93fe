"""Answer checking: pull the final answer out of a completion and compare it with the gold answer.

Every task writes its answer last, as ``### <answer>`` (see ``lm_latent.data.tokenization``), but a
model may also answer the way its base training taught it (``\\boxed{..}``, "The answer is ..."), so
each checker falls back to those forms. A completion with no answer, garbage, or latent tokens where
the answer should be is simply wrong: :func:`is_correct` never raises. Give the checkers what the
model wrote, latent tokens and delimiters in place (``Generation.written``): with them removed, the
answer ``### <boLatent><latent_5><eoLatent> True`` would read as ``### True``.

- ``gsm8k``: the number after the last ``###`` (which also covers the gold's ``####``), else after
  "The answer is", else the last number; ``,``, ``$`` and units are dropped; compared exactly as
  rationals.
- ``math`` (and the other math sets, see :data:`TASK_OF_DATASET`): the answer after the last
  ``###``, else the last ``\\boxed{..}``, else "The answer is: X"; compared by mathematical
  equivalence with math-verify, timeouts disabled so it runs in any thread (signal alarms only work
  on the main thread, and Lightning callbacks or data-loader workers may not be on it).
- ``prosqa`` / ``prontoqa``: Coconut's protocol, the text after the last ``#`` equals the gold
  answer after dropping commas and normalising whitespace.
- ``maze``: the plan after the last ``###`` is feasible for the maze the question states (any
  feasible plan is right, not only the gold one; :mod:`lm_latent.data.maze.plans`). This checker
  needs the question: ``is_correct("maze", completion, gold, question=...)``.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction

from lm_latent.data.readers.text import last_boxed  # noqa: F401 - one implementation, also re-exported here

TASKS = ("gsm8k", "math", "prosqa", "prontoqa", "maze")

#: Which checker each staged dataset uses.
TASK_OF_DATASET: dict[str, str] = {
    "gsm8k": "gsm8k",
    "math": "math",
    "math500": "math",
    "fresh_gaokao_math_2023": "math",
    "gaokao2023en": "math",
    "college_math": "math",
    "deepmind_mathematics": "math",
    "olympiadbench_math": "math",
    "theoremqa": "math",
    "metamathqa": "math",
    "prosqa": "prosqa",
    "prosqa_queried_tom": "prosqa",
    "prontoqa": "prontoqa",
    "maze": "maze",
}

log = logging.getLogger(__name__)

# Latent codes and delimiters as a tokenizer decodes them; their presence in an answer makes it wrong.
_LATENT_RE = re.compile(r"<latent_\d+>|<boLatent>|<eoLatent>")
# End/pad markers a decode may leave in when special tokens are not skipped.
_SPECIAL_RE = re.compile(r"<\|[A-Za-z0-9_]+\|>|</s>")
_ANSWER_IS_RE = re.compile(r"[Tt]he (?:final )?answer is\s*:?\s*")
# "1,000" style thousands groups, or plain digits; optional decimals; optional leading minus.
_NUMBER_RE = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")
_MAX_MATH_ANSWER_CHARS = 1000  # longer "answers" are runaway generations; sympy could stall on them


def resolve_task(name: str) -> str:
    """Checker name for a task or dataset name (``math500`` -> ``math``)."""
    if name in TASK_OF_DATASET:
        return TASK_OF_DATASET[name]
    raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASK_OF_DATASET)}")


def is_correct(task: str, completion: str, gold: str, question: str | None = None) -> bool:
    """True when ``completion`` answers with something equal (for ``task``) to ``gold``.

    ``task`` is a checker name (``gsm8k``, ``math``, ``prosqa``, ``prontoqa``, ``maze``) or a staged
    dataset name (see :data:`TASK_OF_DATASET`); an unknown name raises ``ValueError``, and so does
    ``maze`` without the ``question`` (the maze it states is what a plan is checked against). Any
    failure while reading or comparing an answer counts as wrong, never as an exception.
    """
    name = resolve_task(task)
    if name in _QUESTION_CHECKERS and question is None:
        raise ValueError(f"the {name} checker needs the question")
    try:
        if name in _QUESTION_CHECKERS:
            return bool(_QUESTION_CHECKERS[name](completion, gold, question))
        return bool(_CHECKERS[name](completion, gold))
    except Exception:  # noqa: BLE001 - a malformed completion must score 0, not stop an evaluation
        log.debug("answer check failed for task %s", task, exc_info=True)
        return False


# ---------------------------------------------------------------- extraction helpers


def _clean(text: str) -> str:
    return _SPECIAL_RE.sub("", text)


def after_last(text: str, marker: str) -> str | None:
    """The text after the last ``marker``, stripped, or None when the marker is absent."""
    i = text.rfind(marker)
    return None if i < 0 else text[i + len(marker) :].strip()


def _has_latent(text: str) -> bool:
    return _LATENT_RE.search(text) is not None


def _strip_answer_punct(ans: str) -> str:
    ans = ans.strip()
    while ans.endswith((".", "$")) and not ans.endswith("\\$"):
        ans = ans[:-1].rstrip()
    while ans.startswith("$"):
        ans = ans[1:].lstrip()
    return ans


# ---------------------------------------------------------------- GSM8K


def parse_number(text: str, last: bool = False) -> Fraction | None:
    """First (or last) number in ``text`` as an exact rational: ``$1,000.50`` -> 2001/2, ``3/4``."""
    matches = _NUMBER_RE.findall(text.replace("$", ""))
    if not matches:
        return None
    s = (matches[-1] if last else matches[0]).replace(",", "").replace(" ", "")
    return Fraction(s)


def extract_gsm8k(completion: str) -> Fraction | None:
    """The final numeric answer of a GSM8K completion (or gold solution), or None."""
    text = _clean(completion)
    region = after_last(text, "###")
    if region is None:
        m = list(_ANSWER_IS_RE.finditer(text))
        region = text[m[-1].end() :] if m else None
    if region is not None:
        if _has_latent(region):
            return None
        return parse_number(region)
    # No answer marker: the last number, but never one read out of a latent token such as <latent_12>.
    return parse_number(_LATENT_RE.sub(" ", text), last=True)


def _gsm8k_correct(completion: str, gold: str) -> bool:
    pred = extract_gsm8k(completion)
    ref = extract_gsm8k(gold)
    return pred is not None and ref is not None and pred == ref


# ---------------------------------------------------------------- MATH and the other math sets


def extract_math(completion: str) -> str | None:
    """The final answer of a math completion as a LaTeX string, or None.

    Priority: the text after the last ``###`` (our sample format; a ``\\boxed`` inside it is
    unwrapped), then the last ``\\boxed{..}``, then "The answer is: X" up to the end of its line.
    """
    text = _clean(completion)
    region = after_last(text, "###")
    if region is not None:
        boxed = last_boxed(region)
        ans = boxed if boxed is not None else region
    else:
        ans = last_boxed(text)
        if ans is None:
            m = list(_ANSWER_IS_RE.finditer(text))
            if not m:
                return None
            ans = text[m[-1].end() :].split("\n", 1)[0]
    ans = _strip_answer_punct(ans)
    if not ans or _has_latent(ans) or len(ans) > _MAX_MATH_ANSWER_CHARS:
        return None
    return ans


def _unwrap(ans: str) -> str:
    """Drop the math delimiters a gold answer may carry: ``$..$``, ``\\(..\\)``, ``\\[..\\]``."""
    ans = _strip_answer_punct(ans)
    if ans.startswith("\\(") and ans.endswith("\\)"):
        ans = ans[2:-2].strip()
    if ans.startswith("\\[") and ans.endswith("\\]"):
        ans = ans[2:-2].strip()
    if len(ans) >= 2 and ans.startswith("$") and ans.endswith("$") and not ans.endswith("\\$"):
        ans = ans.strip("$").strip()
    return ans


def _as_latex(ans: str) -> str:
    """Wrap a bare answer so math-verify reads it as LaTeX (it looks for $..$, \\[..\\] or \\boxed)."""
    return "\\boxed{" + _unwrap(ans) + "}"


def _math_parse(ans: str) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    return parse(
        _as_latex(ans),
        extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()],
        parsing_timeout=None,
    )


def math_verify_equal(pred: str, gold: str) -> bool:
    """math-verify's judgement alone: both parsed (timeouts off) and verified equivalent."""
    from math_verify import verify

    g, p = _math_parse(gold), _math_parse(pred)
    if not g or not p:
        return False
    return verify(g, p, timeout_seconds=None)


def math_equal(pred: str, gold: str) -> bool:
    """Mathematical equivalence of two answer strings (bare LaTeX, ``$..$`` or ``\\(..\\)``).

    Identical strings (up to whitespace and math delimiters) are equal without asking sympy: it is
    cheaper, and an answer sympy cannot parse (free text, set-builder notation) is still right when
    written exactly as the gold.
    """
    if "".join(_unwrap(pred).split()) == "".join(_unwrap(gold).split()):
        return True
    return math_verify_equal(pred, gold)


def _math_correct(completion: str, gold: str) -> bool:
    pred = extract_math(completion)
    gold = _strip_answer_punct(str(gold))
    return pred is not None and bool(gold) and math_equal(pred, gold)


# ---------------------------------------------------------------- ProsQA / ProntoQA (Coconut)


def _normalise_space(s: str) -> str:
    return " ".join(s.split())


def extract_after_hash(completion: str) -> str | None:
    """Coconut's answer: the text after the last ``#``, commas dropped and whitespace normalised.
    None when there is no ``#`` at all (the model never gave an answer)."""
    text = _clean(completion)
    if "#" not in text:
        return None
    return _normalise_space(text.split("#")[-1].replace(",", ""))


def _exact_correct(completion: str, gold: str) -> bool:
    pred = extract_after_hash(completion)
    if pred is None or not pred or _has_latent(pred):
        return False
    return pred == _normalise_space(str(gold).replace(",", ""))


# ---------------------------------------------------------------- Keys-Finding Maze


def _maze_feasible(completion: str, gold: str, question: str) -> bool:
    from lm_latent.data.maze.plans import check_plan
    from lm_latent.data.maze.world import parse_prompt

    plan = after_last(_clean(completion), "###")
    return plan is not None and check_plan(parse_prompt(question), plan).feasible


# Checkers that read the question as well (the maze a plan must solve).
_QUESTION_CHECKERS = {"maze": _maze_feasible}

_CHECKERS = {
    "gsm8k": _gsm8k_correct,
    "math": _math_correct,
    "prosqa": _exact_correct,
    "prontoqa": _exact_correct,
}
