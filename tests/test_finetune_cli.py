"""`lm-latent mixed fit|validate|test|export` from the shipped example config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lm_latent.finetune.cli import main
from test_finetune_data import write_stage2_inputs

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "mixed" / "prosqa_tiny.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_tokenizer):
    return write_stage2_inputs(tmp_path_factory.mktemp("cli_data"), tiny_tokenizer, n_train=48, n_val=16)


def _args(files, root: Path, *extra: str) -> list[str]:
    return [
        "--config", str(EXAMPLE),
        "--trainer.default_root_dir", str(root),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        "--data.dataset", "canonical",
        "--data.train_file", files["train_file"],
        "--data.val_file", files["val_file"],
        "--data.tokenizer_dir", files["tokenizer_dir"],
        "--data.codes_file", files["train_codes"],
        "--data.val_codes_file", files["val_codes"],
        "--data.global_batch_size", "8",
        "--data.micro_batch_size", "4",
        *extra,
    ]


def test_example_config_fast_dev_run(files, tmp_path):
    assert main(["fit", *_args(files, tmp_path, "--trainer.fast_dev_run", "true")]) == 0


def test_fit_resumes_from_last_checkpoint_then_validate_test_and_export(files, tmp_path, capsys):
    root = tmp_path / "run"
    assert main(["fit", *_args(files, root, "--trainer.max_steps", "3", "--trainer.max_epochs", "-1")]) == 0
    last = root / "checkpoints" / "last.ckpt"
    # Another model size is refused before anything is written, although the LM is only built when the
    # run starts (configure_model): the check compares with its architecture on the meta device.
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    assert main(["fit", *_args(files, root, "--model.lm.hidden_size", "64", "--ckpt_path", "last")]) == 2
    err = capsys.readouterr().err
    assert "does not fit the configured model" in err and ", 128) in the checkpoint" in err and ", 64) here" in err
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    first = torch.load(last, map_location="cpu", weights_only=True)
    assert first["global_step"] == 3
    # Accumulation is derived from the global batch: 8 / (1 device x micro batch 4) = 2.
    assert first["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == 6
    assert (root / "tokenizer" / "tokenizer.json").is_file()
    assert list(root.glob("tensorboard/version_*/config.yaml"))
    assert list(root.glob("tensorboard/version_*/events.out.tfevents.*"))

    assert main(["fit", *_args(files, root, "--trainer.max_steps", "5", "--trainer.max_epochs", "-1",
                                "--ckpt_path", "last")]) == 0
    resumed = torch.load(last, map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 5
    assert resumed["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["completed"] == 10

    assert main(["validate", *_args(files, root, "--ckpt_path", str(last))]) == 0
    assert main(["test", *_args(files, root, "--ckpt_path", str(last))]) == 0
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(last), "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()


def test_cut_answers_and_foreign_codes_are_one_error_line(files, tmp_path, capsys):
    import json

    root = tmp_path / "run"
    # max_length 40 cuts most of these examples: training on cut answers needs the user's consent.
    assert main(["fit", *_args(files, root, "--data.max_length", "40", "--trainer.fast_dev_run", "true")]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "train examples are longer than data.max_length=40" in err
    assert "data.allow_answer_truncation: true" in err and "Traceback" not in err
    assert main(["fit", *_args(files, root, "--data.max_length", "40", "--data.allow_answer_truncation", "true",
                               "--trainer.fast_dev_run", "true")]) == 0
    report = json.loads((root / "data_report.json").read_text())
    assert report["max_length"] == 40
    assert 0 < report["truncation"]["train"]["truncated"] <= report["truncation"]["train"]["examples"] == 48
    assert report["truncation"]["val"]["examples"] == 16
    # The training codes given for validation: refused, naming both files.
    assert main(["fit", *_args(files, root, "--data.val_codes_file", files["train_codes"],
                               "--trainer.fast_dev_run", "true")]) == 2
    err = capsys.readouterr().err
    assert f"error: {files['train_codes']}: encoded from {Path(files['train_file']).resolve()} (split 'train'), " \
           f"not from the val file {files['val_file']}" in err


def test_usage_errors(tmp_path, capsys):
    assert main([]) == 2
    assert main(["predict"]) == 2
    assert "unknown command 'predict'" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(tmp_path / "none.ckpt"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
