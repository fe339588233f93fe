"""Trainer plumbing shared by both stages: global batch size, accumulation, world size.

The *global* batch size is the configured quantity (Coconut's results changed with GPU count because
theirs was per-GPU): per-device micro batch and gradient accumulation are derived from it and the
number of processes, so a run means the same thing on 1 CPU or 64 GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass


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
