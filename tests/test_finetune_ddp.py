"""Real DDP (two CPU processes, gloo) through `lm-latent mixed fit`: every rank draws the same k per
(seed, epoch, example id) as a single process, the shards are disjoint, the global batch is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from test_finetune_data import L, _seen, datamodule, write_stage2_inputs

EXAMPLE = Path(__file__).resolve().parents[1] / "experiments" / "mixed" / "prosqa_tiny.yaml"


class KRecorder(Callback):
    """Writes (epoch, example id, k) of every training sample this rank saw to <root>/k_rank<R>.json."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, int]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen += [(trainer.current_epoch, i, k) for i, k in zip(batch["ids"], batch["k"].tolist())]

    def on_train_end(self, trainer, pl_module):
        out = Path(trainer.default_root_dir) / f"k_rank{trainer.global_rank}.json"
        out.write_text(json.dumps({"seen": self.seen, "accumulate": trainer.accumulate_grad_batches,
                                   "global_step": trainer.global_step, "world": trainer.world_size}))


def test_ddp_ranks_see_the_single_process_k(tmp_path, tiny_tokenizer):
    files = write_stage2_inputs(tmp_path / "data", tiny_tokenizer, n_train=32, n_val=8)
    root = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "lm_latent.cli", "mixed", "fit", "--config", str(EXAMPLE),
        "--trainer.default_root_dir", str(root), "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.limit_val_batches", "0",
        "--trainer.callbacks+=test_finetune_ddp.KRecorder",
        "--model.lm.num_hidden_layers", "1", "--model.lm.hidden_size", "32", "--model.lm.intermediate_size", "64",
        "--data.dataset", "canonical", "--data.train_file", files["train_file"],
        "--data.tokenizer_dir", files["tokenizer_dir"], "--data.codes_file", files["train_codes"],
        "--data.val_file", "null", "--data.val_codes_file", "null",
        "--data.global_batch_size", "8", "--data.micro_batch_size", "4",
    ]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    for var in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    ranks = [json.loads((root / f"k_rank{r}.json").read_text()) for r in range(2)]
    assert all(r["world"] == 2 and r["accumulate"] == 1 for r in ranks)  # 8 = 2 ranks x micro 4
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2 * 32 // 8

    dm = datamodule(files, val_file=None, val_codes_file=None, global_batch_size=8)
    dm.setup("fit")
    loader = dm.make_loader(dm.train_set, train=True)
    singles = [_seen(loader, epoch) for epoch in (0, 1)]
    assert singles[0] != singles[1]  # k is redrawn each epoch, so this also checks the ranks got the epoch
    for epoch, single in enumerate(singles):
        per_rank = [{i: k for e, i, k in r["seen"] if e == epoch} for r in ranks]
        assert set(per_rank[0]).isdisjoint(per_rank[1])
        assert {**per_rank[0], **per_rank[1]} == single
    assert dm.chunk_size == L
