"""The codebook autoencoder's networks, plain ``nn.Module``s (no Lightning).

    chunk tokens --f_enc--> vector --q--> code id / quantized vector z_q
    prompt tokens --g--> one vector g(P)
    [g(P) + chunk-position, z_q] --f_dec--> the chunk's L tokens (teacher forced; greedy at inference)

A chunk shorter than L (the last one of a CoT) is right-padded; the decoder learns to emit EOS right
after its last token (that position is a target, the padding after it is not), so greedy decoding
knows where a partial chunk ends. CoT text never contains EOS, so the marker is unambiguous.

``context="previous_text"`` (an ablation) adds a vector summarising the CoT tokens before the chunk,
seen by both encoder and decoder; see :class:`ChunkAutoencoder` for why the default is ``"chunk"``.
``encoder_reads_prompt=True`` (a lever, off by default as in the paper) lets f_enc cross-attend to the
prompt's tokens too, so a code can stand for "the question's rule that applies here" rather than for
the chunk's words alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from lm_latent.codebook.quantizer import Quantizer, QuantizerOptions

Context = Literal["chunk", "previous_text"]
Pooling = Literal["mean", "max"]
PromptConditioning = Literal["vector", "tokens"]


@dataclass(frozen=True)
class NetworkSizes:
    vocab_size: int
    chunk_size: int = 16
    d_model: int = 128
    n_heads: int = 4
    encoder_layers: int = 2
    prompt_layers: int = 2
    decoder_layers: int = 2
    dropout: float = 0.0
    pooling: Pooling = "mean"
    context: Context = "chunk"
    prompt_conditioning: PromptConditioning = "vector"
    max_prompt_tokens: int = 512
    max_context_tokens: int = 256
    max_chunks: int = 64
    encoder_reads_prompt: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.pooling not in ("mean", "max"):
            raise ValueError(f"pooling must be 'mean' or 'max', got {self.pooling!r}")
        if self.context not in ("chunk", "previous_text"):
            raise ValueError(f"context must be 'chunk' or 'previous_text', got {self.context!r}")
        if self.prompt_conditioning not in ("vector", "tokens"):
            raise ValueError(f"prompt_conditioning must be 'vector' or 'tokens', got {self.prompt_conditioning!r}")
        for name in ("vocab_size", "chunk_size", "max_prompt_tokens", "max_context_tokens", "max_chunks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def _stack(d: int, heads: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d, heads, dim_feedforward=4 * d, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)


def _cross_stack(d: int, heads: int, layers: int, dropout: float) -> nn.TransformerDecoder:
    """Like :func:`_stack`, with every layer also cross-attending to the prompt's token states."""
    layer = nn.TransformerDecoderLayer(
        d, heads, dim_feedforward=4 * d, dropout=dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d))


class Prompt(NamedTuple):
    """The prompt as the decoder sees it: g(P), one vector, and with ``prompt_conditioning="tokens"``
    also the encoder's per-token states (``states [B, 1+T, D]``, ``keep [B, 1+T]`` True = real)."""

    vec: Tensor
    states: Tensor | None = None
    keep: Tensor | None = None

    def select(self, rows: Tensor) -> "Prompt":
        """The prompt of each chunk, from one row per example."""
        pick = lambda t: None if t is None else t[rows]  # noqa: E731
        return Prompt(self.vec[rows], pick(self.states), pick(self.keep))


def _causal_mask(n: int, device: torch.device) -> Tensor:
    # True = may not attend (a later position).
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


def _causal(body: nn.Module, x: Tensor, prompt: Prompt | None, option: str, cross: bool) -> Tensor:
    """Run a :func:`_stack` (or, with ``cross``, a :func:`_cross_stack` that also attends to the
    prompt's token states) causally over ``x``."""
    causal = _causal_mask(x.shape[1], x.device)
    if not cross:
        return body(x, mask=causal)
    if prompt is None or prompt.states is None:
        raise ValueError(f"{option} needs the prompt's token states")
    return body(x, prompt.states, tgt_mask=causal, memory_key_padding_mask=~prompt.keep)


