"""Trainer plumbing shared by both stages: global batch size, accumulation, world size, data order.

The *global* batch size is the configured quantity (Coconut's results changed with GPU count because
theirs was per-GPU): per-device micro batch and gradient accumulation are derived from it and the
number of processes, so a run means the same thing on 1 CPU or 64 GPUs.

The training order is a function of (seed, epoch) alone, never of torch's global random stream (which
checkpoints do not carry), and a fit resumed mid-epoch skips exactly the batches the epoch already
did: a run killed and resumed from its last checkpoint sees the batches of an uninterrupted one.
:class:`ResumableDataLoader` and its :class:`ResumableBatchSampler` do this for both stages.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler


@dataclass(frozen=True)
class BatchPlan:
    global_batch_size: int
    micro_batch_size: int  # per device, per forward pass
    accumulate_grad_batches: int
    world_size: int


def plan_batches(global_batch_size: int, world_size: int, micro_batch_size: int | None = None) -> BatchPlan:
    """Split ``global_batch_size`` over ``world_size`` processes and, if given, micro batches.

    Raises a clear error when the numbers do not divide, instead of silently changing the batch.
    """
    if global_batch_size < 1 or world_size < 1:
        raise ValueError(f"global_batch_size ({global_batch_size}) and world size ({world_size}) must be >= 1")
    if global_batch_size % world_size:
        raise ValueError(
            f"global_batch_size={global_batch_size} is not divisible by the world size {world_size} "
            "(devices x nodes); choose a multiple so every process gets the same share"
        )
    per_device = global_batch_size // world_size
    micro = micro_batch_size or per_device
    if per_device % micro:
        raise ValueError(
            f"per-device batch {per_device} (global_batch_size={global_batch_size} / world size {world_size}) "
            f"is not divisible by micro_batch_size={micro}"
        )
    return BatchPlan(global_batch_size, micro, per_device // micro, world_size)


def apply_batch_plan(trainer, global_batch_size: int, micro_batch_size: int | None = None) -> BatchPlan:
    """Compute the plan for ``trainer``'s world size and set its gradient accumulation.

    Called from a DataModule's ``setup``; the trainer's own ``accumulate_grad_batches`` must be left at
    1 in configs, because accumulation is derived here.
    """
    world = trainer.world_size if trainer is not None else 1
    plan = plan_batches(global_batch_size, world, micro_batch_size)
    if trainer is not None:
        configured = getattr(trainer, "accumulate_grad_batches", 1)
        if configured not in (1, plan.accumulate_grad_batches):
            raise ValueError(
                f"trainer.accumulate_grad_batches={configured} conflicts with the derived accumulation "
                f"{plan.accumulate_grad_batches}; set global_batch_size/micro_batch_size instead"
            )
        trainer.accumulate_grad_batches = plan.accumulate_grad_batches
    return plan


class EpochSampler(Sampler[int]):
    """Single-process index sampler with ``set_epoch``: a seeded shuffle per epoch, or in order."""

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0) -> None:
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        order = list(range(self.num_samples))
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        return self.num_samples


def index_sampler(dataset: Dataset, shuffle: bool, seed: int, world_size: int = 1, rank: int = 0) -> Sampler[int]:
    """The indices of process ``rank`` of ``world_size``, in an order seeded by (seed, epoch) when ``shuffle``.

    Several processes: a ``DistributedSampler`` built here (not injected by Lightning) so that a batch
    sampler sits on top of it; each rank gets its own shard, all of the same length.
    """
    if world_size > 1:
        return DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    return EpochSampler(len(dataset), shuffle=shuffle, seed=seed)


class ResumableBatchSampler(BatchSampler):
    """``sampler``'s indices cut into batches, for the sampler's current epoch; can skip an epoch's first
    batches (mid-epoch resume).

    ``sampler`` is an :class:`EpochSampler`, or a ``DistributedSampler`` built with the trainer's world
    size and rank (each rank batches its own shard; all ranks get the same number of batches).
    Subclasses change how an epoch is cut into batches by overriding :meth:`batches`.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, drop_last: bool = False) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self._epoch = 0
        self._resume: tuple[int, int] | None = None

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", self._epoch))

    def set_epoch(self, epoch: int) -> None:
        """Forwards to the index sampler when it has ``set_epoch`` (Lightning calls it on both)."""
        self._epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def resume_at(self, epoch: int, batches_done: int) -> None:
        """Skip the first ``batches_done`` batches the next time ``epoch`` is iterated (mid-epoch resume).

        Bound to the epoch so that, if that epoch's iterator is never used, a later epoch is not cut.
        """
        self._resume = (epoch, batches_done)

    def batches(self) -> list[list[int]]:
        """This epoch's batches as lists of dataset indices."""
        return list(super().__iter__())

    def __iter__(self) -> Iterator[list[int]]:
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip, self._resume = self._resume[1], None
        yield from self.batches()[skip:]


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableBatchSampler` that resumes mid-epoch.

    ``train_dataloader`` hands it to :meth:`follow_fit_loop`, which restores the position from the
    trainer's own loop progress (batches completed in the epoch; exact although the loop prefetches a
    batch ahead). ``state_dict`` only records what the sampler will do; its presence tells Lightning
    this loader is resumable.

    ``sampler`` is the batch sampler's index sampler (the DataLoader would report a SequentialSampler it
    never uses). Lightning looks there for a ``DistributedSampler``: finding the one the DataModule
    built, it leaves the loader as it is, where it would otherwise rebuild the batch sampler on a
    distributed sampler of its own (another seed, and the epoch and resume position set here lost).
    """

    batch_sampler: ResumableBatchSampler

    @property
    def sampler(self) -> Sampler[int]:
        return self.batch_sampler.sampler

    @sampler.setter
    def sampler(self, default: Sampler[int]) -> None:
        pass  # DataLoader.__init__ stores its unused default here

    def follow_fit_loop(self, trainer) -> "ResumableDataLoader":
        """Set the fit's (possibly resumed) epoch now and, if it resumes mid-epoch, the batches done."""
        if trainer is None:
            return self
        loop = trainer.fit_loop
        # Lightning creates the first iterator before it calls set_epoch, and data-loader workers
        # start drawing batches right away: give the sampler the (possibly resumed) epoch now.
        epoch = loop.epoch_progress.current.processed
        self.batch_sampler.set_epoch(epoch)
        if loop.restarting:
            # Lightning cannot fast-forward a plain loader: skip the micro batches this epoch
            # already processed before the checkpoint (its own counter, exact despite prefetching).
            done = loop.epoch_loop.batch_progress.current.processed
            if 0 < done < len(self.batch_sampler):
                self.batch_sampler.resume_at(epoch, done)
        return self

    def state_dict(self) -> dict:
        return {"epoch": self.batch_sampler.epoch}

    def load_state_dict(self, state: dict) -> None:
        pass
