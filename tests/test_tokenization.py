"""Segment tokenization, chunking and the batch plan: the units every later stage is built from."""

import pytest

from lm_latent.data.example import Example
from lm_latent.data.tokenization import (
    chunk,
    full_text,
    load_tokenizer,
    tokenize_examples,
    train_tokenizer,
)
from lm_latent.training import plan_batches

EXAMPLES = [
    Example(
        question="Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or zumpus?",
        steps=("Tom is a wumpus.", "Every wumpus is a yumpus."),
        answer="Tom is a yumpus.",
        id="a",
        source="prosqa",
    ),
    Example(question="What is 2+2?", steps=(), answer="4", id="b", source="gsm8k"),
]


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    texts = [full_text(e) for e in EXAMPLES] * 20
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(texts, out, vocab_size=300, min_frequency=1)
    return load_tokenizer(out)


def test_chunk_splits_left_to_right_with_short_tail():
    assert chunk(list(range(7)), 3) == [(0, 1, 2), (3, 4, 5), (6,)]
    assert chunk([], 4) == []
    with pytest.raises(ValueError):
        chunk([1], 0)


def test_segments_concatenate_to_the_whole_text(bpe):
    tokenized, mismatches = tokenize_examples(bpe, EXAMPLES, check_roundtrip=True)
    assert mismatches == 0
    t = tokenized[0]
    assert len(t.step_ids) == 2
    assert t.answer_ids[-1] == bpe.eos_token_id
    whole = bpe.decode(list(t.prompt_ids) + list(t.cot_ids) + list(t.answer_ids[:-1]))
    assert whole == full_text(EXAMPLES[0])
    assert tokenized[1].cot_ids == ()
    assert t.num_full_chunks(4) == len(t.cot_ids) // 4
    assert sum(len(c) for c in t.chunks(4)) == len(t.cot_ids)


def test_trained_tokenizer_reloads_with_pad_and_eos(bpe):
    assert bpe.pad_token_id is not None and bpe.eos_token_id is not None
    assert bpe.pad_token_id != bpe.eos_token_id


def test_load_tokenizer_names_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        load_tokenizer(tmp_path / "nope")


@pytest.mark.parametrize(
    "global_bs,world,micro,expected",
    [(32, 1, None, (32, 1)), (32, 2, None, (16, 1)), (32, 2, 4, (4, 4)), (64, 8, 8, (8, 1))],
)
def test_batch_plan_keeps_the_global_batch(global_bs, world, micro, expected):
    plan = plan_batches(global_bs, world, micro)
    assert (plan.micro_batch_size, plan.accumulate_grad_batches) == expected
    assert plan.micro_batch_size * plan.accumulate_grad_batches * world == global_bs


def test_batch_plan_refuses_uneven_splits():
    with pytest.raises(ValueError, match="not divisible by the world size 3"):
        plan_batches(32, 3)
    with pytest.raises(ValueError, match="micro_batch_size=5"):
        plan_batches(32, 2, 5)
