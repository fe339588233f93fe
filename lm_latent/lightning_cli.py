"""The LightningCLI both training stages share (`lm-latent codebook fit|validate`, `lm-latent mixed fit|...`).

What every stage's command does the same way lives here, so the stage CLIs only link their data and
model arguments:

* checkpoints: a forced ``ModelCheckpoint`` (the ``checkpoint:`` section, not a ``trainer.callbacks``
  entry a config could drop) with ``save_last=True`` in ``<trainer.default_root_dir>/checkpoints``, so
  ``--ckpt_path last`` and the pipeline find ``last.ckpt``; written atomically
  (:class:`~lm_latent.checkpointing.AtomicCheckpointIO`, unless the config brings its own CheckpointIO);
* logs: TensorBoard in ``<trainer.default_root_dir>/tensorboard`` unless ``trainer.logger`` says otherwise;
  the resolved config next to them; ``seed_everything`` defaults to 0;
* fault tolerance: a NaN/inf training loss stops the run (:class:`~lm_latent.guards.NonFiniteLossGuard`);
  a ``--ckpt_path`` that is truncated, not a Lightning checkpoint, written by the other stage, or made
  with another tokenizer or model size is refused before anything is written;
* errors: :func:`run_cli` prints such errors as one ``error: ...`` line (exit status 2 for bad input, 1
  for a failed run); argument errors name the offending key without the full usage text (status 2).
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from lm_latent.checkpointing import (
    AtomicCheckpointIO,
    CheckpointError,
    StageTag,
    check_checkpoint,
    check_state_shapes,
    read_checkpoint,
)
from lm_latent.data.errors import DataError
from lm_latent.guards import NonFiniteLossError, NonFiniteLossGuard

LOG_NAME = "tensorboard"
_LAST = re.compile(r"^last(-\d+)?\.ckpt$")


class LatentArgumentParser(LightningArgumentParser):
    """Argument errors as two lines (the error, naming the key, and where help is) instead of the
    whole usage text, which for these commands runs to a hundred lines."""

    def error(self, message: str, ex: Exception | None = None):
        from jsonargparse._common import debug_mode_active

        if not self.exit_on_error or debug_mode_active():
            return super().error(message, ex)  # parsing internals catch these: keep jsonargparse's path
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        sys.stderr.write(f"error: {message}\n(`{prog} --help` lists the accepted options)\n")
        self.exit(2)


def checkpoint_dir(root: str | None) -> str:
    """Where a run's checkpoints go: ``<trainer.default_root_dir>/checkpoints``."""
    return os.path.join(root or ".", "checkpoints")


def newest_last_checkpoint(dirpath: str | Path) -> Path | None:
    """The ``last*.ckpt`` that Lightning's ``ckpt_path="last"`` picks in ``dirpath`` (the newest)."""
    folder = Path(dirpath)
    found = [p for p in folder.iterdir() if _LAST.match(p.name) and p.is_file()] if folder.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


