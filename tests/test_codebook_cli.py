"""`lm-latent codebook fit|validate`: shipped configs load, the resolved config is saved next to the run,
and resuming from last.ckpt continues the run (the global step goes on)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from test_codebook_data import write_prosqa

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "experiments" / "codebook").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_shipped_config_instantiates(config, tiny_tokenizer, tmp_path, monkeypatch):
    from lm_latent.codebook.cli import lightning_cli
    from lm_latent.codebook.datamodule import CodebookDataModule
    from lm_latent.codebook.module import CodebookAutoencoder

    monkeypatch.chdir(tmp_path)
    cli = lightning_cli(["--config", str(config), "--data.tokenizer_dir", str(tiny_tokenizer)], run=False)
    assert isinstance(cli.model, CodebookAutoencoder) and isinstance(cli.datamodule, CodebookDataModule)
    # L, context and tokenizer are given once, under data:, and reach the model.
    assert cli.model.hparams.chunk_size == cli.datamodule.hparams.chunk_size
    assert cli.model.hparams.tokenizer_dir == str(tiny_tokenizer)
    assert cli.trainer.checkpoint_callback.dirpath.endswith("checkpoints")


def test_fit_then_resume_from_last_continues_the_run(tmp_path, tiny_tokenizer, monkeypatch):
    from lm_latent.codebook.cli import main

    monkeypatch.chdir(tmp_path)
    data = write_prosqa(tmp_path / "train.json", 60, seed=5)
    root = tmp_path / "run"
    common = [
        "--config", str(REPO / "experiments" / "codebook" / "prosqa_tiny.yaml"),
        "--data.train_file", str(data), "--data.val_file", "null", "--data.val_fraction", "0.2",
        "--data.tokenizer_dir", str(tiny_tokenizer), "--data.global_batch_size", "8",
        "--model.d_model", "32", "--model.n_heads", "2", "--model.codebook_size", "16", "--model.kmeans_init_chunks", "64",
        "--trainer.default_root_dir", str(root), "--trainer.val_check_interval", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--checkpoint.every_n_train_steps", "2",
    ]
    assert main(["fit", *common, "--trainer.max_steps", "4"]) == 0
    last = root / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=True)
    assert first["global_step"] == 4
    assert (root / "tensorboard" / "version_0" / "config.yaml").is_file()

    assert main(["fit", *common, "--trainer.max_steps", "8", "--ckpt_path", "last"]) == 0
    second = torch.load(last, weights_only=True)
    assert second["global_step"] == 8  # continued from 4, not restarted from 0
    # The optimizer state came along: Adam's step counter continues too.
    steps = [s["step"] for s in second["optimizer_states"][0]["state"].values()]
    assert all(float(s) == 8 for s in steps)
    assert main(["validate", *common, "--ckpt_path", str(last)]) == 0