def _pool(h: Tensor, mask: Tensor, how: Pooling) -> Tensor:
    """Pool ``h [B, T, D]`` over positions where ``mask [B, T]`` is True (each row has at least one)."""
    m = mask.unsqueeze(-1)
    if how == "max":
        return h.masked_fill(~m, float("-inf")).amax(dim=1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


class ChunkEncoder(nn.Module):
    """f_enc: a causal transformer over the chunk's tokens, pooled (mean or max) to one vector.

    Padding sits at the right, so with causal attention real tokens never see it; it is only
    excluded from the pooling. An optional context vector is prepended as position 0. With
    ``encoder_reads_prompt`` every layer also cross-attends to the prompt's token states.
    """

    def __init__(self, s: NetworkSizes) -> None:
        super().__init__()
        self.pooling = s.pooling
        self.embed = nn.Embedding(s.vocab_size, s.d_model)
        self.pos = nn.Embedding(s.chunk_size + 1, s.d_model)
        self.reads_prompt = s.encoder_reads_prompt
        stack = _cross_stack if self.reads_prompt else _stack
        self.body = stack(s.d_model, s.n_heads, s.encoder_layers, s.dropout)

    def forward(self, chunk_ids: Tensor, chunk_mask: Tensor, context: Tensor | None = None, prompt: Prompt | None = None) -> Tensor:
        x = self.embed(chunk_ids)
        mask = chunk_mask
        if context is not None:
            x = torch.cat([context.unsqueeze(1), x], dim=1)
            mask = torch.cat([torch.zeros_like(chunk_mask[:, :1]), chunk_mask], dim=1)
        x = x + self.pos.weight[: x.shape[1]]
        h = _causal(self.body, x, prompt, "encoder_reads_prompt", self.reads_prompt)
        return _pool(h, mask, self.pooling)


class SequenceSummary(nn.Module):
    """g: a bidirectional transformer over a token sequence, pooled to ONE vector.

    A learned start vector is always present, so an empty sequence (no earlier CoT text before the
    first chunk) is well defined. Used for the prompt g(P) and, in the ablation, the earlier CoT text.
    """

    def __init__(self, s: NetworkSizes, layers: int, max_tokens: int) -> None:
        super().__init__()
        self.pooling = s.pooling
        self.max_tokens = max_tokens
        self.embed = nn.Embedding(s.vocab_size, s.d_model)
        self.start = nn.Parameter(torch.zeros(1, 1, s.d_model))
        self.pos = nn.Embedding(max_tokens + 1, s.d_model)
        self.body = _stack(s.d_model, s.n_heads, layers, s.dropout)

    def states(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Per-position states ``[B, 1+T, D]`` (the start vector first) and which are real."""
        if ids.shape[1] > self.max_tokens:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds max {self.max_tokens}; truncate first")
        x = torch.cat([self.start.expand(ids.shape[0], -1, -1), self.embed(ids)], dim=1)
        x = x + self.pos.weight[: x.shape[1]]
        keep = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
        return self.body(x, src_key_padding_mask=~keep), keep

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        h, keep = self.states(ids, mask)
        return _pool(h, keep, self.pooling)


class ChunkDecoder(nn.Module):
    """f_dec: a causal transformer teacher-forced on ``[prefix vectors..., tok_1 ... tok_{L-1}]``.

    The prefix is ``[g(P) + chunk-position, (context), z_q]``; the output at the last prefix position
    predicts tok_1, and so on: L predictions. Its LM head is tied to its input embedding.
    With ``prompt_conditioning="tokens"`` every layer also cross-attends to the prompt's token states,
    so names can be copied from the question instead of squeezed through one vector.
    """

    def __init__(self, s: NetworkSizes, num_prefix: int) -> None:
        super().__init__()
        self.chunk_size = s.chunk_size
        self.num_prefix = num_prefix
        self.embed = nn.Embedding(s.vocab_size, s.d_model)
        self.pos = nn.Embedding(num_prefix + s.chunk_size, s.d_model)
        self.cross = s.prompt_conditioning == "tokens"
        stack = _cross_stack if self.cross else _stack
        self.body = stack(s.d_model, s.n_heads, s.decoder_layers, s.dropout)
        self.head = nn.Linear(s.d_model, s.vocab_size, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, prefix: Tensor, input_ids: Tensor, prompt: Prompt | None = None) -> Tensor:
        """``prefix [B, P, D]``, ``input_ids [B, T]`` (T <= L-1) -> logits ``[B, T+1, V]``."""
        x = torch.cat([prefix, self.embed(input_ids)], dim=1)
        x = x + self.pos.weight[: x.shape[1]]
        h = _causal(self.body, x, prompt, "prompt_conditioning='tokens'", self.cross)
        return self.head(h[:, self.num_prefix - 1 :])


class AutoencoderOutput(NamedTuple):
    logits: Tensor  # [B, L, V]
    codes: Tensor  # [B]
    commit_loss: Tensor  # scalar


class ChunkAutoencoder(nn.Module):
    """The whole stage-1 model: chunk encoder, quantizer, prompt encoder g(P) and decoder.

    What the encoder/decoder see (``context``), an ablation the paper leaves open:

    - ``"chunk"`` (default): the encoder sees only the chunk's tokens; the decoder sees g(P), the
      chunk's position and z_q. This is the paper's description (one code per chunk, decoded with
      the prompt embedding), and it keeps a code's meaning independent of what came before it, so
      stage 2 can place codes at any position and decoding can run all chunks in parallel.
    - ``"previous_text"``: both also see a summary vector of the CoT tokens before the chunk (at
      decode time, the text decoded so far), which can make codes more specific but ties each code to
      its left context and makes decoding sequential over chunks.
    """

    def __init__(self, sizes: NetworkSizes, quantizer: QuantizerOptions, sync_codebook: bool = False) -> None:
        super().__init__()
        self.sizes = sizes
        s = sizes
        self.chunk_encoder = ChunkEncoder(s)
        self.prompt_encoder = SequenceSummary(s, s.prompt_layers, s.max_prompt_tokens)
        self.context_encoder = (
            SequenceSummary(s, s.prompt_layers, s.max_context_tokens) if s.context == "previous_text" else None
        )
        self.chunk_position = nn.Embedding(s.max_chunks, s.d_model)
        self.quantizer = Quantizer(s.d_model, quantizer, sync_codebook=sync_codebook)
        self.decoder = ChunkDecoder(s, num_prefix=3 if self.context_encoder is not None else 2)

    @property
    def uses_context(self) -> bool:
        return self.context_encoder is not None

    def _context(self, context_ids: Tensor | None, context_mask: Tensor | None) -> Tensor | None:
        if self.context_encoder is None:
            return None
        if context_ids is None or context_mask is None:
            raise ValueError("context='previous_text' needs context_ids and context_mask (the CoT before the chunk)")
        return self.context_encoder(context_ids, context_mask)

    def chunk_prompts(self, prompt_ids: Tensor, prompt_mask: Tensor, chunk_example: Tensor | None) -> Prompt:
        """The encoded prompt of every chunk: one row per chunk (``chunk_example`` maps chunks to rows)."""
        prompt = self.encode_prompt(prompt_ids, prompt_mask)
        return prompt if chunk_example is None else prompt.select(chunk_example)

    @property
    def reads_prompt(self) -> bool:
        """Whether encoding a chunk needs its prompt (``encoder_reads_prompt``)."""
        return self.sizes.encoder_reads_prompt

    def encode(
        self, chunk_ids: Tensor, chunk_mask: Tensor, context_ids: Tensor | None = None, context_mask: Tensor | None = None,
        prompt: Prompt | None = None,
    ) -> Tensor:
        """Chunks -> pre-quantization vectors ``[B, D]``; ``prompt`` (one row per chunk, from
        :meth:`encode_prompt`) is needed, and only read, when the encoder reads the prompt."""
        return self.chunk_encoder(chunk_ids, chunk_mask, self._context(context_ids, context_mask), prompt)

    def encode_prompt(self, prompt_ids: Tensor, prompt_mask: Tensor) -> Prompt:
        """g(P), plus the per-token states when the decoder (or the encoder) attends to the prompt."""
        if self.sizes.prompt_conditioning == "tokens" or self.sizes.encoder_reads_prompt:
            states, keep = self.prompt_encoder.states(prompt_ids, prompt_mask)
            return Prompt(_pool(states, keep, self.sizes.pooling), states, keep)
        return Prompt(self.prompt_encoder(prompt_ids, prompt_mask))

    def prefix(
        self,
        prompt_vec: Tensor,
        z: Tensor,
        chunk_pos: Tensor,
        context_vec: Tensor | None = None,
    ) -> Tensor:
        pos = self.chunk_position(chunk_pos.clamp(max=self.sizes.max_chunks - 1))
        parts = [prompt_vec + pos] + ([context_vec] if context_vec is not None else []) + [z]
        return torch.stack(parts, dim=1)

    def forward(
        self,
        prompt_ids: Tensor,
        prompt_mask: Tensor,
        chunk_ids: Tensor,
        chunk_mask: Tensor,
        chunk_pos: Tensor,
        chunk_example: Tensor | None = None,
        context_ids: Tensor | None = None,
        context_mask: Tensor | None = None,
        codes: Tensor | None = None,
    ) -> AutoencoderOutput:
        """Teacher-forced reconstruction logits for ``N`` chunks.

        ``prompt_ids`` holds one row per chunk, or one per example with ``chunk_example [N]`` giving
        each chunk's row (each prompt is then encoded once). With ``codes`` given, the decoder is fed
        those codes instead of the encoder's (e.g. random codes, to measure how much the codes carry).
        """
        ctx = self._context(context_ids, context_mask)
        prompt = None
        if self.reads_prompt:  # else after the encoder, as it always was (the same random draws)
            prompt = self.chunk_prompts(prompt_ids, prompt_mask, chunk_example)
        if codes is None:
            q = self.quantizer(self.chunk_encoder(chunk_ids, chunk_mask, ctx, prompt))
            z, codes, commit = q.quantized, q.codes, q.commit_loss
        else:
            z, commit = self.quantizer.lookup(codes), chunk_ids.new_zeros((), dtype=torch.float)
        if prompt is None:
            prompt = self.chunk_prompts(prompt_ids, prompt_mask, chunk_example)
        prefix = self.prefix(prompt.vec, z, chunk_pos, ctx)
        logits = self.decoder(prefix, chunk_ids[:, :-1], prompt)
        return AutoencoderOutput(logits, codes, commit)

    @torch.no_grad()
    def reconstruct_greedy(
        self,
        prompt_ids: Tensor,
        prompt_mask: Tensor,
        chunk_pos: Tensor,
        codes: Tensor,
        chunk_example: Tensor | None = None,
        context_ids: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """:meth:`greedy_ids` for chunks given as :meth:`forward` takes them (prompt rows per example
        with ``chunk_example``). With ``context="previous_text"`` the context is the *true* earlier
        text, as in training; :func:`~lm_latent.codebook.decode.decode_batch` feeds decoded text instead."""
        prompt = self.chunk_prompts(prompt_ids, prompt_mask, chunk_example)
        return self.greedy_ids(prompt, codes, chunk_pos, self._context(context_ids, context_mask))

    @torch.no_grad()
    def greedy_ids(self, prompt: Prompt, codes: Tensor, chunk_pos: Tensor, context_vec: Tensor | None = None) -> Tensor:
        """Greedy L-step decoding from the code alone (no true prefix): token ids ``[N, L]``.

        Every row runs all L steps; what follows a row's EOS is whatever the decoder emits and is
        for the caller to cut (:meth:`generate`) or ignore (the greedy metrics count no position
        after the target's EOS)."""
        prefix = self.prefix(prompt.vec, self.quantizer.lookup(codes), chunk_pos, context_vec)
        ids = codes.new_zeros((codes.shape[0], 0))
        for _ in range(self.sizes.chunk_size):
            # No KV cache: the sequence is at most L + 3 positions long.
            nxt = self.decoder(prefix, ids, prompt)[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt.unsqueeze(1)], dim=1)
        return ids

    @torch.no_grad()
    def generate(self, prompt: Prompt, codes: Tensor, chunk_pos: Tensor, eos_id: int, context_vec: Tensor | None = None) -> list[list[int]]:
        """Greedy L-step decoding of a batch of chunks; each stops at EOS (a partial last chunk)."""
        ids = self.greedy_ids(prompt, codes, chunk_pos, context_vec)
        out = []
        for row in ids.tolist():
            out.append(row[: row.index(eos_id)] if eos_id in row else row)
        return out
