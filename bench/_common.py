"""Helpers shared by the benchmark scripts: threads, machine line, data and tokenizers, JSON result line.

Every script prints a human-readable table, then one final line ``{"bench": ..., ...}`` (JSON) with the
numbers BENCHMARKS.md records, so a rerun can be compared mechanically.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
GSM8K_TRAIN = SHARED_DATA / "gsm8k" / "train.jsonl"
PROSQA_VALID = SHARED_DATA / "prosqa" / "valid.json"
PRONTOQA_VALID = SHARED_DATA / "prontoqa" / "valid.json"


def add_thread_arg(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads and tokenizer (Rayon) threads; 1 by default: on a shared 2-core "
        "machine a second thread mostly contends with other processes and turns timings into noise",
    )


def set_threads(n: int) -> None:
    """Use ``n`` threads in torch and in the Rust tokenizers (set before ``tokenizers`` starts its pool)."""
    os.environ["RAYON_NUM_THREADS"] = str(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if n > 1 else "false")
    import torch

    torch.set_num_threads(n)


def machine_line() -> str:
    """Cores, CPU, load average and threads in use: what the numbers depend on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: {os.cpu_count()} cores ({cpu}), 1-min load average {load:.2f}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)")


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "cores": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def print_json(bench: str, results: dict[str, Any], args: argparse.Namespace | None = None) -> None:
    """The last line of every script: the measured numbers, the settings and the machine, as JSON."""
    payload: dict[str, Any] = {"bench": bench, **results, "machine": machine_info()}
    if args is not None:
        payload["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print(json.dumps(payload, sort_keys=False))


class Stopwatch:
    """``with Stopwatch() as t: ...`` then ``t.seconds`` (wall) and ``t.cpu_seconds`` (this process's CPU).

    On a machine shared with other jobs, wall time swings with their load while a single-threaded
    process's CPU time barely moves, so CPU-time ratios reproduce where wall-time ratios drift.
    """

    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def __enter__(self) -> "Stopwatch":
        self._start, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start
        self.cpu_seconds = time.process_time() - self._cpu


def require_file(path: Path, what: str) -> bool:
    """Print a clear message when staged data is missing (the scripts then exit with status 2)."""
    if Path(path).is_file():
        return True
    import sys

    print(f"{what} not found: {path} (staged data lives in ../shared/data)", file=sys.stderr)
    return False


def generated_examples(generator: str, num: int, workdir: Path, seed: int = 0):
    """``num`` problems from the project's ``generator`` ("prosqa"/"prontoqa"), written under ``workdir``
    and read back with the dataset reader; returns (file, examples)."""
    from lm_latent.data.generators import GENERATORS, write_json
    from lm_latent.data.readers import read_examples

    options_cls, generate = GENERATORS[generator]
    path = Path(workdir) / f"{generator}_train.json"
    write_json(generate(num, seed, options_cls()), path)
    return path, read_examples(generator, path)


def bpe_tokenizer(examples: Iterable, out_dir: Path, vocab_size: int):
    """A byte-level BPE tokenizer trained on the examples' full texts (what the pipeline does)."""
    from lm_latent.data.tokenization import full_text, load_tokenizer, train_tokenizer

    train_tokenizer((full_text(e) for e in examples), out_dir, vocab_size=vocab_size)
    return load_tokenizer(out_dir)


def random_codes_file(tokenized: Sequence, num_codes: int, chunk_size: int, path: Path, seed: int = 0) -> Path:
    """A code table with one random code per CoT chunk (lengths, hence batching and speed, do not depend
    on the codes' values)."""
    from lm_latent.codebook.codes_file import CodeTable, save_codes

    rng = random.Random(seed)
    codes = {t.id: [rng.randrange(num_codes) for _ in t.chunks(chunk_size)] for t in tokenized}
    save_codes(path, CodeTable(num_codes, chunk_size, codes))
    return path


def lightning_fit_seconds(module, batches: list[dict], warmup: int) -> float:
    """Seconds ``Trainer.fit`` takes from the start of batch ``warmup`` to the end of the last batch.

    The batches are already collated (a ``DataLoader`` with ``batch_size=None`` hands them over one by
    one), so this times the module's step plus Lightning's loop (hooks, logging, optimizer closure),
    not data loading. No logger, checkpointing, progress bar or validation: a bare loop has none either.
    """
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import Callback

    class Clock(Callback):
        start = end = 0.0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == warmup:
                Clock.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            Clock.end = time.perf_counter()

    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_steps=len(batches), max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[Clock()],
    )
    trainer.fit(module, train_dataloaders=loader)
    return Clock.end - Clock.start


def add_codebook_args(ap) -> None:
    """The codebook size flags the stage-1 benchmarks share (defaults: the tiny CPU codebook)."""
    ap.add_argument("--chunk-size", type=int, default=16)
    ap.add_argument("--codebook-size", type=int, default=64)
    ap.add_argument("--code-dim", type=int, default=32)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--encoder-layers", type=int, default=1)
