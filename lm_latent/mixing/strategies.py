"""Which CoT chunks of a sample are replaced by latent codes, per strategy.

Every strategy returns a :class:`Replacement`: the indices of the *whole* chunks (of L tokens) that
become latent tokens, and whether the CoT is kept at all. Only full chunks are ever replaced; a last,
shorter chunk always stays text.

Strategies (one config switch, ``strategy``):

``latent_ar`` (the paper)
    The first k chunks, left to right, with k random per sample and per use. With ``m_values`` (token
    counts, e.g. the paper's math set {0, 72, 128, 160, 192, 224, 256}) m is drawn uniformly from the
    set and k = min(m // L, n_full); without it (default, for short CoTs such as ProsQA's ~25 tokens)
    k is uniform over 0..n_full.
``all_replace``
    Every full chunk: k = n_full.
``curriculum``
    k grows with the epoch: stage = epoch // epochs_per_stage, k = min(stage * chunks_per_stage, n_full).
``poisson``
    Latent chunks at scattered positions. The number of latent chunks is k = min(X, n_full) with
    X ~ Poisson(rate), ``rate = poisson_rate`` or, when unset, n_full / 2 (the mean of ``latent_ar``'s
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


@dataclass(frozen=True)
class Replacement:
    """The full-chunk indices (ascending) replaced by their codes; ``include_cot=False`` drops the CoT."""

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

    def __post_init__(self) -> None:
        if self.name not in STRATEGIES:
            raise ValueError(f"unknown mixing strategy '{self.name}'; choose one of {', '.join(STRATEGIES)}")
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

    def possible_ks(self, n_full: int, chunk_size: int) -> tuple[int, ...]:
        """Every number of latent chunks a draw can give a sample with ``n_full`` whole chunks, in any
        epoch (ascending). What bounds the sequence lengths a dataset can produce."""
        name = self.name
        if name in ("cot", "sol_only"):
            return (0,)
        if name == "all_replace":
            return (n_full,)
        if name == "curriculum":
            stages = -(-n_full // self.chunks_per_stage) + 1
            return tuple(sorted({min(s * self.chunks_per_stage, n_full) for s in range(stages)}))
        if name == "latent_ar" and self.m_values is not None:
            return tuple(sorted({min(m // chunk_size, n_full) for m in self.m_values}))
        return tuple(range(n_full + 1))  # latent_ar over 0..n_full; poisson: any count, capped

    def draw(self, n_full: int, chunk_size: int, rng: random.Random, epoch: int) -> Replacement:
        """Choose the replaced chunks of one sample with ``n_full`` whole chunks of ``chunk_size`` tokens."""
        if n_full < 0:
            raise ValueError(f"n_full must be >= 0, got {n_full}")
        name = self.name
        if name == "sol_only":
            return Replacement((), include_cot=False)
        if name == "cot":
            return Replacement()
        if name == "all_replace":
            return Replacement.prefix(n_full)
        if name == "curriculum":
            stage = epoch // self.epochs_per_stage
            return Replacement.prefix(min(stage * self.chunks_per_stage, n_full))
        if name == "latent_ar":
            if self.m_values is None:
                return Replacement.prefix(rng.randint(0, n_full))
            m = self.m_values[rng.randrange(len(self.m_values))]
            return Replacement.prefix(min(m // chunk_size, n_full))
        # poisson
        rate = self.poisson_rate if self.poisson_rate is not None else n_full / 2
        k = min(_poisson(rate, rng), n_full)
        return Replacement(tuple(sorted(rng.sample(range(n_full), k))))

    def expected_k_distribution(self, n_full: int, chunk_size: int) -> dict[int, float]:
        """P(k) for ``latent_ar`` (what a chi-square check of the sampler compares against)."""
        if self.name != "latent_ar":
            raise ValueError("expected_k_distribution is defined for latent_ar only")
        if self.m_values is None:
            return {k: 1 / (n_full + 1) for k in range(n_full + 1)}
        dist: dict[int, float] = {}
        for m in self.m_values:
            k = min(m // chunk_size, n_full)
            dist[k] = dist.get(k, 0.0) + 1 / len(self.m_values)
        return dist


def choose(
    strategy: MixingStrategy, example_id: str, n_full: int, chunk_size: int, seed: int, epoch: int
) -> Replacement:
    """The replacement of one example in one epoch: deterministic in (seed, epoch, example id)."""
    return strategy.draw(n_full, chunk_size, sample_rng(seed, epoch, example_id), epoch)

