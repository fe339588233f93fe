"""How many chunks become latent: distributions, curriculum, Poisson, baselines, stable seeding."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from lm_latent.mixing.strategies import STRATEGIES, MixingStrategy, Replacement, choose

N_IDS = 6000
# Chi-square critical values at p = 0.001: a correct sampler fails these with probability 1/1000
# (and the draws are deterministic, so a pass is a pass).
CHI2_CRIT_001 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46}


def _chi_square(observed: Counter, expected: dict[int, float], n: int) -> float:
    assert set(observed) <= set(expected), f"k outside the support: {set(observed) - set(expected)}"
    return sum((observed.get(k, 0) - n * p) ** 2 / (n * p) for k, p in expected.items())


def _ks(strategy, n_full, chunk_size=16, epoch=0, seed=0):
    return Counter(choose(strategy, f"id-{i}", n_full, chunk_size, seed, epoch).k for i in range(N_IDS))


def test_latent_ar_uniform_over_chunk_counts():
    s = MixingStrategy("latent_ar")
    expected = s.expected_k_distribution(4, 16)
    assert expected == {k: 0.2 for k in range(5)}
    chi2 = _chi_square(_ks(s, 4), expected, N_IDS)
    assert chi2 < CHI2_CRIT_001[4]


def test_latent_ar_paper_m_values_rounded_to_chunks_and_capped():
    s = MixingStrategy("latent_ar", m_values=(0, 72, 128, 160, 192, 224, 256))
    # L = 16, 10 full chunks: m // 16 = 0, 4, 8, 10, 12, 14, 16 -> capped at 10.
    expected = s.expected_k_distribution(10, 16)
    assert expected == pytest.approx({0: 1 / 7, 4: 1 / 7, 8: 1 / 7, 10: 4 / 7})
    chi2 = _chi_square(_ks(s, 10), expected, N_IDS)
    assert chi2 < CHI2_CRIT_001[3]


def test_draws_differ_across_epochs_and_seeds_but_not_within():
    s = MixingStrategy("latent_ar")
    a = [choose(s, f"x{i}", 8, 16, seed=0, epoch=0).k for i in range(300)]
    assert a == [choose(s, f"x{i}", 8, 16, seed=0, epoch=0).k for i in range(300)]
    b = [choose(s, f"x{i}", 8, 16, seed=0, epoch=1).k for i in range(300)]
    c = [choose(s, f"x{i}", 8, 16, seed=1, epoch=0).k for i in range(300)]
    # Independent uniform draws over 9 values agree ~1/9 of the time.
    assert sum(x == y for x, y in zip(a, b)) < 60 and sum(x == y for x, y in zip(a, c)) < 60


def test_seeding_does_not_depend_on_python_hash_salt():
    code = (
        "from lm_latent.mixing.strategies import MixingStrategy, choose;"
        "s = MixingStrategy('poisson');"
        "print([choose(s, f'id-{i}', 9, 16, 3, 2).chunks for i in range(50)])"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": salt}).stdout
        for salt in ("1", "2")
    }
    here = str([choose(MixingStrategy("poisson"), f"id-{i}", 9, 16, 3, 2).chunks for i in range(50)]) + "\n"
    assert outs == {here}


def test_all_replace_cot_and_sol_only():
    assert choose(MixingStrategy("all_replace"), "a", 5, 16, 0, 0) == Replacement((0, 1, 2, 3, 4))
    assert choose(MixingStrategy("cot"), "a", 5, 16, 0, 0) == Replacement(())
    sol = choose(MixingStrategy("sol_only"), "a", 5, 16, 0, 0)
    assert sol.include_cot is False and sol.k == 0
    assert not MixingStrategy("cot").needs_codes and not MixingStrategy("sol_only").needs_codes
    assert MixingStrategy("poisson").needs_codes


def test_curriculum_grows_with_epoch():
    s = MixingStrategy("curriculum", epochs_per_stage=2, chunks_per_stage=1)
    ks = [choose(s, "a", 3, 16, 0, epoch).k for epoch in range(10)]
    assert ks == [0, 0, 1, 1, 2, 2, 3, 3, 3, 3]
    assert all(choose(s, "a", 3, 16, 0, 4).chunks == (0, 1) for _ in range(3))
    s2 = MixingStrategy("curriculum", epochs_per_stage=1, chunks_per_stage=2)
    assert [choose(s2, "b", 5, 16, 0, e).k for e in range(4)] == [0, 2, 4, 5]


def test_poisson_count_and_positions():
    n_full, rate = 40, 6.0
    s = MixingStrategy("poisson", poisson_rate=rate)
    reps = [choose(s, f"p{i}", n_full, 16, 0, 0) for i in range(N_IDS)]
    ks = [r.k for r in reps]
    mean = sum(ks) / len(ks)
    var = sum((k - mean) ** 2 for k in ks) / len(ks)
    # Poisson: mean = variance = rate (standard error of the mean ~ 0.03 here).
    assert mean == pytest.approx(rate, abs=0.15)
    assert var == pytest.approx(rate, rel=0.1)
    for r in reps:
        assert list(r.chunks) == sorted(set(r.chunks)) and all(0 <= c < n_full for c in r.chunks)
    # Positions are uniform over the chunks: every chunk is latent ~ rate / n_full of the time.
    per_chunk = Counter(c for r in reps for c in r.chunks)
    expected = sum(ks) / n_full
    assert all(abs(per_chunk[c] - expected) < 5 * expected**0.5 for c in range(n_full))
    # Not left-to-right: most multi-chunk samples are not a prefix.
    assert sum(r.chunks != tuple(range(r.k)) for r in reps if r.k >= 2) > 0.9 * sum(r.k >= 2 for r in reps)
    # Default rate: half the full chunks, capped at n_full.
    default = [choose(MixingStrategy("poisson"), f"d{i}", 4, 16, 0, 0).k for i in range(N_IDS)]
    assert sum(default) / N_IDS == pytest.approx(2.0, abs=0.1) and max(default) <= 4


def test_no_chunks_means_k_zero_for_every_strategy():
    for name in STRATEGIES:
        assert choose(MixingStrategy(name), "e", 0, 16, 0, 5).k == 0


def test_bad_options_are_clear():
    with pytest.raises(ValueError, match="unknown mixing strategy 'latent'"):
        MixingStrategy("latent")
    with pytest.raises(ValueError, match="m_values"):
        MixingStrategy("latent_ar", m_values=())
    with pytest.raises(ValueError, match="epochs_per_stage"):
        MixingStrategy("curriculum", epochs_per_stage=0)


def test_partial_chunk_decides_whether_a_last_shorter_chunk_can_be_replaced():
    text, latent = MixingStrategy("latent_ar"), MixingStrategy("latent_ar", partial_chunk="latent")
    # 43 CoT tokens in chunks of 16: two whole chunks and one of 11 tokens.
    assert text.replaceable_chunks(43, 16) == 2 and latent.replaceable_chunks(43, 16) == 3
    assert text.replaceable_chunks(32, 16) == latent.replaceable_chunks(32, 16) == 2
    assert latent.replaceable_chunks(0, 16) == 0
    # The paper's m capped at the CoT length: m = 48 on a 43-token CoT replaces all of it.
    capped = MixingStrategy("latent_ar", m_values=(0, 48), partial_chunk="latent")
    assert capped.possible_ks(capped.replaceable_chunks(43, 16), 16) == (0, 3)
    with pytest.raises(ValueError, match="partial_chunk must be one of text, latent, got 'tail'"):
        MixingStrategy("latent_ar", partial_chunk="tail")
    with pytest.raises(ValueError, match="poisson scatters whole chunks only"):
        MixingStrategy("poisson", partial_chunk="latent")
