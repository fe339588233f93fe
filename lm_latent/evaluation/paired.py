"""Paired comparison of two strategies on the same examples: McNemar's exact test and the accuracy
difference with a 95% interval.

Two strategies scored on the same problems (and, pooled over seeds, the same problems once per seed)
give paired outcomes. Only the discordant pairs carry evidence: ``b`` where the first strategy is right
and the second wrong, ``c`` the reverse. McNemar's exact test asks whether b and c could come from a
fair coin (Binomial(b + c, 1/2), two-sided); the difference in accuracy is (b - c) / n with the normal
interval of a mean of per-pair differences in {-1, 0, 1}. Pooling seeds treats each (seed, problem) as a
pair; the seeds share their problems, so the interval is somewhat narrower than independent problems
would give, and the report says it is pooled.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Paired:
    n: int
    """Pairs compared."""
    first_only: int
    """b: pairs the first strategy gets right and the second wrong."""
    second_only: int
    """c: the reverse."""
    difference: float
    """Accuracy of the first minus accuracy of the second, (b - c) / n."""
    ci95: tuple[float, float]
    """Normal 95% interval of the difference."""
    p_value: float
    """McNemar's exact two-sided p-value."""

    def as_dict(self) -> dict:
        return asdict(self)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: 2 P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), at most 1."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def compare(first: list[bool], second: list[bool]) -> Paired:
    """Paired outcomes (True = correct) of two strategies on the same examples, in the same order."""
    if len(first) != len(second):
        raise ValueError(f"paired outcomes need equal lengths, got {len(first)} and {len(second)}")
    n = len(first)
    if n == 0:
        raise ValueError("no pairs to compare")
    b = sum(1 for x, y in zip(first, second) if x and not y)
    c = sum(1 for x, y in zip(first, second) if y and not x)
    diff = (b - c) / n
    var = max(0.0, (b + c) / n - diff**2)  # variance of a per-pair difference in {-1, 0, 1}
    half = 1.96 * math.sqrt(var / n)
    return Paired(n, b, c, diff, (diff - half, diff + half), mcnemar_exact(b, c))
