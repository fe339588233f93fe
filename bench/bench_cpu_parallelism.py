"""How to spend two CPU cores on stage-2 training: threads, torch.compile, or runs side by side.

Trains the default experiment's LM (architecture read from experiments/default.yaml, vocabulary of a
word-level tokenizer) on fixed random batches of the default's shape and reports training tokens/s
for each way of using the machine, all in one run so the ratios share its conditions:

    .venv/bin/python bench/bench_cpu_parallelism.py                  # batch 32 x 160 tokens
    .venv/bin/python bench/bench_cpu_parallelism.py --steps 10 --seq 64   # quick

- ``eager_1thread``: one process, one intra-op thread (the baseline);
- ``eager_2threads``: one process, two threads;
- ``compiled_1thread``: ``torch.compile`` (inductor), one thread, compile time excluded;
- ``side_by_side_2procs``: two processes of one thread each, started together; the reported rate
  is both processes' tokens over the wall time of the slower one (what two strategies fine-tuned at
  once get from the machine);
- ``side_by_side_3procs``: three such processes on the two cores (the default's three strategies
  fine-tuned at once, so that no core idles while the last one trains alone).

Token values do not change the arithmetic, so random ids stand in for data. Each number is the
median over timed rounds after warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import REPO, machine_line, print_json


def _lm_spec() -> dict:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(REPO / "experiments" / "default.yaml"), resolve=True)
    return cfg["mixed"]["model"]["lm"]


def worker(args) -> float:
    """Tokens/s of ``args.steps`` timed training steps in this process (after warm-up)."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(_lm_spec())
    model_type = spec.pop("model_type")
    config = AutoConfig.for_model(model_type, vocab_size=args.vocab, **spec)
    model = AutoModelForCausalLM.from_config(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, args.vocab, (args.batch, args.seq))

    def step(m):
        loss = m(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    run = torch.compile(model) if args.compile else model
    for _ in range(args.warmup):
        step(run)
    times = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step(run)
        times.append(time.perf_counter() - t0)
    return args.batch * args.seq * args.steps / statistics.median(times)


def _child(args, threads: int, compile_: bool) -> list[str]:
    return [
        sys.executable, __file__, "--worker", "--threads", str(threads), "--batch", str(args.batch),
        "--seq", str(args.seq), "--steps", str(args.steps), "--rounds", str(args.rounds),
        "--warmup", str(args.warmup), "--vocab", str(args.vocab), *(["--compile"] if compile_ else []),
    ]


def _run(cmds: list[list[str]]) -> list[float]:
    """Start ``cmds`` together; each prints its tokens/s. Returns the rates."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True, env=env) for c in cmds]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"a worker failed: {[p.returncode for p in procs]}")
    return [float(json.loads(o.strip().splitlines()[-1])["tokens_per_s"]) for o in outs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=160)
    ap.add_argument("--vocab", type=int, default=180, help="about the word tokenizer's size on ProntoQA")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (it needs a C++ compiler)")
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps({"tokens_per_s": worker(args)}))
        return 0

    print(machine_line())
    rates = {}
    rates["eager_1thread"] = _run([_child(args, 1, False)])[0]
    rates["eager_2threads"] = _run([_child(args, 2, False)])[0]
    if not args.no_compile:
        rates["compiled_1thread"] = _run([_child(args, 1, True)])[0]
    for n in (2, 3):
        # All ran the same number of timed steps; together they go as fast as the slowest one.
        rates[f"side_by_side_{n}procs"] = n * min(_run([_child(args, 1, False)] * n))
    base = rates["eager_1thread"]
    print(f"{'setting':<22}{'tokens/s':>10}{'vs 1 thread':>13}")
    for name, r in rates.items():
        print(f"{name:<22}{r:>10.0f}{r / base:>12.2f}x")
    ratios = {
        "two_threads_vs_one": round(rates["eager_2threads"] / base, 3),
        **({} if args.no_compile else {"compiled_vs_eager": round(rates["compiled_1thread"] / base, 3)}),
        "side_by_side_vs_two_threads": round(rates["side_by_side_2procs"] / rates["eager_2threads"], 3),
        "three_procs_vs_two": round(rates["side_by_side_3procs"] / rates["side_by_side_2procs"], 3),
    }
    print_json("cpu_parallelism", {"tokens_per_s": {k: round(v) for k, v in rates.items()}, "ratios": ratios}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
