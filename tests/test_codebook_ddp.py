"""Two CPU processes under Lightning DDP: the codebook is synchronised for real.

Each rank sees different data (different token ranges and batch sizes: 8 vs 24 chunks per step).
With the EMA all-reduced, every rank's EMA cluster sizes sum to the *global* chunks per step (32);
without it they would sum to 8 on rank 0 and 24 on rank 1. Buffers are not broadcast
(``broadcast_buffers=False``), so identical codebooks come from the synchronised updates alone.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent(
    """
    import os, sys
    import lightning as L
    import torch
    from lightning.pytorch.strategies import DDPStrategy
    from torch.utils.data import DataLoader
    from lm_latent.codebook.module import CodebookAutoencoder

    out = sys.argv[1]
    rank = int(os.environ.get("LOCAL_RANK", 0))  # set in the processes Lightning launches
    torch.manual_seed(100 + rank)
    n, lo = (8, 10) if rank == 0 else (24, 50)  # per-rank batch size and token range

    def batch():
        ids = torch.randint(lo, lo + 40, (n, 8))
        return {"index": torch.arange(n), "valid": torch.ones(n, dtype=torch.bool),
                "prompt_ids": torch.randint(lo, lo + 40, (n, 6)), "prompt_mask": torch.ones(n, 6, dtype=torch.bool),
                "chunk_ids": ids, "chunk_mask": torch.ones(n, 8, dtype=torch.bool), "chunk_pos": torch.zeros(n, dtype=torch.long)}

    loader = DataLoader([batch() for _ in range(40)], batch_size=None)
    torch.manual_seed(0)  # same initial weights on both ranks
    model = CodebookAutoencoder("unused", vocab_size=100, pad_id=1, eos_id=0, chunk_size=8, codebook_size=64,
                                code_dim=8, d_model=32, n_heads=2, encoder_layers=1, prompt_layers=1, decoder_layers=1,
                                ema_decay=0.5, kmeans_init=True, kmeans_init_chunks=48, dead_code_threshold=0.05)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=DDPStrategy(broadcast_buffers=False),
                        max_steps=12, limit_val_batches=0, use_distributed_sampler=False, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=loader)
    q = model.net.quantizer
    torch.save({"codebook": q.codebook.detach().clone(), "cluster_size": q.cluster_size.detach().clone(),
                "sync": q.sync_codebook}, os.path.join(out, f"rank{trainer.global_rank}.pt"))
    from lm_latent.lightning_cli import leave_process_group
    leave_process_group()  # gloo's threads alive at exit can abort a finished run
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_codebooks_are_identical_and_ema_counts_both_ranks(tmp_path):
    script = tmp_path / "ddp_codebook.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["sync"] and r1["sync"]
    assert torch.equal(r0["codebook"], r1["codebook"])
    assert torch.equal(r0["cluster_size"], r1["cluster_size"])
    total = float(r0["cluster_size"].sum())
    # 8 + 24 chunks per step; dead-code resets add at most 64 codes x 0.05.
    assert 31.0 < total < 32.0 + 64 * 0.05 + 0.5, total
