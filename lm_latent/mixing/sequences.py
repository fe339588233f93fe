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


def _as_chunks(k: int | Sequence[int], n_full: int, example_id: str) -> tuple[int, ...]:
    if isinstance(k, int):
        if not 0 <= k <= n_full:
            raise ValueError(f"example '{example_id}': k={k} outside 0..{n_full} (its number of full chunks)")
        return tuple(range(k))
    chunks = tuple(int(c) for c in k)
    if list(chunks) != sorted(set(chunks)):
        raise ValueError(f"example '{example_id}': replaced chunk indices must be ascending and unique, got {chunks}")
    if chunks and not (0 <= chunks[0] and chunks[-1] < n_full):
        raise ValueError(f"example '{example_id}': chunk indices {chunks} outside 0..{n_full - 1} (full chunks only)")
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
    full chunks. ``codes`` holds one code per CoT chunk (left to right, as stage 1 writes them); only
    the codes of replaced chunks are read, so it may be None when nothing is replaced.
    """
    prompt, answer = list(tokenized.prompt_ids), list(tokenized.answer_ids)
    labels_prompt = [IGNORE_INDEX] * len(prompt)
    if not include_cot:
        return prompt + answer, labels_prompt + answer

    chunks = tokenized.chunks(chunk_size)
    n_full = tokenized.num_full_chunks(chunk_size)
    replaced = _as_chunks(k, n_full, tokenized.id)
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
    k = len(chunks_replaced)
    runs = sum(1 for j, c in enumerate(chunks_replaced) if j == 0 or chunks_replaced[j - 1] != c - 1)
    return _mixed_length(base + len(tokenized.cot_ids), k, runs, chunk_size)


def _mixed_length(plain: int, k: int, runs: int, chunk_size: int) -> int:
    # Each latent chunk turns L text tokens into one code; each run of them adds two delimiters.
    return plain - k * chunk_size + k + 2 * runs


def longest_sequence_length(tokenized: TokenizedExample, strategy, chunk_size: int) -> int:
    """The longest sequence any draw of ``strategy`` (a :class:`~lm_latent.mixing.strategies.MixingStrategy`)
    can build from ``tokenized``, in any epoch: what decides whether ``max_length`` can cut it."""
    plain = len(tokenized.prompt_ids) + len(tokenized.answer_ids)
    if not strategy.includes_cot:
        return plain
    plain += len(tokenized.cot_ids)
    n_full = tokenized.num_full_chunks(chunk_size)
    ks = strategy.possible_ks(n_full, chunk_size)
    if chunk_size >= 3 and ks[0] == 0:
        return plain  # every latent chunk saves L - 1 >= 2 tokens, at most the 2 delimiters it may add
    # Scattered chunks: at most min(k, n_full - k + 1) runs, each with its own delimiters.
    return max(
        _mixed_length(plain, k, (min(k, n_full - k + 1) if strategy.scatters else 1) if k else 0, chunk_size)
        for k in ks
    )
