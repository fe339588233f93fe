"""Build one training sequence: prompt, latent codes for the replaced chunks, the rest of the CoT as
text, and the solution.

With the first k of the CoT's chunks replaced (the paper's left-to-right scheme) the sequence is

    P  <boLatent> z_1 ... z_k <eoLatent>  C[k*L:]  S

and with k = 0 it is the plain CoT ``P C S`` (no delimiters); ``sol_only`` drops C entirely (``P S``).
Scattered replacements (the Poisson ablation) wrap each run of consecutive latent chunks in its own
delimiters. Labels are -100 on the prompt and equal to the input ids everywhere else: latent tokens and
delimiters are supervised because at test time the model has to emit them itself.
"""

from __future__ import annotations

from typing import Sequence

from lm_latent.data.tokenization import TokenizedExample
from lm_latent.mixing.tokens import LatentVocab

IGNORE_INDEX = -100


def _as_chunks(k: int | Sequence[int], n_chunks: int, example_id: str) -> tuple[int, ...]:
    if isinstance(k, int):
        if not 0 <= k <= n_chunks:
            raise ValueError(f"example '{example_id}': k={k} outside 0..{n_chunks} (its number of CoT chunks)")
        return tuple(range(k))
    chunks = tuple(int(c) for c in k)
    if list(chunks) != sorted(set(chunks)):
        raise ValueError(f"example '{example_id}': replaced chunk indices must be ascending and unique, got {chunks}")
    if chunks and not (0 <= chunks[0] and chunks[-1] < n_chunks):
        raise ValueError(f"example '{example_id}': chunk indices {chunks} outside 0..{n_chunks - 1} (its CoT chunks)")
    return chunks


def build_sequence(
    tokenized: TokenizedExample,
    codes: Sequence[int] | None,
    k: int | Sequence[int],
    latent_vocab: LatentVocab | None,
    chunk_size: int,
    *,
    include_cot: bool = True,
) -> tuple[list[int], list[int]]:
    """Return ``(input_ids, labels)`` for ``tokenized`` with chunks replaced by their codes.

    ``k`` is either the number of leading chunks replaced, or the ascending indices of the replaced
    chunks (whether a last, shorter chunk may be one of them is the strategy's choice:
    :meth:`~lm_latent.mixing.strategies.MixingStrategy.replaceable_chunks`). ``codes`` holds one code
    per CoT chunk (left to right, as stage 1 writes them); only the codes of replaced chunks are read,
    so it may be None when nothing is replaced.
    """
    prompt, answer = list(tokenized.prompt_ids), list(tokenized.answer_ids)
    labels_prompt = [IGNORE_INDEX] * len(prompt)
    if not include_cot:
        return prompt + answer, labels_prompt + answer

    chunks = tokenized.chunks(chunk_size)
    replaced = _as_chunks(k, len(chunks), tokenized.id)
    body: list[int] = []
    if replaced:
        if latent_vocab is None:
            raise ValueError(f"example '{tokenized.id}': latent chunks requested but no latent vocabulary given")
        if codes is None or len(codes) <= replaced[-1]:
            have = 0 if codes is None else len(codes)
            raise ValueError(
                f"example '{tokenized.id}': needs codes for chunks up to {replaced[-1]}, the code table has {have}"
            )
    latent = set(replaced)
    for i, chunk in enumerate(chunks):
        if i in latent:
            if i - 1 not in latent:
                body.append(latent_vocab.bo_id)
            body.append(latent_vocab.code_to_id(int(codes[i])))
            if i + 1 not in latent:
                body.append(latent_vocab.eo_id)
        else:
            body.extend(chunk)
    rest = body + answer
    return prompt + rest, labels_prompt + rest


def sequence_length(tokenized: TokenizedExample, chunks_replaced: Sequence[int], chunk_size: int, include_cot: bool = True) -> int:
    """Length of :func:`build_sequence`'s output without building it (for length bucketing)."""
    base = len(tokenized.prompt_ids) + len(tokenized.answer_ids)
    if not include_cot:
        return base
    cot = len(tokenized.cot_ids)
    runs = sum(1 for j, c in enumerate(chunks_replaced) if j == 0 or chunks_replaced[j - 1] != c - 1)
    # Each latent chunk turns its text tokens (L, or fewer for a last chunk) into one code; each run of
    # latent chunks adds two delimiters.
    replaced_text = sum(min(chunk_size, cot - c * chunk_size) for c in chunks_replaced)
    return base + cot - replaced_text + len(chunks_replaced) + 2 * runs


def longest_sequence_length(tokenized: TokenizedExample, strategy, chunk_size: int) -> int:
    """The longest sequence any draw of ``strategy`` (a :class:`~lm_latent.mixing.strategies.MixingStrategy`)
    can build from ``tokenized``, in any epoch: what decides whether ``max_length`` can cut it."""
    if not strategy.includes_cot:
        return sequence_length(tokenized, (), chunk_size, include_cot=False)
    n = strategy.replaceable_chunks(len(tokenized.cot_ids), chunk_size)
    ks = strategy.possible_ks(n, chunk_size)
    if not strategy.scatters:
        return max(sequence_length(tokenized, range(k), chunk_size) for k in ks)
    # Scattered whole chunks: each saves L - 1 tokens and at most min(k, n - k + 1) runs add two
    # delimiters each; the longest draw has the most runs.
    plain = sequence_length(tokenized, (), chunk_size)
    return max(plain - k * (chunk_size - 1) + 2 * (min(k, n - k + 1) if k else 0) for k in ks)
