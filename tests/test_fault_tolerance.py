"""Fault tolerance of `lm-latent codebook|mixed fit`: a crash costs nothing, bad inputs fail cleanly.

* a SIGKILLed fit (either stage) resumed with ``--ckpt_path last`` ends exactly like an uninterrupted run;
* checkpoints are written atomically: a kill in the middle of writing ``last.ckpt`` leaves the previous
  one complete and loadable;
* a NaN/inf loss stops the run with one ``error:`` line naming stage, step and epoch, and the
  checkpoints of the steps before it are kept;
* a truncated or foreign checkpoint, a config with an unknown key, and a tokenizer that is not the
  checkpoint's are each one clear error (exit status 2), and nothing in the run folder is overwritten.

The two SIGKILL-and-resume tests take the longest (about 60-80 s each on two busy cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from test_codebook_data import train_tiny_tokenizer, write_prosqa
from test_finetune_data import write_stage2_inputs

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
MIXED_CONFIG = REPO / "experiments" / "mixed" / "prosqa_tiny.yaml"
CODEBOOK_CONFIG = REPO / "experiments" / "codebook" / "prosqa_tiny.yaml"
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


# -- callbacks the tests put into a run through its config (trainer.callbacks) -----------------------
class PoisonWeights(Callback):
    """Sets the first weight of the model to ``value`` when global step ``at_step`` starts (on process
    ``rank`` only, when given)."""

    def __init__(self, at_step: int, value: float = float("nan"), rank: int | None = None) -> None:
        self.at_step, self.value, self.rank = at_step, value, rank

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step and self.rank in (None, trainer.global_rank):
            with torch.no_grad():
                next(p for p in pl_module.parameters() if p.is_floating_point()).fill_(self.value)


class HangAtStep(Callback):
    """When global step ``at_step`` starts: write ``marker`` and wait there (to be killed)."""

    def __init__(self, at_step: int, marker: str) -> None:
        self.at_step, self.marker = at_step, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            Path(self.marker).write_text(str(trainer.global_step))
            while True:
                time.sleep(1)


def callbacks_config(path: Path, *callbacks: tuple[type, dict]) -> str:
    """A config file adding ``callbacks`` (class, init args) under trainer.callbacks."""
    spec = [{"class_path": f"{c.__module__}.{c.__name__}", "init_args": a} for c, a in callbacks]
    path.write_text(json.dumps({"trainer": {"callbacks": spec}}))
    return str(path)


# -- inputs and command lines ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_tokenizer) -> dict[str, str]:
    out = tmp_path_factory.mktemp("fault_inputs")
    files = write_stage2_inputs(out / "stage2", tiny_tokenizer, n_train=48, n_val=16)
    files["prosqa"] = str(write_prosqa(out / "prosqa.json", 40, seed=5))
    files["other_tokenizer"] = str(train_tiny_tokenizer(out / "other_tok", vocab_size=400))  # another vocabulary
    # The same size as the training tokenizer, two ids swapped: equal sizes are not the same tokenizer.
    swapped = out / "swapped_tok"
    shutil.copytree(tiny_tokenizer, swapped)
    spec = json.loads((swapped / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab, key=vocab.get)[300:302]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (swapped / "tokenizer.json").write_text(json.dumps(spec))
    files["swapped_tokenizer"] = str(swapped)
    return files


def mixed_args(files: dict[str, str], root: Path, *extra: str) -> list[str]:
    return [
        "--config", str(MIXED_CONFIG), *QUIET,
        "--trainer.default_root_dir", str(root), "--trainer.max_epochs", "-1", "--trainer.log_every_n_steps", "1",
        "--data.dataset", "canonical", "--data.train_file", files["train_file"], "--data.val_file", files["val_file"],
        "--data.tokenizer_dir", files["tokenizer_dir"], "--data.codes_file", files["train_codes"],
        "--data.val_codes_file", files["val_codes"], "--data.global_batch_size", "8", "--data.micro_batch_size", "4",
        "--model.lm.hidden_size", "32", "--model.lm.intermediate_size", "64",
        "--model.lm.num_attention_heads", "2", "--model.lm.num_key_value_heads", "2",
        "--checkpoint.every_n_train_steps", "2",
        *extra,
    ]


def codebook_args(files: dict[str, str], root: Path, *extra: str) -> list[str]:
    return [
        "--config", str(CODEBOOK_CONFIG), *QUIET,
        "--trainer.default_root_dir", str(root), "--trainer.val_check_interval", "2",
        "--data.train_file", files["prosqa"], "--data.val_file", "null", "--data.val_fraction", "0.2",
        "--data.tokenizer_dir", files["tokenizer_dir"], "--data.global_batch_size", "8",
        "--model.d_model", "32", "--model.n_heads", "2", "--model.codebook_size", "16", "--model.kmeans_init_chunks", "64",
        "--checkpoint.every_n_train_steps", "2",
        *extra,
    ]


def run(stage: str, argv: list[str]) -> int:
    from lm_latent.cli import main

    return main([stage, *argv])


@pytest.fixture(scope="module")
def trained(inputs, tmp_path_factory) -> dict[str, Path]:
    """A 4-step run of each stage (checkpoints at steps 2 and 4)."""
    root = tmp_path_factory.mktemp("trained")
    assert run("mixed", ["fit", *mixed_args(inputs, root / "mixed", "--trainer.max_steps", "4")]) == 0
    assert run("codebook", ["fit", *codebook_args(inputs, root / "codebook", "--trainer.max_steps", "4")]) == 0
    return {"mixed": root / "mixed", "codebook": root / "codebook"}


def copy_run(trained: dict[str, Path], stage: str, dest: Path) -> Path:
    shutil.copytree(trained[stage], dest)
    return dest


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its content hash."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_clean_error(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


# -- the shared CLI ---------------------------------------------------------------------------------------
def test_both_stages_share_checkpointing_logging_and_guards(inputs, trained, tmp_path, monkeypatch):
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from lm_latent.checkpointing import STAGE_KEY, AtomicCheckpointIO
    from lm_latent.codebook.cli import lightning_cli
    from lm_latent.finetune.cli import _cli_class
    from lm_latent.finetune.datamodule import MixedTokenDataModule
    from lm_latent.finetune.module import MixedTokenLM
    from lm_latent.guards import NonFiniteLossGuard

    monkeypatch.chdir(tmp_path)
    mixed_cls, _ = _cli_class()
    clis = {
        "mixed": mixed_cls(MixedTokenLM, MixedTokenDataModule, args=mixed_args(inputs, tmp_path / "m"), run=False),
        "codebook": lightning_cli(codebook_args(inputs, tmp_path / "c"), run=False),
    }
    for stage, cli in clis.items():
        trainer = cli.trainer
        checkpoints = [cb for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)]
        assert len(checkpoints) == 1 and checkpoints[0].save_last is True
        assert checkpoints[0].dirpath == str(tmp_path / stage[0] / "checkpoints")
        assert isinstance(trainer.logger, TensorBoardLogger)
        assert Path(trainer.logger.log_dir).parent == tmp_path / stage[0] / "tensorboard"
        assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
        assert [cb.stage for cb in trainer.callbacks if isinstance(cb, NonFiniteLossGuard)] == [stage]
        # What the fits wrote: last.ckpt is a complete file of its own (not a link), tagged with its stage.
        last = trained[stage] / "checkpoints" / "last.ckpt"
        assert last.is_file() and not last.is_symlink()
        ckpt = torch.load(last, weights_only=True)
        assert ckpt["global_step"] == 4 and ckpt[STAGE_KEY] == stage
        assert list((trained[stage] / "tensorboard").glob("version_0/config.yaml"))

    # A CheckpointIO given in the config is used as given.
    plugin = json.dumps({"class_path": "lightning.fabric.plugins.io.torch_io.TorchCheckpointIO"})
    cli = lightning_cli(codebook_args(inputs, tmp_path / "c2", "--trainer.plugins", plugin), run=False)
    assert type(cli.trainer.strategy.checkpoint_io) is TorchCheckpointIO


# -- atomic checkpoints -----------------------------------------------------------------------------------
def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from lm_latent.checkpointing import AtomicCheckpointIO

    io, target = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.arange(4.0)}, target)
    real_save = torch.save

    def half_then_die(obj, f):
        real_save(obj, f)
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt  # the write stops half-way

    monkeypatch.setattr(torch, "save", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, target)
    monkeypatch.setattr(torch, "save", real_save)
    assert io.load_checkpoint(target)["global_step"] == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]  # no temporary left behind


_KILLED_WRITER = """
import sys, time, torch
from lm_latent.checkpointing import AtomicCheckpointIO
target = sys.argv[1]
io = AtomicCheckpointIO()
io.save_checkpoint({"global_step": 1, "w": torch.arange(4.0)}, target)
real_save = torch.save
def slow_save(obj, f):
    real_save(obj, f)
    f.truncate(f.tell() // 2)  # half of the new checkpoint is on disk ...
    f.flush()
    print("writing", flush=True)
    time.sleep(600)            # ... when the process is killed
torch.save = slow_save
io.save_checkpoint({"global_step": 2, "w": torch.zeros(100000)}, target)
"""


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one_loadable(tmp_path):
    from lm_latent.checkpointing import AtomicCheckpointIO

    target = tmp_path / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        partial = list(target.parent.glob(".last.ckpt.*.tmp"))
        assert len(partial) == 1 and partial[0].stat().st_size > 0
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    ckpt = torch.load(target, weights_only=True)  # complete: the previous checkpoint, untouched
    assert ckpt["global_step"] == 1 and torch.equal(ckpt["w"], torch.arange(4.0))
    # The killed writer's temporary file is not a checkpoint to Lightning and goes with the next write.
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    assert torch.load(target, weights_only=True)["global_step"] == 3


# -- non-finite loss ------------------------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["mixed", "codebook"])
def test_nan_loss_stops_the_run_naming_stage_step_and_epoch(stage, inputs, tmp_path, capsys):
    args = mixed_args if stage == "mixed" else codebook_args
    root = tmp_path / "run"
    poison = callbacks_config(tmp_path / "poison.json", (PoisonWeights, {"at_step": 3}))
    code = run(stage, ["fit", *args(inputs, root, "--trainer.max_steps", "6", "--config", poison)])
    assert code == 1
    assert_one_clean_error(capsys.readouterr().err, f"error: {stage}: the training loss is nan at global step 3 (epoch 0")
    # The run stopped before its next checkpoint: last.ckpt is the healthy state of step 2.
    last = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert sorted(p.name for p in (root / "checkpoints").iterdir()) == ["epoch=0-step=2.ckpt", "last.ckpt"]


def test_nan_loss_on_one_ddp_rank_stops_every_rank(inputs, tmp_path):
    """Two CPU processes: only rank 1 sees the NaN; both stop together (no rank left waiting in a
    collective) and the message names rank 1's step."""
    root = tmp_path / "run"
    poison = callbacks_config(tmp_path / "poison.json", (PoisonWeights, {"at_step": 3, "rank": 1}))
    argv = mixed_args(inputs, root, "--trainer.max_steps", "6", "--config", poison,
                      "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.limit_val_batches", "0")
    proc = _cli_process("mixed", ["fit", *argv], tmp_path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-3000:]
    assert "error: mixed: the training loss is nan at global step 3 (epoch 0, batch 3) on rank 1" in err
    assert "Traceback" not in err
    assert torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2


class _Regression(pl.LightningModule):
    """y = w x, with the loss made ``bad_value`` at global step ``bad_step``."""

    def __init__(self, bad_step: int, bad_value: float) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.bad_step, self.bad_value = bad_step, bad_value

    def training_step(self, batch, batch_idx):
        loss = (self.w * batch[0] - 2 * batch[0]).pow(2).mean()
        return loss * self.bad_value if self.global_step == self.bad_step else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        x = torch.arange(16.0).reshape(16, 1)
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=2)


