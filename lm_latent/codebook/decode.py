"""Decoding: code ids + prompt -> CoT text (greedy), a view of what a run of latent codes "says".

    model = load_codebook("runs/codebook/checkpoints/last.ckpt")
    decode_codes(model, tokenizer, tokenizer(prompt_text(question))["input_ids"], [3, 17, 5])

With ``context="chunk"`` every chunk is decoded independently, so all chunks of all examples run in
one batch; with ``context="previous_text"`` chunk i is decoded after chunks 0..i-1 (its left context
is the text decoded so far), batched over examples.
"""

from __future__ import annotations

from typing import Sequence

import torch

from lm_latent.codebook.datamodule import pad_batch
from lm_latent.codebook.module import CodebookAutoencoder


@torch.no_grad()
def decode_batch(
    model: CodebookAutoencoder,
    prompts: Sequence[Sequence[int]],
    codes: Sequence[Sequence[int]],
    batch_size: int = 1024,
) -> list[list[int]]:
    """Token ids of the decoded CoT for each (prompt ids, code ids) pair."""
    if len(prompts) != len(codes):
        raise ValueError(f"{len(prompts)} prompts but {len(codes)} code lists")
    net, hp = model.net, model.hparams
    K = int(hp.codebook_size)
    for i, cs in enumerate(codes):
        bad = [c for c in cs if not 0 <= int(c) < K]
        if bad:
            raise ValueError(f"example {i}: codes {bad} lie outside the codebook of size {K}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    prompts = [list(p)[-int(hp.max_prompt_tokens) :] for p in prompts]
    out: list[list[int]] = [[] for _ in codes]
    try:
        if not net.uses_context:
            jobs = [(i, j) for i, cs in enumerate(codes) for j in range(len(cs))]
            for b in range(0, len(jobs), batch_size):
                part = jobs[b : b + batch_size]
                texts = _decode_chunks(model, [prompts[i] for i, _ in part], [codes[i][j] for i, j in part], [j for _, j in part], None, device)
                for (i, _), ids in zip(part, texts):  # jobs are in chunk order within each example
                    out[i].extend(ids)
        else:
            for j in range(max((len(cs) for cs in codes), default=0)):
                rows = [i for i, cs in enumerate(codes) if j < len(cs)]
                for b in range(0, len(rows), batch_size):
                    part = rows[b : b + batch_size]
                    ctx = [out[i][-int(hp.max_context_tokens) :] for i in part]
                    texts = _decode_chunks(model, [prompts[i] for i in part], [codes[i][j] for i in part], [j] * len(part), ctx, device)
                    for i, ids in zip(part, texts):
                        out[i].extend(ids)
    finally:
        model.train(was_training)
    return out


def _decode_chunks(model, prompts, codes, positions, contexts, device) -> list[list[int]]:
    net, pad = model.net, int(model.hparams.pad_id)
    p_ids, p_mask = pad_batch(prompts, pad)
    prompt = net.encode_prompt(p_ids.to(device), p_mask.to(device))
    context_vec = None
    if contexts is not None:
        c_ids, c_mask = pad_batch(contexts, pad)
        context_vec = net.context_encoder(c_ids.to(device), c_mask.to(device))
    return net.generate(
        prompt,
        torch.tensor(codes, dtype=torch.long, device=device),
        torch.tensor(positions, dtype=torch.long, device=device),
        int(model.hparams.eos_id),
        context_vec,
    )


def decode_codes(model: CodebookAutoencoder, tokenizer, prompt_ids: Sequence[int], codes: Sequence[int]) -> str:
    """The CoT text that ``codes`` decode to, given the prompt's token ids (greedy)."""
    return tokenizer.decode(decode_batch(model, [prompt_ids], [list(codes)])[0])
