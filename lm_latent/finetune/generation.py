"""Batched generation over the extended vocabulary (latent codes, delimiters and text).

The model decides by itself whether to open with ``<boLatent>``, how many codes to emit and when to
switch to text, so decoding is plain autoregressive sampling: batched, LEFT-padded with an attention
mask (decoder-only models continue from the last position), KV-cached, greedy or top-k. Each result
is split into what the evaluation needs: what the model wrote (``written``, latent tokens and
delimiters in place, which is what answers are scored on), the text alone (``text``, latents and
delimiters removed, for reading and the chain checks), the emitted code ids, and the token counts per
kind (the paper reports latent + delimiter + text tokens).

    gens = generate(model, tokenizer, [prompt_text(q) for q in questions], latent_vocab)

``force_latent=m`` takes that decision away for a diagnosis: every continuation opens with exactly m
codes (the model still picks which), as in training with the first m chunks replaced; accuracy
against m then says whether a model falls short for the number of codes it chose or for what it
does with them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch

from lm_latent.mixing.tokens import LatentVocab


@dataclass
class Generation:
    """One generated continuation (the prompt excluded).

    ``token_ids`` stops at, and excludes, the first EOS/pad; ``written`` decodes all of them, latent
    tokens and delimiters as ``<latent_i>``, ``<boLatent>``, ``<eoLatent>`` where the model put them
    (score answers on this: a latent token after the answer marker makes the answer malformed);
    ``text`` decodes the text tokens only; ``codes`` are the emitted latent code ids (0..K-1) in order.
    """

    text: str
    token_ids: list[int]
    codes: list[int]
    num_latent: int
    num_delimiter: int
    num_text: int
    written: str

    @property
    def num_tokens(self) -> int:
        """All generated tokens: latent + delimiter + text (what the paper's length column counts)."""
        return self.num_latent + self.num_delimiter + self.num_text


def split_generated(token_ids: Sequence[int], tokenizer, latent_vocab: LatentVocab | None) -> Generation:
    """Cut generated ids at the first EOS/pad and split them into codes, delimiters and text.

    ``written`` keeps the latent tokens and delimiters in place and drops the tokenizer's other
    special tokens (as ``text`` does), so it is ``text`` with the latent tokens where they were.
    """
    stop = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    ids: list[int] = []
    for t in token_ids:
        t = int(t)
        if t in stop:
            break
        ids.append(t)
    codes: list[int] = []
    text_ids: list[int] = []
    num_delim = 0
    for t in ids:
        code = latent_vocab.id_to_code(t) if latent_vocab is not None else None
        if code is not None:
            codes.append(code)
        elif latent_vocab is not None and latent_vocab.is_delimiter(t):
            num_delim += 1
        else:
            text_ids.append(t)
    text = tokenizer.decode(text_ids, skip_special_tokens=True)
    if latent_vocab is None or len(text_ids) == len(ids):
        written = text
    else:
        # The latent tokens are added *special* tokens: decode them, but no other special token.
        special = set(tokenizer.all_special_ids)
        kept = [t for t in ids if t not in special or latent_vocab.is_latent(t) or latent_vocab.is_delimiter(t)]
        written = tokenizer.decode(kept, skip_special_tokens=False)
    return Generation(text, ids, codes, len(codes), num_delim, len(text_ids), written)


class ForceLatentCount:
    """A logits processor that makes every row open with exactly ``m`` latent codes.

    m > 0: ``<boLatent>``, then m tokens restricted to the codes, then ``<eoLatent>``, then text with
    no latent token or delimiter again (one leading run, as the left-to-right scheme trains). m = 0:
    plain text from the start (the sequence the scheme trains for k = 0). Rows are left-padded to one
    width, so the generated position is the same in every row: ``input_ids.shape[1] - prompt_width``.
    """

    def __init__(self, m: int, latent_vocab: LatentVocab, prompt_width: int) -> None:
        if m < 0:
            raise ValueError(f"force_latent must be >= 0, got {m}")
        self.m, self.vocab, self.prompt_width = m, latent_vocab, prompt_width
        self.codes = latent_vocab.code_ids
        self.latent_ids = torch.cat([self.codes, torch.tensor([latent_vocab.bo_id, latent_vocab.eo_id])])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.prompt_width
        if self.m > 0 and step <= self.m + 1:
            allowed = (torch.tensor([self.vocab.bo_id]) if step == 0
                       else torch.tensor([self.vocab.eo_id]) if step == self.m + 1 else self.codes)
            keep = torch.full_like(scores, float("-inf"))
            keep[:, allowed.to(scores.device)] = 0.0
            return scores + keep
        scores = scores.clone()
        scores[:, self.latent_ids.to(scores.device)] = float("-inf")
        return scores


class LatentRunByMass:
    """A logits processor for greedy decoding: inside a latent run, go on with a code when the codes
    together are more likely than ``<eoLatent>``, else close the run.

    Plain greedy compares single tokens, so after ``<boLatent>`` or a code it closes the run whenever
    ``P(<eoLatent>)`` beats the most likely single code, even when the K codes together are more
    likely (the model's trained choice is the class, the code within it is a second choice). This
    makes the two choices in that order: the class by mass, then the most likely code. Outside a
    latent run nothing changes. ``latent_decision: mass`` in an evaluation set; not the paper's
    decoding (plain greedy, ``token``), so a choice to report as such.
    """

    def __init__(self, latent_vocab: LatentVocab) -> None:
        self.codes = latent_vocab.code_ids
        self.bo_id, self.eo_id = latent_vocab.bo_id, latent_vocab.eo_id

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        last = input_ids[:, -1]
        codes = self.codes.to(scores.device)
        inside = (last == self.bo_id) | torch.isin(last, codes)
        if not inside.any():
            return scores
        probs = scores.float().softmax(-1)
        go_on = probs[:, codes].sum(-1) > probs[:, self.eo_id]
        allowed = torch.zeros_like(scores, dtype=torch.bool)
        allowed[:, codes] = go_on.unsqueeze(1)
        allowed[:, self.eo_id] = ~go_on
        return torch.where(inside.unsqueeze(1) & ~allowed, torch.full_like(scores, float("-inf")), scores)


LATENT_DECISIONS = ("token", "mass")


def _unwrap(model):
    # Accept the LightningModule (MixedTokenLM) as well as the bare Hugging Face model.
    inner = getattr(model, "model", None)
    return inner if inner is not None and hasattr(inner, "generate") else model


def _generation_config(tokenizer, max_new_tokens: int, do_sample: bool, top_k: int | None):
    from transformers import GenerationConfig

    # Every decoding knob is set explicitly: unset ones would be inherited from the model's own
    # generation_config (a pretrained model may ship temperature/top_p defaults), which would make the
    # same call decode differently for different checkpoints.
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        num_beams=1,
        top_k=(top_k or 0) if do_sample else None,
        top_p=1.0 if do_sample else None,
        temperature=1.0 if do_sample else None,
        repetition_penalty=1.0,
        use_cache=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    latent_vocab: LatentVocab | None,
    max_new_tokens: int = 128,
    batch_size: int = 32,
    do_sample: bool = False,
    top_k: int | None = None,
    seed: int = 0,
    synced_gpus: bool = False,
    force_latent: int | None = None,
    latent_decision: str = "token",
) -> list[Generation]:
    """Generate a continuation for every prompt, in the order given.

    ``prompts`` are ``prompt_text(question)`` strings, tokenized exactly as in training (no added
    special tokens). Prompts are sorted by length before batching so batches carry little padding;
    results come back in input order. ``do_sample=False`` is greedy; ``do_sample=True`` samples from the
    full distribution, or from the ``top_k`` most likely tokens when given (the paper uses k=10 for the
    maze task). Sampling is seeded by ``seed`` without disturbing the caller's global RNG state.
    ``synced_gpus`` must be True under FSDP/ZeRO-3 so every rank keeps stepping until all finish.
    ``force_latent=m`` makes every continuation open with exactly m codes (:class:`ForceLatentCount`);
    m = 0 decodes text only (how the pipeline decodes the text-only baselines).
    ``latent_decision="mass"`` decides inside a latent run by the codes' total mass against
    ``<eoLatent>`` (:class:`LatentRunByMass`; greedy only); ``"token"`` is plain greedy.
    """
    if latent_decision not in LATENT_DECISIONS:
        raise ValueError(f"latent_decision must be one of {LATENT_DECISIONS}, got {latent_decision!r}")
    if latent_decision == "mass" and (do_sample or force_latent is not None or latent_vocab is None):
        raise ValueError("latent_decision='mass' is for free greedy decoding of a model with latent tokens")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if force_latent is not None and latent_vocab is None:
        if force_latent > 0:
            raise ValueError("force_latent needs a model with latent tokens (latent_vocab is None)")
        force_latent = None  # m = 0 without latent tokens is plain decoding
    from transformers import LogitsProcessorList

    hf = _unwrap(model)
    if not prompts:
        return []
    device = next(hf.parameters()).device
    gen_config = _generation_config(tokenizer, max_new_tokens, do_sample, top_k)
    encoded = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    if any(len(ids) == 0 for ids in encoded):
        raise ValueError("empty prompt: every prompt must tokenize to at least one token")
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    pad_id = gen_config.pad_token_id
    results: list[Generation | None] = [None] * len(prompts)

    was_training = hf.training
    hf.eval()
    rng_devices = [device] if device.type == "cuda" else []
    rng_ctx = torch.random.fork_rng(devices=rng_devices) if do_sample else contextlib.nullcontext()
    try:
        with rng_ctx:
            if do_sample:
                torch.manual_seed(seed)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = max(len(encoded[i]) for i in idx)
                # Left padding: every row's last real token sits at the same position, where decoding starts.
                input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids = encoded[i]
                    input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                    attention[row, width - len(ids) :] = 1
                forced = [] if force_latent is None else [ForceLatentCount(force_latent, latent_vocab, width)]
                if latent_decision == "mass":
                    forced = [LatentRunByMass(latent_vocab)]
                out = hf.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention.to(device),
                    generation_config=gen_config,
                    synced_gpus=synced_gpus,
                    logits_processor=LogitsProcessorList(forced),
                )
                for row, i in enumerate(idx):
                    results[i] = split_generated(out[row, width:].tolist(), tokenizer, latent_vocab)
    finally:
        hf.train(was_training)
    return results  # type: ignore[return-value]
