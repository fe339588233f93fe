"""Generation accuracy as a torchmetrics ``Metric`` whose states are keyed by example.

Each rank appends one entry per example it generated: the example's key, whether the answer was
right, how many tokens were generated and how many of them were latent codes. The states are lists
reduced by concatenation, so after the (automatic) sync every rank holds every entry, and
:meth:`GenerationAccuracy.compute` keeps one entry per key. Shards padded with duplicates (so that all
ranks run the same number of generate calls) or a distributed sampler's padding are therefore counted
exactly once: the accuracy with N devices equals the single-device one.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


def cat_state(state, device) -> Tensor:
    """A list ("cat") metric state as one flat long tensor, before or after the distributed sync
    (which concatenates the list into one tensor)."""
    if isinstance(state, Tensor):
        return state.reshape(-1).long()
    if not state:
        return torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat([s.reshape(-1) for s in state]).long()


class GenerationAccuracy(Metric):
    """Accuracy and mean generated length over unique examples.

    ``keys`` are int64 example keys (the callbacks use the example's position in the evaluation set).
    They should stay below 2**24: a rank that saw no example contributes an empty float tensor to the
    gather, and the concatenation is then float32, exact only up to 2**24.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("keys", "correct", "tokens", "latent_tokens"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self,
        keys: Sequence[int] | Tensor,
        correct: Sequence[bool] | Tensor,
        tokens: Sequence[int] | Tensor,
        latent_tokens: Sequence[int] | Tensor,
    ) -> None:
        values = [torch.as_tensor(v, dtype=torch.long, device=self.device).reshape(-1)
                  for v in (keys, correct, tokens, latent_tokens)]
        if len({v.numel() for v in values}) != 1:
            raise ValueError(f"keys, correct, tokens and latent_tokens differ in length: {[v.numel() for v in values]}")
        self.keys.append(values[0])
        self.correct.append(values[1])
        self.tokens.append(values[2])
        self.latent_tokens.append(values[3])

    def _unique(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        keys, correct, tokens, latent = (cat_state(s, self.device) for s in (self.keys, self.correct, self.tokens, self.latent_tokens))
        keep = first_per_key(keys)
        return keys[keep], correct[keep], tokens[keep], latent[keep]

    def compute(self) -> dict[str, Tensor]:
        """``accuracy``, ``mean_tokens``, ``mean_latent_tokens`` (NaN when empty) and ``n`` (unique examples)."""
        _, correct, tokens, latent = self._unique()
        n = correct.numel()
        if n == 0:
            nan = torch.tensor(float("nan"), device=self.device)
            return {"accuracy": nan, "mean_tokens": nan, "mean_latent_tokens": nan,
                    "n": torch.tensor(0, device=self.device)}
        return {
            "accuracy": correct.float().mean(),
            "mean_tokens": tokens.float().mean(),
            "mean_latent_tokens": latent.float().mean(),
            "n": torch.tensor(n, device=self.device),
        }


def first_per_key(keys: Tensor) -> Tensor:
    """Positions of the first entry of every distinct key, in key order.

    A stable sort keeps the gather order (rank 0's entries first), so of a padded shard's duplicates
    the first gathered one is kept."""
    if keys.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=keys.device)
    sorted_keys, order = torch.sort(keys, stable=True)
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return order[first]


def shard_indices(n: int, rank: int, world_size: int, pad: bool = False) -> list[int]:
    """Indices of a size-``n`` evaluation set that ``rank`` generates: strided (rank, rank + W, ...).

    Without ``pad`` every example is generated exactly once across ranks. With ``pad`` every rank gets
    ``ceil(n / W)`` indices, the short shards topped up with duplicates (taken from the start of the
    set), so that all ranks run the same number of generate calls, which sharded models (FSDP,
    DeepSpeed ZeRO-3) need because every forward pass is a collective. The duplicates are dropped by
    key in :meth:`GenerationAccuracy.compute`.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} for world size {world_size}")
    idx = list(range(rank, n, world_size))
    if pad and n > 0:
        per_rank = -(-n // world_size)
        fill = 0
        while len(idx) < per_rank:
            idx.append((rank + fill) % n)
            fill += 1
    return idx
