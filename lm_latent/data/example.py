"""The canonical example every dataset is converted to (one small converter per source)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Example:
    """One problem with its chain of thought.

    ``steps`` is the chain of thought as a list of step strings, left to right. Evaluation-only sets
    (Gaokao, College-Math, ...) have no chain of thought: their ``steps`` is empty and ``has_steps`` is
    False, rather than an invented one. ``answer`` is the gold final answer as the source writes it
    (for ProsQA a sentence, for GSM8K a number string, for MATH the boxed LaTeX). ``id`` is unique
    within a dataset file and stable across runs: caches, mixing seeds and evaluation de-duplication
    are keyed by it.
    """

    question: str
    steps: tuple[str, ...]
    answer: str
    id: str
    source: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def has_steps(self) -> bool:
        return len(self.steps) > 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["steps"] = list(self.steps)
        return d
