"""1-Feasible-10 on two DDP processes equals one process: every maze counted once, padded shards too.

A scripted module stands in for the LM: what it "samples" depends only on the maze and the sample's
position among its k, so both runs see the same plans and must report the same numbers exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_WORKER = """
import json, sys
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader
from lm_latent.evaluation.maze import MazeAccuracy
from lm_latent.finetune.generation import Generation

data, devices, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
records = json.load(open(data))
gold = {{r["question"] + "\\n": r["answer"] for r in records}}
index = {{q: i for i, q in enumerate(gold)}}


class Scripted(LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)  # DDP wraps only modules with trainable parameters

    def validation_step(self, batch, batch_idx):
        return None

    def generate(self, prompts, do_sample, **kwargs):
        k = 10 if do_sample else 1
        outs = []
        for j, p in enumerate(prompts):
            i, s = index[p], j % k
            right = (i + s) % 4 == 0 if do_sample else i % 2 == 0
            text = "### " + (gold[p] if right else "plan 0 0")
            n = len(text.split())
            outs.append(Generation(text, [], [], 0, 0, n + i, text))
        return outs


callbacks = [MazeAccuracy(file=data, name="plain", num_samples=0, batch_size=7),
             MazeAccuracy(file=data, name="synced", num_samples=0, batch_size=7, synced_generation=True)]
trainer = Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", callbacks=callbacks,
                  logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
logged = trainer.validate(Scripted(), dataloaders=DataLoader([0, 1]), verbose=False)[0]
if trainer.is_global_zero:
    with open(out, "w") as f:
        json.dump({{"logged": {{k: float(v) for k, v in logged.items()}}, "world_size": trainer.world_size,
                   "results": {{cb.name: cb.last_results for cb in callbacks}}}}, f)
from lm_latent.lightning_cli import leave_process_group
leave_process_group()  # gloo's threads alive at exit can abort a finished run (SIGABRT)
"""


def _run(data: Path, tmp_path: Path, devices: int) -> dict:
    script = tmp_path / "maze_worker.py"
    script.write_text(_WORKER.format())
    out = tmp_path / f"result_{devices}.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)
    proc = subprocess.run([sys.executable, str(script), str(data), str(devices), str(out)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_two_process_maze_evaluation_equals_one_process(tmp_path):
    from lm_latent.data.generators import write_json
    from lm_latent.data.generators.maze import generate

    data = tmp_path / "mazes.json"
    write_json(generate(7, seed=5), data)  # an odd count: the shards differ in size, padding duplicates one
    one, two = _run(data, tmp_path, 1), _run(data, tmp_path, 2)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for name in ("plain", "synced"):
        assert two["logged"][f"val/{name}/n"] == 7
        for key, value in one["logged"].items():
            assert two["logged"][key] == value, key
        assert two["results"][name] == one["results"][name]
    # Maze i has a feasible sample where (i + s) % 4 == 0 for some s < 10: every maze; greedy: i even.
    assert one["logged"]["val/plain/feasible_at_k"] == 1.0
    assert one["logged"]["val/plain/greedy_feasible"] == pytest.approx(4 / 7)
    feasible_samples = sum((i + s) % 4 == 0 for i in range(7) for s in range(10))
    assert one["logged"]["val/plain/sample_feasible"] == pytest.approx(feasible_samples / 70)
