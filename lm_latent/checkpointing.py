"""Checkpoints that survive a kill, and clear errors for checkpoints that cannot be used.

* :class:`AtomicCheckpointIO` writes every checkpoint (``last.ckpt`` included: with ``save_last=True``
  Lightning 2.6 serialises it as a file of its own) to a temporary file in the same folder, fsyncs it and
  renames it over the target, so a kill at any moment leaves either the previous file or the new one,
  never half of one. Lightning's own writer stages through a temporary file in ``/tmp`` and then *copies*
  it when ``/tmp`` is another file system, without fsync.
* :func:`read_checkpoint` / :func:`check_checkpoint` turn "truncated", "not a Lightning checkpoint",
  "weights only" and "written by the other stage" into a :class:`CheckpointError` naming the file,
  before anything of the run is written. Loading is always ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import inspect
import os
import pickle
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

STAGE_KEY = "lm_latent_stage"
_LIGHTNING_KEYS = ("state_dict", "pytorch-lightning_version")
_RESUME_KEYS = ("optimizer_states", "loops")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used for what was asked; the message names the file."""


class TokenizerMismatchError(CheckpointError):
    """The tokenizer given for a run is not the one its checkpoint was trained with."""


def _describe_load_error(path: str | Path, e: BaseException) -> str:
    text = str(e).strip()
    # torch's first sentence says what is wrong; the rest of its message is general advice.
    first_line = text.splitlines()[0].split(". ")[0].rstrip(".") if text else type(e).__name__
    if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):
        return (
            f"checkpoint {path} holds objects other than tensors and plain values, which are not loaded "
            f"(weights_only=True): {first_line}"
        )
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    return (
        f"checkpoint {path} ({size} bytes) cannot be read: it is truncated or not a PyTorch checkpoint "
        f"({first_line})"
    )


def read_checkpoint(path: str | Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with unreadable files turned into a :class:`CheckpointError`.

    ``mmap=True`` maps tensors instead of reading them: cheap for inspecting a large checkpoint."""
    if not Path(path).is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
        except RuntimeError as e:
            if not (mmap and "mmap" in str(e)):
                raise
            ckpt = torch.load(path, map_location=map_location, weights_only=True)  # a legacy (non-zip) file
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(_describe_load_error(path, e)) from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a Lightning checkpoint")
    return ckpt


def check_checkpoint(
    ckpt: dict[str, Any], path: str | Path, stage: str, model_class: type, resume: bool = False
) -> None:
    """Raise a :class:`CheckpointError` unless ``ckpt`` is a Lightning checkpoint of ``model_class``
    (written by stage ``stage``); with ``resume`` it must also hold the optimizer and loop state."""
    missing = [k for k in _LIGHTNING_KEYS if k not in ckpt]
    if missing:
        keys = ", ".join(sorted(map(str, ckpt))[:8]) or "nothing"
        raise CheckpointError(
            f"{path} is not a Lightning checkpoint (no {' / '.join(missing)}; it holds {keys}); "
            f"give a checkpoint written by `lm-latent {stage} fit`"
        )
    written_by = ckpt.get(STAGE_KEY)
    if written_by is not None and written_by != stage:
        raise CheckpointError(
            f"{path} is a {written_by} checkpoint (written by `lm-latent {written_by} fit`), "
            f"not a {stage} one"
        )
    # Checkpoints written before the stage tag existed: their hyperparameters are the module's arguments.
    params = inspect.signature(model_class.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        hparams = {k for k in ckpt.get("hyper_parameters", {}) if not k.startswith("_")}
        foreign = sorted(hparams - set(params))
        if foreign:
            raise CheckpointError(
                f"{path} was not written by {model_class.__name__} (`lm-latent {stage} fit`): its "
                f"hyperparameters {', '.join(foreign[:6])} are not arguments of {model_class.__name__}; "
                "is it a checkpoint of the other stage?"
            )
    if resume:
        absent = [k for k in _RESUME_KEYS if k not in ckpt]
        if absent:
            raise CheckpointError(
                f"{path} holds only model weights (no {' / '.join(absent)}), so training cannot resume from it; "
                "validate/test can use it"
            )


def check_state_shapes(ckpt: dict[str, Any], path: str | Path, module: torch.nn.Module) -> None:
    """A :class:`CheckpointError` listing the weights whose shapes differ between ``ckpt`` and ``module``
    (a changed model size or vocabulary), instead of ``load_state_dict``'s traceback."""
    own = module.state_dict()
    wrong = [
        f"{k} {tuple(v.shape)} in the checkpoint, {tuple(own[k].shape)} here"
        for k, v in ckpt["state_dict"].items()
        if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
    ]
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise CheckpointError(
            f"{path} does not fit the configured model: {'; '.join(wrong[:3])}{more}; "
            "resume with the model settings the checkpoint was trained with"
        )


class StageTag(Callback):
    """Records which stage wrote a checkpoint, so the other stage's command can refuse it by name."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[STAGE_KEY] = self.stage


def _fsync_dir(directory: Path) -> None:
    # The rename is only durable once the directory entry is on disk (POSIX; not possible on Windows).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Temporary files are named ``.<name>.<pid>.<random>.tmp``: no checkpoint pattern matches them
    (``last*.ckpt``, ``*.ckpt``), and one left behind by a killed writer is removed by the next write
    of the same file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows, also over a symlink
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with crash-safe writes and ``weights_only=True`` loads.

    Remote paths (``s3://...``) keep Lightning's own transactional writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_write(path, lambda f: torch.save(checkpoint, f))

    def load_checkpoint(self, path, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None):
        if "://" in str(path):
            return super().load_checkpoint(path, map_location, weights_only)
        if weights_only is False:  # asked for explicitly (`--weights_only false`): the user trusts the file
            return super().load_checkpoint(path, map_location, weights_only)
        return read_checkpoint(path, map_location=map_location)
