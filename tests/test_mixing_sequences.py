"""Exact mixed sequences and label masks: P <boLatent> z_1..z_k <eoLatent> C[k*L:] S."""

from __future__ import annotations

import random

import pytest

from lm_latent.data.tokenization import TokenizedExample
from lm_latent.mixing.sequences import IGNORE_INDEX, build_sequence, sequence_length
from lm_latent.mixing.tokens import LatentVocab

L = 4
VOCAB = LatentVocab(first_latent_id=100, num_codes=16, bo_id=116, eo_id=117)
BO, EO = VOCAB.bo_id, VOCAB.eo_id
P = (1, 2, 3)
# CoT of 11 tokens over two steps -> chunks [10..13] [14..17] [18 19 20]: n = 3 chunks, 2 full.
EX = TokenizedExample("ex-0", P, ((10, 11, 12, 13, 14), (15, 16, 17, 18, 19, 20)), (30, 31, 0))
CODES = [5, 9, 2]  # one code per chunk; the partial chunk's is used only with partial_chunk: latent
S = [30, 31, 0]


def z(code: int) -> int:
    return VOCAB.first_latent_id + code


def test_code_ids_are_the_code_tokens_in_code_order():
    assert VOCAB.code_ids.tolist() == [VOCAB.code_to_id(c) for c in range(VOCAB.num_codes)]
    assert VOCAB.bo_id not in VOCAB.code_ids.tolist() and VOCAB.eo_id not in VOCAB.code_ids.tolist()


@pytest.mark.parametrize(
    "k, expected_rest",
    [
        (0, [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]),
        (1, [BO, z(5), EO, 14, 15, 16, 17, 18, 19, 20]),
        (2, [BO, z(5), z(9), EO, 18, 19, 20]),
        (3, [BO, z(5), z(9), z(2), EO]),  # the last, shorter chunk too: the whole CoT as codes
    ],
)
def test_left_to_right_replacement_exact_tokens_and_labels(k, expected_rest):
    ids, labels = build_sequence(EX, CODES, k, VOCAB, L)
    assert ids == list(P) + expected_rest + S
    assert labels == [IGNORE_INDEX] * len(P) + expected_rest + S
    assert len(ids) == sequence_length(EX, tuple(range(k)), L)


def test_sol_only_drops_the_cot():
    ids, labels = build_sequence(EX, None, 0, None, L, include_cot=False)
    assert ids == list(P) + S
    assert labels == [IGNORE_INDEX] * 3 + S
    assert len(ids) == sequence_length(EX, (), L, include_cot=False)


def test_scattered_chunks_each_run_gets_its_own_delimiters():
    ex = TokenizedExample("ex-1", P, (tuple(range(10, 26)),), (0,))  # 16 tokens -> 4 full chunks
    codes = [1, 2, 3, 4]
    ids, labels = build_sequence(ex, codes, (0, 2, 3), VOCAB, L)
    rest = [BO, z(1), EO, 14, 15, 16, 17, BO, z(3), z(4), EO, 0]
    assert ids == list(P) + rest and labels == [IGNORE_INDEX] * 3 + rest
    assert len(ids) == sequence_length(ex, (0, 2, 3), L)
    # A prefix given as indices is the same as k.
    assert build_sequence(ex, codes, (0, 1), VOCAB, L) == build_sequence(ex, codes, 2, VOCAB, L)