class LatentCLI(LightningCLI):
    """A stage's LightningCLI. Subclasses set :attr:`stage`, link their arguments in
    ``add_arguments_to_parser`` (calling ``super()``) and may check a checkpoint against their inputs
    in :meth:`check_checkpoint_inputs`.

    Accepts LightningCLI's keyword arguments; ``trainer_defaults["callbacks"]`` are kept, and a
    ``ModelCheckpoint`` among them is dropped (the ``checkpoint:`` section is the one checkpointer)."""

    stage: str = "latent"
    default_root_dir: str | None = None

    def __init__(self, model_class=None, datamodule_class=None, args=None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("parser_class", LatentArgumentParser)
        parser_kwargs = dict(kwargs.pop("parser_kwargs", None) or {})
        parser_kwargs.setdefault("prog", f"lm-latent {self.stage}")
        trainer_defaults = dict(kwargs.pop("trainer_defaults", None) or {})
        given = trainer_defaults.get("callbacks") or []
        given = given if isinstance(given, list) else [given]
        trainer_defaults["callbacks"] = [
            *(cb for cb in given if not isinstance(cb, ModelCheckpoint)),
            NonFiniteLossGuard(self.stage),
            StageTag(self.stage),
        ]
        self._checkpoint: tuple[Path, dict] | None = None
        super().__init__(
            model_class, datamodule_class, args=args, run=run,
            trainer_defaults=trainer_defaults, parser_kwargs=parser_kwargs, **kwargs,
        )

    # -- parsing ------------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        defaults: dict[str, Any] = {"checkpoint.save_last": True}
        if self.default_root_dir:
            defaults["trainer.default_root_dir"] = self.default_root_dir
        parser.set_defaults(defaults)
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath", compute_fn=checkpoint_dir)

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        with warnings.catch_warnings():
            # `lm-latent mixed fit ...` hands its own argv on while sys.argv must stay the whole command
            # line (Lightning's DDP launcher re-executes it for the other ranks): both are intended.
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
            super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        # Lightning reads an explicit --ckpt_path here (for its hyperparameters); check the file first, so
        # a bad one fails with its name before the trainer writes a config, a tokenizer or a log folder.
        subcommand = self.config.get("subcommand")
        if subcommand:
            path = self._checkpoint_file(subcommand)
            if path is not None:
                ckpt = read_checkpoint(path, mmap=True)
                check_checkpoint(ckpt, path, self.stage, self._model_class, resume=subcommand == "fit")
                self._checkpoint = (path, ckpt)
        super()._parse_ckpt_path()

    def _checkpoint_file(self, subcommand: str) -> Path | None:
        value = self.config[subcommand].get("ckpt_path")
        if not value or value in ("best", "hpc") or str(value).startswith("registry") or "://" in str(value):
            return None  # resolved by Lightning itself
        if value == "last":
            # Lightning's rule; none found: it warns and starts from scratch (the set-and-forget resume).
            return newest_last_checkpoint(self.config[subcommand].get("checkpoint.dirpath") or checkpoint_dir(None))
        if Path(value).is_dir():
            return None  # a sharded checkpoint (FSDP, DeepSpeed): the strategy reads and checks it
        if not Path(value).is_file():
            raise CheckpointError(f"--ckpt_path {value}: checkpoint not found")
        return Path(value)

    # -- instantiation ------------------------------------------------------------------------------
    def after_instantiate_classes(self) -> None:
        if self._checkpoint is not None:
            path, ckpt = self._checkpoint
            self._checkpoint = None  # release the mapped file
            self.check_checkpoint_inputs(ckpt, path)
            check_state_shapes(ckpt, path, self.model)

    def check_checkpoint_inputs(self, ckpt: dict[str, Any], path: Path) -> None:
        """Stage hook: raise a :class:`~lm_latent.checkpointing.TokenizerMismatchError` (or another
        CheckpointError) when the configured inputs do not fit the checkpoint given as --ckpt_path."""

    def instantiate_trainer(self, **kwargs: Any):
        cfg = self._get(self.config_init, "trainer", default={})
        if cfg.get("logger") in (None, True):
            kwargs.setdefault("logger", TensorBoardLogger(save_dir=cfg.get("default_root_dir") or ".", name=LOG_NAME))
        trainer = super().instantiate_trainer(**kwargs)
        plugins = cfg.get("plugins") or []
        own_io = any(isinstance(p, CheckpointIO) for p in (plugins if isinstance(plugins, list) else [plugins]))
        # Only Lightning's default writer is replaced: a configured CheckpointIO, or a strategy's own
        # (XLA, DeepSpeed, sharded FSDP), stays as it is.
        if not own_io and type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def run_cli(start: Callable[[], Any]) -> int:
    """Run ``start()`` (which builds and runs a LatentCLI); known failures become one ``error:`` line.

    Exit status: 0 done, 1 the run failed (non-finite loss), 2 bad input (checkpoint, tokenizer, data,
    arguments: jsonargparse exits with 2 itself)."""
    try:
        start()
        leave_process_group()
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def leave_process_group() -> None:
    """Close a finished run's process group before the interpreter exits: gloo's threads still alive at
    exit can abort a process whose run succeeded ("terminate called without an active exception",
    SIGABRT), which a launcher would read as a failed stage. Lightning's teardown leaves the group open."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
