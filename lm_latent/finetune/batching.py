"""Length-bucketed batching with dynamic padding, and the epoch hand-off to the k sampler.

Mixed sequences vary a lot in length (prompt and CoT lengths, and k changes every epoch), so random
batches waste much of their compute on padding. :class:`LengthBucketBatchSampler` takes the indices of
its (distributed) sampler in order, cuts them into *megabatches* of ``batch_size * megabatch_batches``
samples, sorts each megabatch by a per-sample sort length and cuts it into batches; the batches are
then shuffled (training) so lengths do not trend through the epoch. Sorting never crosses a megabatch,
so the randomness of the sampler's order is kept at that scale.

The DataModule sorts by the length a sample has *before* any chunk is replaced (prompt + CoT +
answer, see ``MixedTokenDataset.bucket_lengths``), not by its mixed length: every latent chunk
shortens a sequence by L - 1 tokens, so sorting by the mixed length would group samples by their
number of latent chunks, while the method mixes m at random within a batch. Padding is then that of
the draws' spread within a batch (measured in BENCHMARKS.md).

It is distributed-aware through its sampler: given a ``DistributedSampler`` (the DataModule builds one
with the trainer's world size and rank; Lightning leaves it in place, see
:class:`~lm_latent.training.ResumableDataLoader`), every rank sorts only its own shard and all ranks get
the same number of batches. Like stage 1's batches, these resume mid-epoch
(:class:`~lm_latent.training.ResumableBatchSampler`).

The epoch travels *with the indices*: the batch sampler reads ``sampler.epoch`` (Lightning calls
``set_epoch`` on it every epoch, for training and evaluation, also after a resume) and yields
``(index, epoch)`` pairs, so the dataset draws k for the right epoch in any data-loader worker, with
persistent workers too, without ``reload_dataloaders_every_n_epochs``.
"""

from __future__ import annotations

import random
from typing import Callable, Iterator, Sequence

import torch
from torch.utils.data import Sampler

from lm_latent.mixing.sequences import IGNORE_INDEX
from lm_latent.training import ResumableBatchSampler


class LengthBucketBatchSampler(ResumableBatchSampler):
    """Batches of similar length from ``sampler``'s indices, as ``(index, epoch)`` pairs.

    ``lengths(epoch)`` returns every sample's sort length in that epoch. ``shuffle`` shuffles the
    order of the batches (seeded by seed, epoch and rank). Batches smaller than ``batch_size`` occur only
    at the end of the sampler's stream (dropped when ``drop_last``).
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        lengths: Callable[[int], Sequence[int]],
        megabatch_batches: int = 64,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        if batch_size < 1 or megabatch_batches < 1:
            raise ValueError("batch_size and megabatch_batches must be >= 1")
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.megabatch_batches = megabatch_batches
        self.shuffle = shuffle
        self.seed = seed

    def batches(self) -> list[list[int]]:
        """This epoch's batches as lists of dataset indices."""
        epoch = self.epoch
        lengths = self.lengths(epoch)
        indices = list(self.sampler)
        size = self.batch_size * self.megabatch_batches
        batches: list[list[int]] = []
        for start in range(0, len(indices), size):
            mega = sorted(indices[start : start + size], key=lambda i: lengths[i], reverse=True)
            batches += [mega[j : j + self.batch_size] for j in range(0, len(mega), self.batch_size)]
        # Only the stream's last batch can be short; keep it last so drop_last can drop exactly it.
        tail = batches.pop() if batches and len(batches[-1]) < self.batch_size else None
        if self.shuffle:
            rank = getattr(self.sampler, "rank", 0)
            random.Random(f"{self.seed}:{epoch}:{rank}").shuffle(batches)
        if tail is not None and not self.drop_last:
            batches.append(tail)
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch = self.epoch
        for batch in super().__iter__():
            yield [(i, epoch) for i in batch]


def pad_share(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of padding tokens when every batch is padded to its longest sequence."""
    total = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / total if total else 0.0


class MixedCollator:
    """Right-pads ``input_ids`` (pad id), ``labels`` (-100) and builds the attention mask.

    Also passes through the per-sample ``k`` (latent chunks) and example ids, which logging and tests use.
    ``pad_to_multiple_of`` rounds the padded length up (tensor-core friendly shapes on GPUs).
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: list[dict]) -> dict:
        width = max(len(it["input_ids"]) for it in items)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        n = len(items)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        for row, it in enumerate(items):
            length = len(it["input_ids"])
            input_ids[row, :length] = torch.tensor(it["input_ids"], dtype=torch.long)
            labels[row, :length] = torch.tensor(it["labels"], dtype=torch.long)
            attention[row, :length] = 1
        return {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": attention,
            "k": torch.tensor([it["k"] for it in items], dtype=torch.long),
            "ids": [it["id"] for it in items],
        }
