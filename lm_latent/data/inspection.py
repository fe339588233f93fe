"""`lm-latent data inspect`: what a dataset file holds once read, and how long its chains of thought
are in tokens and in chunks of L tokens (the unit the codebook compresses)."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any, Sequence

from lm_latent.data.readers import read_dataset
from lm_latent.data.tokenization import full_text, load_tokenizer, tokenize_examples, train_tokenizer

TRAINED_TOKENIZER = "trained-bpe-1024"


def length_stats(values: Sequence[int]) -> dict[str, float | int] | None:
    """mean / min / max / median of a list of lengths; None when there is nothing to describe."""
    if not values:
        return None
    return {
        "mean": round(statistics.fmean(values), 2),
        "min": min(values),
        "max": max(values),
        "median": statistics.median(values),
    }


def inspect_dataset(
    name: str,
    path: str | Path,
    tokenizer: Any = None,
    chunk_size: int = 16,
    *,
    strip_calculator: bool = True,
) -> dict[str, Any]:
    """Summarise a dataset file as a JSON-ready dict.

    ``tokenizer`` is a tokenizer object, a local tokenizer directory, or None: then a 1024-token
    byte-level BPE is trained on the file's own texts in a temporary directory (reported as
    ``"tokenizer": "trained-bpe-1024"``), so lengths are meaningful without any download.
    CoT statistics are over the examples that have steps; chunks count the last, possibly shorter,
    chunk (``ceil(tokens / chunk_size)``); ``cot_full_chunks`` only the full ones. Question tokens
    include the trailing newline; answer tokens include the ``### `` prefix and EOS.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    result = read_dataset(name, path, strip_calculator=strip_calculator)
    examples = result.examples
    if tokenizer is None:
        with tempfile.TemporaryDirectory() as tmp:
            tok = train_tokenizer((full_text(ex) for ex in examples), tmp, vocab_size=1024)
        tokenizer_name = TRAINED_TOKENIZER
    elif isinstance(tokenizer, (str, Path)):
        tok = load_tokenizer(tokenizer)
        tokenizer_name = str(tokenizer)
    else:
        tok = tokenizer
        tokenizer_name = getattr(tok, "name_or_path", "") or type(tok).__name__
    tokenized, mismatches = tokenize_examples(tok, examples, check_roundtrip=True)
    with_steps = [t for ex, t in zip(examples, tokenized) if ex.has_steps]
    cot_tokens = [len(t.cot_ids) for t in with_steps]
    return {
        "dataset": name,
        "path": str(path),
        "examples": len(examples),
        "skipped": result.num_skipped,
        "skipped_reasons": dict(sorted(result.skipped.items())),
        "with_steps": len(with_steps),
        "strip_calculator": strip_calculator,
        "tokenizer": tokenizer_name,
        "vocab_size": len(tok),
        "chunk_size": chunk_size,
        "steps_per_example": length_stats([len(ex.steps) for ex in examples if ex.has_steps]),
        "question_tokens": length_stats([len(t.prompt_ids) for t in tokenized]),
        "answer_tokens": length_stats([len(t.answer_ids) for t in tokenized]),
        "cot_tokens": length_stats(cot_tokens),
        "cot_chunks": length_stats([-(-n // chunk_size) for n in cot_tokens]),
        "cot_full_chunks": length_stats([n // chunk_size for n in cot_tokens]),
        "roundtrip_mismatches": mismatches,
    }