@pytest.mark.parametrize("deferred", [False, True], ids=["every_step", "deferred"])
def test_guard_reports_the_first_bad_step_and_saves_nothing_after_it(deferred, tmp_path, monkeypatch):
    """inf instead of NaN; and the device-side mode (GPUs, several processes), where flags are read
    every few steps: it still names the first bad step and still writes no checkpoint after it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lm_latent.guards import NonFiniteLossError, NonFiniteLossGuard

    if deferred:
        monkeypatch.setattr(NonFiniteLossGuard, "_immediate", staticmethod(lambda trainer, loss: False))
    guard = NonFiniteLossGuard("test", check_every_n_steps=4)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1, save_top_k=-1)
    trainer = pl.Trainer(max_steps=8, callbacks=[guard, ckpt], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    with pytest.raises(NonFiniteLossError, match=r"^test: the training loss is inf at global step 5 \(epoch 0, batch 5\)"):
        trainer.fit(_Regression(bad_step=5, bad_value=float("inf")))
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 5  # state after step 5 never saved
    assert not list(tmp_path.glob("*step=6*"))


# -- bad inputs: one clear error, nothing overwritten ------------------------------------------------------
def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("stage", ["mixed", "codebook"])
def test_truncated_checkpoint(stage, inputs, trained, tmp_path, capsys):
    args = mixed_args if stage == "mixed" else codebook_args
    cut = _truncate(Path(shutil.copy(trained[stage] / "checkpoints" / "last.ckpt", tmp_path / "cut.ckpt")))
    fresh = tmp_path / "fresh"
    assert run(stage, ["fit", *args(inputs, fresh, "--trainer.max_steps", "6", "--ckpt_path", str(cut))]) == 2
    assert_one_clean_error(capsys.readouterr().err, str(cut), "truncated")
    assert not fresh.exists()  # refused before the run folder was even created

    # The same for a run folder whose last.ckpt was cut by an earlier writer: `--ckpt_path last`.
    root = copy_run(trained, stage, tmp_path / "run")
    _truncate(root / "checkpoints" / "last.ckpt")
    before = snapshot(root)
    assert run(stage, ["fit", *args(inputs, root, "--trainer.max_steps", "6", "--ckpt_path", "last")]) == 2
    assert_one_clean_error(capsys.readouterr().err, "last.ckpt", "truncated")
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "stage, foreign, message",
    [
        ("mixed", "codebook", "is a codebook checkpoint (written by `lm-latent codebook fit`), not a mixed one"),
        ("codebook", "mixed", "is a mixed checkpoint (written by `lm-latent mixed fit`), not a codebook one"),
        ("mixed", "untagged codebook", "was not written by MixedTokenLM"),
        ("mixed", "random dict", "is not a Lightning checkpoint"),
        ("codebook", "weights only", "holds only model weights"),
    ],
)
def test_foreign_checkpoint(stage, foreign, message, inputs, trained, tmp_path, capsys):
    from lm_latent.checkpointing import STAGE_KEY

    path = tmp_path / "foreign.ckpt"
    if foreign in ("codebook", "mixed"):
        shutil.copy(trained[foreign] / "checkpoints" / "last.ckpt", path)
    elif foreign == "untagged codebook":  # written before checkpoints carried their stage
        ckpt = torch.load(trained["codebook"] / "checkpoints" / "last.ckpt", weights_only=True)
        del ckpt[STAGE_KEY]
        torch.save(ckpt, path)
    elif foreign == "random dict":
        torch.save({"weights": torch.randn(3, 3), "step": 7}, path)
    else:  # a codebook checkpoint without optimizer and loop state cannot resume a fit
        ckpt = torch.load(trained["codebook"] / "checkpoints" / "last.ckpt", weights_only=True)
        torch.save({k: v for k, v in ckpt.items() if k not in ("optimizer_states", "loops")}, path)
    args = mixed_args if stage == "mixed" else codebook_args
    root = copy_run(trained, stage, tmp_path / "run")
    before = snapshot(root)
    assert run(stage, ["fit", *args(inputs, root, "--trainer.max_steps", "6", "--ckpt_path", str(path))]) == 2
    assert_one_clean_error(capsys.readouterr().err, str(path), message)
    assert snapshot(root) == before


def test_foreign_checkpoint_for_encode_and_export(trained, inputs, tmp_path, capsys):
    mixed_ckpt = str(trained["mixed"] / "checkpoints" / "last.ckpt")
    codebook_ckpt = str(trained["codebook"] / "checkpoints" / "last.ckpt")
    assert run("codebook", ["encode", "--checkpoint", mixed_ckpt, "--dataset", "prosqa", "--data", inputs["prosqa"],
                            "--tokenizer", inputs["tokenizer_dir"], "--cache-dir", str(tmp_path / "cache")]) == 2
    assert_one_clean_error(capsys.readouterr().err, "is a mixed checkpoint")
    assert run("mixed", ["export", "--checkpoint", codebook_ckpt, "--out", str(tmp_path / "hf")]) == 2
    assert_one_clean_error(capsys.readouterr().err, "is a codebook checkpoint")
    assert not (tmp_path / "hf").exists()


def test_unknown_config_key_names_the_key(inputs, tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(MIXED_CONFIG.read_text().replace("  lr: 1.0e-3\n", "  lr: 1.0e-3\n  learning_rate: 0.1\n"))
    root = tmp_path / "run"
    argv = ["mixed", "fit", *mixed_args(inputs, root, "--config", str(config))]
    # A real process: what a user sees on the terminal, and the exit status.
    proc = subprocess.run([sys.executable, "-m", "lm_latent.cli", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert_one_clean_error(proc.stderr, "model.learning_rate")
    assert len(proc.stderr.strip().splitlines()) <= 3 and "usage:" not in proc.stderr
    assert not root.exists()


def test_mixed_resume_with_another_tokenizer(inputs, trained, tmp_path, capsys):
    root = copy_run(trained, "mixed", tmp_path / "run")
    before = snapshot(root)
    for name in ("other_tokenizer", "swapped_tokenizer"):
        argv = mixed_args(inputs, root, "--trainer.max_steps", "6", "--data.tokenizer_dir", inputs[name], "--ckpt_path", "last")
        assert run("mixed", ["fit", *argv]) == 2
        assert_one_clean_error(capsys.readouterr().err, f"--data.tokenizer_dir {inputs[name]} is not the tokenizer")
        assert snapshot(root) == before  # last.ckpt, the saved tokenizer and the logs are as they were
    # The swapped tokenizer has the same size: only its token ids differ, and that is caught too.
    from lm_latent.data.tokenization import load_tokenizer

    assert len(load_tokenizer(inputs["swapped_tokenizer"])) == len(load_tokenizer(inputs["tokenizer_dir"]))


def test_codebook_resume_and_encode_with_another_tokenizer(inputs, trained, tmp_path, capsys):
    root = copy_run(trained, "codebook", tmp_path / "run")
    before = snapshot(root)
    other = inputs["other_tokenizer"]
    argv = codebook_args(inputs, root, "--trainer.max_steps", "6", "--data.tokenizer_dir", other, "--ckpt_path", "last")
    assert run("codebook", ["fit", *argv]) == 2
    assert_one_clean_error(capsys.readouterr().err, f"{other}: tokenizer (vocab", "is not the one the codebook was trained with")
    assert snapshot(root) == before
    last = str(root / "checkpoints" / "last.ckpt")
    assert run("codebook", ["encode", "--checkpoint", last, "--dataset", "prosqa", "--data", inputs["prosqa"],
                            "--tokenizer", other, "--cache-dir", str(tmp_path / "cache")]) == 2
    assert_one_clean_error(capsys.readouterr().err, "is not the one the codebook was trained with")


def test_resume_with_another_model_size(inputs, trained, tmp_path, capsys):
    root = copy_run(trained, "codebook", tmp_path / "run")
    before = snapshot(root)
    argv = codebook_args(inputs, root, "--trainer.max_steps", "6", "--model.d_model", "48", "--ckpt_path", "last")
    assert run("codebook", ["fit", *argv]) == 2
    assert_one_clean_error(capsys.readouterr().err, "does not fit the configured model", ", 32) in the checkpoint,", ", 48) here")
    assert snapshot(root) == before


# -- SIGKILL mid-training, then resume ---------------------------------------------------------------------
def _cli_process(stage: str, argv: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    for var in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # a fresh launch, whatever runs the tests
    return subprocess.Popen([sys.executable, "-m", "lm_latent.cli", stage, *argv], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def _kill_then_resume(stage: str, args, inputs: dict[str, str], tmp_path: Path, total: int, every: int, kill_at: int):
    """Run ``stage`` fit to ``total`` steps uninterrupted, and again killed (SIGKILL) at step ``kill_at``
    then resumed with ``--ckpt_path last``; returns both runs' final last.ckpt."""
    steps = ["--trainer.max_steps", str(total), "--checkpoint.every_n_train_steps", str(every)]
    _finish(_cli_process(stage, ["fit", *args(inputs, tmp_path / "straight", *steps)], tmp_path))

    killed = tmp_path / "killed"
    marker = tmp_path / "hanging"
    hang = callbacks_config(tmp_path / "hang.json", (HangAtStep, {"at_step": kill_at, "marker": str(marker)}))
    proc = _cli_process(stage, ["fit", *args(inputs, killed, *steps, "--config", hang)], tmp_path)
    try:
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert before["global_step"] == (kill_at // every) * every  # the kill came after this checkpoint
    _finish(_cli_process(stage, ["fit", *args(inputs, killed, *steps, "--ckpt_path", "last")], tmp_path))
    return [torch.load(root / "checkpoints" / "last.ckpt", weights_only=True) for root in (tmp_path / "straight", killed)]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _assert_same_validation(run_cli, args, inputs: dict[str, str], tmp_path: Path, metric: str) -> None:
    """Validating the uninterrupted and the resumed run's last.ckpt gives the same ``metric``."""
    val = []
    for root in ("straight", "killed"):
        ckpt = str(tmp_path / root / "checkpoints" / "last.ckpt")
        cli = run_cli(["validate", *args(inputs, tmp_path / f"val_{root}", "--ckpt_path", ckpt)])
        val.append(float(cli.trainer.callback_metrics[metric]))
    assert val[0] == val[1]


def test_sigkilled_mixed_fit_resumes_to_the_same_result(inputs, tmp_path):
    from lm_latent.finetune.cli import run_lightning

    # 6 optimizer steps per epoch: the kill at step 9 loses steps 8-9 of epoch 1, resumed mid-epoch.
    straight, resumed = _kill_then_resume("mixed", mixed_args, inputs, tmp_path, total=16, every=4, kill_at=9)
    assert straight["global_step"] == 16
    _assert_same_state(straight, resumed)
    _assert_same_validation(run_lightning, mixed_args, inputs, tmp_path, "val/loss")


def test_sigkilled_codebook_fit_resumes_to_the_same_result(inputs, tmp_path):
    """Stage 1 too: its order comes from (seed, epoch) and each training step's random draws from
    (seed, epoch, batch, rank); dropout and a high dead-code threshold make sure there are draws."""
    from lm_latent.codebook.cli import lightning_cli

    def args(files, root, *extra):
        return codebook_args(files, root, "--model.dropout", "0.1", "--model.dead_code_threshold", "2.0", *extra)

    # 4 optimizer steps per epoch: the kill at step 7 loses step 7 of epoch 1, resumed mid-epoch at step 6.
    straight, resumed = _kill_then_resume("codebook", args, inputs, tmp_path, total=12, every=3, kill_at=7)
    assert straight["global_step"] == 12
    _assert_same_state(straight, resumed)
    _assert_same_validation(lightning_cli, args, inputs, tmp_path, "val/recon_loss")


def test_a_finished_run_leaves_its_process_group(tmp_path):
    """A run that succeeds closes the process group Lightning leaves open, so its exit cannot abort
    in gloo's teardown and be read as a failed stage."""
    import torch.distributed as dist

    from lm_latent.lightning_cli import run_cli

    def start():
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)

    assert run_cli(start) == 0
    assert not dist.is_initialized()