def test_sequence_length_agrees_with_build_for_random_replacements():
    rng = random.Random(0)
    for i in range(200):
        n_cot = rng.randint(0, 40)
        ex = TokenizedExample(f"r{i}", (1,) * rng.randint(1, 5), ((7,) * n_cot,), (0,) * rng.randint(1, 4))
        n_chunks = -(-n_cot // L)  # the last, shorter chunk included
        chunks = tuple(sorted(rng.sample(range(n_chunks), rng.randint(0, n_chunks))))
        ids, labels = build_sequence(ex, [3] * n_chunks, chunks, VOCAB, L)
        assert len(ids) == len(labels) == sequence_length(ex, chunks, L)


def test_real_tokenizer_example(tiny_tokenizer):
    from lm_latent.data.example import Example
    from lm_latent.data.tokenization import load_tokenizer, tokenize_examples
    from lm_latent.mixing.tokens import add_latent_tokens

    tok = load_tokenizer(tiny_tokenizer)
    vocab = add_latent_tokens(tok, 8)
    ex = Example(
        "Every wumpus is a yumpus. Every yumpus is a zumpus. Tom is a wumpus. Is Tom a zumpus or rempus?",
        ("Tom is a wumpus.", "Every wumpus is a yumpus.", "Every yumpus is a zumpus."),
        "Tom is a zumpus.", "prosqa:0", "prosqa",
    )
    (t,), _ = tokenize_examples(tok, [ex])
    n_full = t.num_full_chunks(L)
    assert n_full >= 2
    codes = [i % 8 for i in range(len(t.chunks(L)))]
    ids, labels = build_sequence(t, codes, 2, vocab, L)
    expected = [*t.prompt_ids, vocab.bo_id, vocab.code_to_id(0), vocab.code_to_id(1), vocab.eo_id,
                *t.cot_ids[2 * L :], *t.answer_ids]
    assert ids == expected
    assert labels[: len(t.prompt_ids)] == [IGNORE_INDEX] * len(t.prompt_ids)
    assert labels[len(t.prompt_ids) :] == ids[len(t.prompt_ids) :]
    text = tok.decode(ids)
    assert text.startswith(ex.question + "\n<boLatent><latent_0><latent_1><eoLatent>")
    assert text.endswith("### Tom is a zumpus.<|endoftext|>")


def test_bad_requests_name_the_example():
    with pytest.raises(ValueError, match=r"example 'ex-0': k=4 outside 0..3 \(its number of CoT chunks\)"):
        build_sequence(EX, CODES, 4, VOCAB, L)
    with pytest.raises(ValueError, match=r"chunk indices \(1, 3\) outside 0..2"):
        build_sequence(EX, CODES + [7], (1, 3), VOCAB, L)
    with pytest.raises(ValueError, match="example 'ex-0': needs codes for chunks up to 1, the code table has 1"):
        build_sequence(EX, [5], 2, VOCAB, L)
    with pytest.raises(ValueError, match="ascending and unique"):
        build_sequence(EX, CODES, (1, 0), VOCAB, L)
    with pytest.raises(ValueError, match="no latent vocabulary"):
        build_sequence(EX, CODES, 1, None, L)


STRATEGY_CASES = [
    ("latent_ar", {}), ("latent_ar", {"m_values": (0, 8, 12)}), ("latent_ar", {"m_values": (8, 20)}),
    ("all_replace", {}), ("curriculum", {"chunks_per_stage": 2}), ("poisson", {}), ("poisson", {"poisson_rate": 9.0}),
    ("cot", {}), ("sol_only", {}),
    ("latent_ar", {"partial_chunk": "latent"}), ("latent_ar", {"m_values": (0, 8, 12), "partial_chunk": "latent"}),
    ("all_replace", {"partial_chunk": "latent"}), ("curriculum", {"partial_chunk": "latent"}),
]


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
@pytest.mark.parametrize("name, options", STRATEGY_CASES, ids=[f"{n}{o}" for n, o in STRATEGY_CASES])
def test_longest_sequence_length_is_the_longest_draw(name, options, chunk_size):
    """What max_length is checked against: the longest sequence any draw of the strategy builds, in
    any epoch (with L <= 2, or a last chunk of one token, a latent chunk plus its delimiters can be
    longer than its text)."""
    from itertools import combinations

    from lm_latent.mixing.strategies import MixingStrategy, choose
    from lm_latent.mixing.sequences import longest_sequence_length

    strategy = MixingStrategy(name, **options)
    n = strategy.replaceable_chunks(len(EX.cot_ids), chunk_size)
    draws = [choose(strategy, f"id{i}", n, chunk_size, 0, epoch) for i in range(200) for epoch in range(12)]
    possible = strategy.possible_ks(n, chunk_size)
    assert {r.k for r in draws} <= set(possible)
    longest = longest_sequence_length(EX, strategy, chunk_size)
    # The longest layout of every possible count (any positions for poisson).
    layouts = [c for k in possible for c in (combinations(range(n), k) if strategy.scatters else [tuple(range(k))])]
    assert longest == max(sequence_length(EX, c, chunk_size, strategy.includes_cot) for c in layouts)
    drawn = max(sequence_length(EX, r.chunks, chunk_size, r.include_cot) for r in draws)
    if strategy.scatters:  # the longest layouts (alternating chunks, or k = 0 at rate 9) are rare draws
        assert drawn <= longest
    else:
        assert drawn == longest
