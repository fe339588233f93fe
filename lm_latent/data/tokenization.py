"""Tokenizers (local HF directories or trained here, offline) and segment tokenization + chunking.

Following Coconut, question, each step and answer are tokenized *separately* and kept as lists, so
replacing the first m CoT tokens by latent codes is list slicing. A sample's text is

    question "\n"  step_1 "\n" ... step_n "\n"  "### " answer  <eos>

and the concatenation of the segment tokens is checked against tokenizing that whole text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lm_latent.data.example import Example

ANSWER_PREFIX = "### "
PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"


def prompt_text(question: str) -> str:
    return question + "\n"


def step_text(step: str) -> str:
    return step + "\n"


def answer_text(answer: str) -> str:
    return ANSWER_PREFIX + answer


def full_text(ex: Example, with_steps: bool = True) -> str:
    steps = "".join(step_text(s) for s in ex.steps) if with_steps else ""
    return prompt_text(ex.question) + steps + answer_text(ex.answer)


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of one example, kept per segment. ``answer_ids`` ends with EOS."""

    id: str
    prompt_ids: tuple[int, ...]
    step_ids: tuple[tuple[int, ...], ...]
    answer_ids: tuple[int, ...]

    @property
    def cot_ids(self) -> tuple[int, ...]:
        return tuple(t for step in self.step_ids for t in step)

    def chunks(self, chunk_size: int) -> list[tuple[int, ...]]:
        return chunk(self.cot_ids, chunk_size)

    def num_full_chunks(self, chunk_size: int) -> int:
        return len(self.cot_ids) // chunk_size


def chunk(ids: Sequence[int], chunk_size: int) -> list[tuple[int, ...]]:
    """Split left to right into chunks of ``chunk_size`` tokens; the last one may be shorter."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    ids = tuple(ids)
    return [ids[i : i + chunk_size] for i in range(0, len(ids), chunk_size)]


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """Load any Hugging Face tokenizer from a local directory (never the hub)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    if tok.eos_token is None:
        raise ValueError(f"{path}: tokenizer has no eos_token; generation could never stop")
    if tok.pad_token is None:
        # Decoder-only LMs often ship without a pad token; padding is always masked, so EOS is safe.
        tok.pad_token = tok.eos_token
    return tok


TOKENIZER_KINDS = ("bpe", "word", "maze")


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | Path,
    vocab_size: int = 1024,
    min_frequency: int = 2,
    kind: str = "bpe",
    split_forms: bool = True,
):
    """Train a tokenizer on ``texts`` and save it as a standard HF fast tokenizer directory.

    ``kind="bpe"``: byte-level BPE (GPT-2 style, lossless on any text) of ``vocab_size`` tokens; small
    vocabularies keep small models fast on CPU (a 50k LM head makes a tiny model ~5x slower).
    ``kind="word"``: one token per word for closed-vocabulary tasks (ProsQA, ProntoQA), the size
    read from the data; ``split_forms`` makes capitals and plural endings tokens of their own so a
    concept is one id in every form (lm_latent/data/word_tokenizer.py says why).
    ``kind="maze"``: the maze task's symbolic vocabulary, one token per keyword, number, cost and
    colour, sized from the texts' largest grid and colour count (lm_latent/data/maze/tokenizer.py)."""
    if kind not in TOKENIZER_KINDS:
        raise ValueError(f"tokenizer kind must be one of {TOKENIZER_KINDS}, got {kind!r}")
    if kind == "word":
        from lm_latent.data.word_tokenizer import train_word_tokenizer

        return train_word_tokenizer(texts, out_dir, (EOS_TOKEN, PAD_TOKEN), split_forms=split_forms)
    if kind == "maze":
        from lm_latent.data.maze.tokenizer import train_maze_tokenizer

        return train_maze_tokenizer(texts, out_dir, (EOS_TOKEN, PAD_TOKEN))
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast


def _encode_many(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    # One batched call: fast tokenizers encode in Rust across threads.
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def tokenize_examples(
    tokenizer,
    examples: Sequence[Example],
    check_roundtrip: bool = False,
) -> tuple[list[TokenizedExample], int]:
    """Segment-tokenize examples. Returns the tokenized examples and the number whose segment
    concatenation differs from tokenizing the whole text (only counted when ``check_roundtrip``)."""
    prompts = [prompt_text(ex.question) for ex in examples]
    answers = [answer_text(ex.answer) for ex in examples]
    flat_steps = [step_text(s) for ex in examples for s in ex.steps]
    p_ids, a_ids, s_ids = (_encode_many(tokenizer, x) for x in (prompts, answers, flat_steps))
    eos = tokenizer.eos_token_id
    out: list[TokenizedExample] = []
    pos = 0
    for ex, p, a in zip(examples, p_ids, a_ids):
        steps = tuple(tuple(s) for s in s_ids[pos : pos + len(ex.steps)])
        pos += len(ex.steps)
        out.append(TokenizedExample(ex.id, tuple(p), steps, tuple(a) + (eos,)))
    mismatches = 0
    if check_roundtrip:
        whole = _encode_many(tokenizer, [full_text(ex) for ex in examples])
        for t, w in zip(out, whole):
            if list(t.prompt_ids) + list(t.cot_ids) + list(t.answer_ids[:-1]) != w:
                mismatches += 1
    return out, mismatches
