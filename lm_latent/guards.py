"""Stop a run whose training loss became NaN or infinite, before it can overwrite a good checkpoint.

A non-finite loss poisons the weights at the next optimizer step; every later checkpoint would then be
useless, and ``last.ckpt`` (what a resume reads) would be the first casualty. :class:`NonFiniteLossGuard`
raises :class:`NonFiniteLossError` naming the stage, global step, epoch and batch, and always checks
before a checkpoint is written, so the checkpoints of the healthy steps before it stay as they were.

Reading a loss value on the host waits for the device. On a single CPU process that wait costs nothing
and every micro-batch is checked at once. On GPUs or with several processes the flags stay on the device
and are read every ``check_every_n_steps`` optimizer steps (default: the trainer's
``log_every_n_steps``, when logging reads the loss anyway), before every checkpoint, at validation,
epoch and training end; the decision is taken over all processes, so every rank stops together.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the message names stage, step, epoch and batch."""


class NonFiniteLossGuard(Callback):
    """Raises :class:`NonFiniteLossError` when a training step's loss is not finite.

    Args:
        stage: the name the message gives the run ("codebook", "mixed").
        check_every_n_steps: on GPUs / several processes, how often the device-side flags are read
            (optimizer steps); default: ``trainer.log_every_n_steps``.
    """

    def __init__(self, stage: str, check_every_n_steps: int | None = None) -> None:
        self.stage = stage
        self.check_every_n_steps = check_every_n_steps
        self._pending: list[tuple[torch.Tensor, torch.Tensor, int, int, int]] = []
        self._step_at_start = 0

    # -- recording (no device sync) ---------------------------------------------------------------
    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        self._step_at_start = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return  # a skipped step (training_step returned None)
        loss = loss.detach()
        bad = ~torch.isfinite(loss).all()
        self._pending.append((bad, loss.float().reshape(-1)[0], self._step_at_start, trainer.current_epoch, batch_idx))
        if self._immediate(trainer, loss):
            self.check(trainer)
            return
        stepped = trainer.global_step != self._step_at_start
        every = self.check_every_n_steps or max(1, trainer.log_every_n_steps)
        if stepped and trainer.global_step % every == 0:
            self.check(trainer)

    @staticmethod
    def _immediate(trainer, loss: torch.Tensor) -> bool:
        return loss.device.type == "cpu" and trainer.world_size == 1

    # -- checking (all processes call these at the same points) -----------------------------------
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Runs while the checkpoint is assembled, before anything is written: raising keeps the old file.
        if trainer.state.fn == TrainerFn.FITTING:
            self.check(trainer)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            self.check(trainer)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self.check(trainer)

    def check(self, trainer) -> None:
        """Read the recorded flags (one device sync) and raise on the first non-finite loss of any rank."""
        pending, self._pending = self._pending, []
        # row: [bad, step, epoch, batch, loss]; a clean rank sends bad = 0.
        row = torch.zeros(5, dtype=torch.float64)
        if pending:
            flags = torch.stack([p[0] for p in pending]).cpu()
            if bool(flags.any()):
                i = int(flags.nonzero()[0])
                _, loss, step, epoch, batch_idx = pending[i]
                row = torch.tensor([1.0, step, epoch, batch_idx, float(loss)], dtype=torch.float64)
        if trainer.world_size > 1:
            rows = trainer.strategy.all_gather(row.to(trainer.strategy.root_device)).reshape(-1, 5).cpu()
        else:
            rows = row.reshape(1, 5)
        bad_ranks = (rows[:, 0] > 0).nonzero().flatten()
        if len(bad_ranks) == 0:
            return
        i = int(bad_ranks[rows[bad_ranks, 1].argmin()])
        first, rank = rows[i], (i if trainer.world_size > 1 else None)
        raise NonFiniteLossError(
            non_finite_message(self.stage, float(first[4]), int(first[1]), int(first[2]), int(first[3]), rank)
        )


def non_finite_message(stage: str, loss: float, step: int, epoch: int, batch_idx: int, rank: int | None = None) -> str:
    value = "nan" if math.isnan(loss) else ("inf" if loss > 0 else "-inf")
    where = f" on rank {rank}" if rank is not None else ""
    return (
        f"{stage}: the training loss is {value} at global step {step} (epoch {epoch}, batch {batch_idx}){where}; "
        "the run stopped before writing another checkpoint, so the checkpoints of the earlier steps are kept. "
        "Try a lower learning rate or gradient clipping (trainer.gradient_clip_val), or check the data, "
        "then resume with --ckpt_path last"
    )
