"""Smoke tests of the benchmark scripts in bench/: each runs as a user runs it, at its smallest sizes.

Timings are not checked (they are noise at these sizes); what is checked is that every script still
runs end to end, ends with its JSON line (BENCHMARKS.md's numbers come from it) holding the keys it
documents, gives finite positive ratios, and that both sides of a comparison still produce the same
outputs where the script checks that.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str) -> dict:
    """Run ``bench/<script>.py`` with ``args`` from the repository root on one thread; its JSON line."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{script}.py"), *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    payload = json.loads(proc.stdout.strip().splitlines()[-1])
    assert payload["bench"] == script.removeprefix("bench_")
    assert payload["machine"]["torch_threads"] == 1
    return payload


def assert_ratios(payload: dict, *keys: str) -> None:
    for key in keys:
        value = payload[key]
        assert math.isfinite(value) and value > 0, f"{key} = {value}"


def gsm8k_subset(shared_data: Path, out: Path, n: int) -> Path:
    """The first ``n`` examples of the staged GSM8K train file (the scripts read all 7,473 by default)."""
    lines = (shared_data / "gsm8k" / "train.jsonl").read_text().splitlines(keepends=True)[:n]
    out.write_text("".join(lines))
    return out


def test_bench_data(shared_data, tmp_path):
    n = 64
    data = gsm8k_subset(shared_data, tmp_path / "train.jsonl", n)
    out = run_bench("bench_data", "--data", str(data), "--repeats", "1", "--vocab-size", "300")
    assert out["examples"] == n
    assert out["identical"] == n  # batched and per-segment tokenization give the same ids
    assert out["segments"] >= 3 * n and out["tokens"] > out["segments"]
    assert_ratios(out, "read_examples_per_s", "tokenize_batched_examples_per_s", "tokenize_naive_examples_per_s",
                  "read_and_tokenize_examples_per_s", "read_and_naive_examples_per_s",
                  "speedup_tokenize", "speedup_tokenize_cpu_time", "speedup_read_and_tokenize")


def test_bench_encode(shared_data):
    n = 8
    out = run_bench("bench_encode", "--n", str(n), "--repeats", "1", "--vocab-size", "300",
                    "--codebook-size", "16", "--kmeans-chunks", "64")
    assert out["examples"] == n
    assert out["identical_examples"] == n  # encode_examples and the per-example loop give the same codes
    assert out["chunks"] >= n
    assert len(out["seconds_batched"]) == len(out["seconds_naive"]) == 1
    assert_ratios(out, "batched_chunks_per_s", "naive_chunks_per_s", "speedup", "speedup_cpu_time")


def test_bench_eval_batched(shared_data):
    n = 8
    out = run_bench("bench_eval_batched", "--n", str(n), "--batch-size", "4", "--max-new-tokens", "8",
                    "--vocab-size", "300", "--num-codes", "8")
    assert out["n"] == n
    assert out["identical_generations"] == n  # batched, left-padded generation matches batch 1 exactly
    batched, single = out["modes"]["batch 4"], out["modes"]["batch 1"]
    assert batched["generated_tokens"] == single["generated_tokens"] > 0
    for mode in (batched, single):
        assert 0 <= mode["accuracy"] <= 1
    assert_ratios(out, "speedup_batched_over_batch1")


def test_bench_inference_cost_untrained_forced(shared_data):
    n = 8
    out = run_bench("bench_inference_cost", "--n", str(n), "--batch-sizes", "4", "1", "--num-codes", "8")
    assert out["mode"] == "untrained_forced" and out["n"] == n and out["run_results"] == {}
    assert set(out["rows"]) == {"cot@4", "latent@4", "cot@1", "latent@1"}
    for key, row in out["rows"].items():
        assert row["forced_exact"] == n, key  # every problem emitted exactly its forced sequence
        assert row["hit_max_new_tokens"] == 0, key
        assert (row["mean_latent_tokens"] > 0) == key.startswith("latent"), key
    for bs in ("4", "1"):
        ratios = out["ratios"][bs]
        assert_ratios(ratios, "tokens_latent_over_cot", "time_latent_over_cot", "cpu_time_latent_over_cot",
                      "prompt_only_seconds", "prompt_share_cot", "prompt_share_latent")
        assert ratios["tokens_latent_over_cot"] < 1  # the latent model replaces whole chunks by one code each
    # the forced outputs do not depend on the batch size
    assert out["rows"]["latent@4"]["mean_tokens"] == out["rows"]["latent@1"]["mean_tokens"]


def test_bench_padding(shared_data, tmp_path):
    n = 64
    gsm8k = gsm8k_subset(shared_data, tmp_path / "train.jsonl", n)
    out = run_bench("bench_padding", "--prosqa-examples", str(n), "--gsm8k", str(gsm8k), "--batch-sizes", "4",
                    "--epochs", "1", "--vocab-size", "300", "--num-codes", "8")
    rows = out["rows"]
    assert [(r["data"], r["strategy"]) for r in rows] == [
        ("prosqa (generated)", "latent_ar"), ("prosqa (generated)", "cot"),
        ("gsm8k train", "latent_ar"), ("gsm8k train", "cot"),
    ]
    for r in rows:
        assert r["examples"] == n and r["batch"] == 4 and r["mean_length"] > 0
        for key in ("pad_share_naive", "pad_share_bucketed", "pad_share_floor"):
            assert 0 <= r[key] < 1, (r["data"], r["strategy"], key)
        assert_ratios(r, "positions_naive_over_bucketed")
    assert_ratios(out, "median_positions_naive_over_bucketed")


def test_bench_train_codebook():
    out = run_bench("bench_train_codebook", "--examples", "64", "--vocab-size", "300", "--batch-size", "8",
                    "--warmup", "1", "--steps", "2", "--rounds", "1")
    assert len(out["rounds_bare"]) == len(out["rounds_lightning"]) == 1
    assert_ratios(out, "bare_chunks_per_s", "lightning_chunks_per_s", "bare_examples_per_s",
                  "lightning_examples_per_s", "ratio_lightning_over_bare")


def test_bench_train_mixed():
    out = run_bench("bench_train_mixed", "--layers", "1", "--d-model", "64", "--vocab-size", "300",
                    "--num-codes", "8", "--examples", "64", "--batch-size", "4", "--warmup", "1", "--steps", "2",
                    "--rounds", "1")
    assert len(out["rounds_bare"]) == len(out["rounds_lightning"]) == 1
    assert_ratios(out, "bare_tokens_per_s", "lightning_tokens_per_s", "ratio_lightning_over_bare")


def test_bench_cpu_parallelism():
    out = run_bench("bench_cpu_parallelism", "--steps", "1", "--rounds", "1", "--warmup", "1",
                    "--batch", "2", "--seq", "16", "--no-compile")
    assert set(out["tokens_per_s"]) == {"eager_1thread", "eager_2threads", "side_by_side_2procs", "side_by_side_3procs"}
    assert_ratios(out["ratios"], "two_threads_vs_one", "side_by_side_vs_two_threads", "three_procs_vs_two")
