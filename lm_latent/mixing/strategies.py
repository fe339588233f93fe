"""Which CoT chunks of a sample are replaced by latent codes, per strategy.

Every strategy returns a :class:`Replacement`: the indices of the chunks that become latent tokens,
and whether the CoT is kept at all. ``n`` below is the number of chunks a sample can have replaced
(:meth:`MixingStrategy.replaceable_chunks`): with ``partial_chunk="text"`` (default) only its whole
chunks of L tokens, so a last, shorter chunk always stays text; with ``partial_chunk="latent"`` that
last chunk too, so the whole CoT can become codes (m capped at the CoT length, as reported for the
paper, whose ProntoQA and ProsQA models write almost no text, Table 4.1). Only the left-to-right strategies take
``"latent"``.

Strategies (one config switch, ``strategy``):

``latent_ar`` (the paper)
    The first k chunks, left to right, with k random per sample and per use. With ``m_values`` (token
    counts, e.g. the paper's math set {0, 72, 128, 160, 192, 224, 256}) m is drawn uniformly from the
    set and k = min(m // L, n); without it (default, for short CoTs such as ProsQA's ~25 tokens)
    k is uniform over 0..n.
``all_replace``
    Every replaceable chunk: k = n.
``curriculum``
    k grows with the epoch: stage = epoch // epochs_per_stage, k = min(stage * chunks_per_stage, n).
``poisson``
    Latent chunks at scattered positions. The number of latent chunks is k = min(X, n) with
    X ~ Poisson(rate), ``rate = poisson_rate`` or, when unset, n / 2 (the mean of ``latent_ar``'s
    uniform draw); the k positions are a uniformly random k-subset of the full chunks. Each maximal run
    of consecutive latent chunks is wrapped in its own ``<boLatent> ... <eoLatent>``.
``cot``
    Baseline: the plain chain of thought, k = 0.
``sol_only``
    Baseline: no chain of thought at all (prompt -> solution).

Randomness comes from :func:`sample_rng`, seeded by a stable hash of (seed, epoch, example id), so a
sample gets the same chunks on 1 or N processes, in any order, with any number of data workers, and
after a resume.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
STRATEGIES: tuple[str, ...] = ("latent_ar", "all_replace", "curriculum", "poisson", "cot", "sol_only")
PARTIAL_CHUNK: tuple[str, ...] = ("text", "latent")


@dataclass(frozen=True)
class Replacement:
    """The chunk indices (ascending) replaced by their codes; ``include_cot=False`` drops the CoT."""

    chunks: tuple[int, ...] = ()
    include_cot: bool = True

    @property
    def k(self) -> int:
        """Number of latent chunks (= latent tokens) in the sample."""
        return len(self.chunks)

    @classmethod
    def prefix(cls, k: int) -> "Replacement":
        return cls(tuple(range(k)))


def sample_rng(seed: int, epoch: int, example_id: str) -> random.Random:
    """A generator owned by one (seed, epoch, example) triple.

    Seeded through SHA-256 (not Python's per-process salted ``hash``) so every process, worker and
    rerun derives the same stream.
    """
    digest = hashlib.sha256(f"{int(seed)}\x1f{int(epoch)}\x1f{example_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def _poisson(rate: float, rng: random.Random) -> int:
    """Inverse-transform Poisson draw; works for any rate without the underflow of Knuth's method."""
    if rate <= 0:
        return 0
    u = rng.random()
    k = 0
    log_p = -rate  # log P(X = 0)
    cdf = math.exp(log_p)
    # Beyond rate + 40 sd the tail mass is below double precision; stop there.
    limit = int(rate + 40 * math.sqrt(rate) + 40)
    while u > cdf and k < limit:
        k += 1
        log_p += math.log(rate) - math.log(k)
        cdf += math.exp(log_p)
    return k


@dataclass(frozen=True)
class MixingStrategy:
    """How many (and which) chunks are latent in each sample. See the module docstring."""

    name: str = "latent_ar"
    m_values: tuple[int, ...] | None = None
    epochs_per_stage: int = 1
    chunks_per_stage: int = 1
    poisson_rate: float | None = None
    partial_chunk: str = "text"

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ValueError(f"unknown mixing strategy '{self.name}'; choose one of {', '.join(STRATEGIES)}")
        if self.partial_chunk not in PARTIAL_CHUNK:
            raise ValueError(f"partial_chunk must be one of {', '.join(PARTIAL_CHUNK)}, got '{self.partial_chunk}'")
        if self.partial_chunk == "latent" and self.scatters:
            raise ValueError("partial_chunk: latent is for the left-to-right strategies; poisson scatters whole chunks only")
        if self.m_values is not None:
            values = tuple(int(m) for m in self.m_values)
            if not values or any(m < 0 for m in values):
                raise ValueError(f"m_values must be a non-empty list of token counts >= 0, got {self.m_values}")
            object.__setattr__(self, "m_values", values)
        if self.epochs_per_stage < 1 or self.chunks_per_stage < 1:
            raise ValueError("curriculum: epochs_per_stage and chunks_per_stage must be >= 1")
        if self.poisson_rate is not None and self.poisson_rate < 0:
            raise ValueError(f"poisson_rate must be >= 0, got {self.poisson_rate}")

    @property
    def needs_codes(self) -> bool:
        """Whether any sample can contain latent tokens (baselines need no code table)."""
        return self.name not in ("cot", "sol_only")

    @property
    def depends_on_epoch_only(self) -> bool:
        """True for curriculum, whose k is a function of the epoch, not a random draw."""
        return self.name == "curriculum"

    @property
    def includes_cot(self) -> bool:
        """False for ``sol_only`` (prompt -> solution), True for every other strategy."""
        return self.name != "sol_only"

    @property
    def scatters(self) -> bool:
        """True for ``poisson``, whose latent chunks may form several runs; the others replace a prefix."""
        return self.name == "poisson"

    def replaceable_chunks(self, cot_length: int, chunk_size: int) -> int:
        """How many of a CoT's chunks can become codes: the whole ones, plus a last, shorter one when
        ``partial_chunk`` is ``"latent"``."""
        if self.partial_chunk == "latent":
            return -(-cot_length // chunk_size)
        return cot_length // chunk_size

    def possible_ks(self, n: int, chunk_size: int) -> tuple[int, ...]:
        """Every number of latent chunks a draw can give a sample with ``n`` replaceable chunks
        (:meth:`replaceable_chunks`), in any epoch (ascending). What bounds the sequence lengths a
        dataset can produce."""
        name = self.name
        if name in ("cot", "sol_only"):
            return (0,)
        if name == "all_replace":
            return (n,)
        if name == "curriculum":
            stages = -(-n // self.chunks_per_stage) + 1
            return tuple(sorted({min(s * self.chunks_per_stage, n) for s in range(stages)}))
        if name == "latent_ar" and self.m_values is not None:
            return tuple(sorted({min(m // chunk_size, n) for m in self.m_values}))
        return tuple(range(n + 1))  # latent_ar over 0..n; poisson: any count, capped

    def draw(self, n: int, chunk_size: int, rng: random.Random, epoch: int) -> Replacement:
        """Choose the replaced chunks of one sample with ``n`` replaceable chunks (:meth:`replaceable_chunks`)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        name = self.name
        if name == "sol_only":
            return Replacement((), include_cot=False)
        if name == "cot":
            return Replacement()
        if name == "all_replace":
            return Replacement.prefix(n)
        if name == "curriculum":
            stage = epoch // self.epochs_per_stage
            return Replacement.prefix(min(stage * self.chunks_per_stage, n))
        if name == "latent_ar":
            if self.m_values is None:
                return Replacement.prefix(rng.randint(0, n))
            m = self.m_values[rng.randrange(len(self.m_values))]
            return Replacement.prefix(min(m // chunk_size, n))
        # poisson
        rate = self.poisson_rate if self.poisson_rate is not None else n / 2
        k = min(_poisson(rate, rng), n)
        return Replacement(tuple(sorted(rng.sample(range(n), k))))

    def expected_k_distribution(self, n: int, chunk_size: int) -> dict[int, float]:
        """P(k) for ``latent_ar`` (what a chi-square check of the sampler compares against)."""
        if self.name != "latent_ar":
            raise ValueError("expected_k_distribution is defined for latent_ar only")
        if self.m_values is None:
            return {k: 1 / (n + 1) for k in range(n + 1)}
        dist: dict[int, float] = {}
        for m in self.m_values:
            k = min(m // chunk_size, n)
            dist[k] = dist.get(k, 0.0) + 1 / len(self.m_values)
        return dist


def choose(
    strategy: MixingStrategy, example_id: str, n: int, chunk_size: int, seed: int, epoch: int
) -> Replacement:
    """The replacement of one example in one epoch: deterministic in (seed, epoch, example id)."""
    return strategy.draw(n, chunk_size, sample_rng(seed, epoch, example_id), epoch)

