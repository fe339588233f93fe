"""The quantizer q: nearest entry of a codebook of K vectors, EMA-updated, one code per chunk.

A small wrapper around ``vector_quantize_pytorch.VectorQuantize`` with a few explicit, typed options
and nothing else passed through, so a config can only set what this project has tested.

``sync_codebook`` must follow the *real* world size. The library's default ("is torch.distributed
initialised?") is evaluated when the module is built and cached; a LightningModule is built before
Lightning creates the process group, so under DDP the EMA statistics would silently stay per-rank.
Passing True in a single process fails inside ``all_reduce``. :func:`real_world_is_distributed` is
the value to pass, evaluated when the process group exists (``LightningModule.configure_model``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib.metadata import version
from typing import NamedTuple

import torch
from torch import Tensor, nn


def vq_library_version() -> str:
    return version("vector-quantize-pytorch")


def real_world_is_distributed() -> bool:
    """True when a process group with more than one process exists right now (not cached)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


@dataclass(frozen=True)
class QuantizerOptions:
    """The quantizer's options (the only ones a config can set).

    ``dead_code_threshold`` is in the library's unit: the EMA of how many vectors per step (summed
    over processes) a code receives. A code under it is replaced by a random encoder output of the
    current batch. Uniform use gives each code ``global_batch / K`` per step, so pick a value well
    below that (e.g. a tenth); 0 disables revival.
    """

    codebook_size: int = 64
    code_dim: int = 64
    ema_decay: float = 0.99
    commitment_weight: float = 0.25
    kmeans_init: bool = True
    dead_code_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if self.code_dim < 1:
            raise ValueError(f"code_dim must be >= 1, got {self.code_dim}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.commitment_weight < 0 or self.dead_code_threshold < 0:
            raise ValueError("commitment_weight and dead_code_threshold must be >= 0")


class QuantizerOutput(NamedTuple):
    quantized: Tensor  # [B, dim], straight-through (rotation trick) in training
    codes: Tensor  # [B] long, code ids in [0, K)
    commit_loss: Tensor  # scalar, already weighted; 0 in eval mode


class Quantizer(nn.Module):
    """Vector quantizer over one vector per chunk: ``[B, dim] -> ([B, dim], codes [B], loss)``.

    The codebook lives in ``code_dim`` (the library projects in and out when it differs from ``dim``)
    and is an EMA buffer, not a parameter: its update happens in the forward pass in training mode.
    """

    def __init__(self, dim: int, options: QuantizerOptions, sync_codebook: bool = False) -> None:
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        if sync_codebook and not real_world_is_distributed():
            raise ValueError(
                "sync_codebook=True needs an initialised process group with more than one process; "
                "pass sync_codebook=real_world_is_distributed()"
            )
        self.dim = dim
        self.options = options
        self.sync_codebook = bool(sync_codebook)
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=options.codebook_size,
            codebook_dim=options.code_dim,
            decay=options.ema_decay,
            commitment_weight=options.commitment_weight,
            kmeans_init=options.kmeans_init,
            threshold_ema_dead_code=options.dead_code_threshold,
            sync_codebook=self.sync_codebook,
        )

    @property
    def codebook_size(self) -> int:
        return self.options.codebook_size

    def forward(self, x: Tensor) -> QuantizerOutput:
        if x.ndim != 2 or x.shape[-1] != self.dim:
            raise ValueError(f"expected [batch, {self.dim}] vectors, got shape {tuple(x.shape)}")
        quantized, codes, loss = self.vq(x)
        return QuantizerOutput(quantized, codes.long(), loss)

    @property
    def initialized(self) -> bool:
        """False until k-means initialisation has run (always True without ``kmeans_init``)."""
        return bool(self.vq._codebook.initted)

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Run the k-means initialisation on ``x [N, dim]`` (e.g. a few thousand encoder outputs) instead
        of on the first training batch alone; also one EMA step on them. Collective under sync."""
        if self.initialized:
            return
        was_training = self.training
        self.train()
        self.vq(x)
        self.train(was_training)

    def lookup(self, codes: Tensor) -> Tensor:
        """Code ids ``[B]`` -> the decoder-side vectors ``[B, dim]`` (what eval-mode forward returns)."""
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"code ids must lie in [0, {self.codebook_size}), got {codes.tolist()}")
        return self.vq.get_output_from_indices(codes.long())

    @property
    def codebook(self) -> Tensor:
        """``[K, code_dim]``, the current codebook."""
        return self.vq.codebook

    @property
    def cluster_size(self) -> Tensor:
        """``[K]``, the EMA of vectors per step assigned to each code (summed over processes if synced)."""
        return self.vq._codebook.cluster_size.reshape(-1)

    def with_sync(self, sync_codebook: bool) -> "Quantizer":
        """The same quantizer (options and state) rebuilt with ``sync_codebook``; self if unchanged."""
        if bool(sync_codebook) == self.sync_codebook:
            return self
        other = Quantizer(self.dim, self.options, sync_codebook=sync_codebook)
        other.load_state_dict(self.state_dict())
        return other.to(next(iter(self.state_dict().values())).device)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, sync_codebook={self.sync_codebook}, {asdict(self.options)}"
