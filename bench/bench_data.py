"""Data loading + segment tokenization throughput on GSM8K train: batched vs one tokenizer call per segment.

The project reads a file with ``read_examples`` and tokenizes every segment (question, each step,
answer) of every example with ``tokenize_examples``, which makes one batched tokenizer call per
segment kind. A hand-rolled script typically calls the tokenizer once per segment of each example.
Both produce the same token ids (checked); the ratio of their throughputs is printed from one run:

    .venv/bin/python bench/bench_data.py                      # GSM8K train (7,473 examples)
    .venv/bin/python bench/bench_data.py --threads 2          # let the Rust tokenizer use 2 threads

The tokenizer is a byte-level BPE trained on the file first (not timed). Each measurement is repeated
``--repeats`` times and the median is reported. ``--threads`` sets torch's and the Rust tokenizer's
(Rayon) thread count; with the default 1 the gain comes from batching alone, not parallelism.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from _common import GSM8K_TRAIN, Stopwatch, add_thread_arg, bpe_tokenizer, machine_line, print_json, require_file, set_threads


def naive_tokenize(tokenizer, examples) -> list[tuple[list[int], list[list[int]], list[int]]]:
    """One tokenizer call per segment per example, as a hand-rolled loop does it."""
    from lm_latent.data.tokenization import answer_text, prompt_text, step_text

    eos = tokenizer.eos_token_id
    out = []
    for ex in examples:
        prompt = tokenizer(prompt_text(ex.question), add_special_tokens=False)["input_ids"]
        steps = [tokenizer(step_text(s), add_special_tokens=False)["input_ids"] for s in ex.steps]
        answer = tokenizer(answer_text(ex.answer), add_special_tokens=False)["input_ids"] + [eos]
        out.append((prompt, steps, answer))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=GSM8K_TRAIN, help="GSM8K-format JSON Lines file")
    ap.add_argument("--dataset", default="gsm8k", help="reader name for read_examples")
    ap.add_argument("--vocab-size", type=int, default=1024, help="BPE trained on the file (not timed)")
    ap.add_argument("--repeats", type=int, default=3, help="median over this many timings of each side")
    add_thread_arg(ap)
    args = ap.parse_args(argv)

    if not require_file(args.data, f"{args.dataset} file"):
        return 2
    set_threads(args.threads)  # before the tokenizers library starts its thread pool
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import tokenize_examples

    examples = read_examples(args.dataset, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        tok = bpe_tokenizer(examples, Path(tmp), args.vocab_size)
    tokenize_examples(tok, examples[:64])  # warm-up: first calls set up the tokenizer's caches
    naive_tokenize(tok, examples[:64])

    read_s, batched_s, naive_s, cpu_ratio = [], [], [], []
    for _ in range(args.repeats):
        with Stopwatch() as t:
            examples = read_examples(args.dataset, args.data)
        read_s.append(t.seconds)
        with Stopwatch() as tb:
            tokenized, _ = tokenize_examples(tok, examples)
        batched_s.append(tb.seconds)
        with Stopwatch() as t:
            naive = naive_tokenize(tok, examples)
        naive_s.append(t.seconds)
        cpu_ratio.append(t.cpu_seconds / tb.cpu_seconds)
    same = sum(
        list(t.prompt_ids) == p and [list(s) for s in t.step_ids] == s_ and list(t.answer_ids) == a
        for t, (p, s_, a) in zip(tokenized, naive)
    )
    n = len(examples)
    segments = sum(2 + len(ex.steps) for ex in examples)
    tokens = sum(len(t.prompt_ids) + len(t.cot_ids) + len(t.answer_ids) for t in tokenized)
    r, b, v = (statistics.median(x) for x in (read_s, batched_s, naive_s))

    print(machine_line())
    print(f"data: {n} {args.dataset} examples ({args.data}), {segments} segments, {tokens} tokens; "
          f"BPE vocab {len(tok)}; median of {args.repeats}")
    print(f"{'step':<34}{'seconds':>9}{'examples/s':>12}")
    print(f"{'read_examples':<34}{r:>9.3f}{n / r:>12,.0f}")
    print(f"{'tokenize_examples (batched)':<34}{b:>9.3f}{n / b:>12,.0f}")
    print(f"{'per-segment tokenizer calls':<34}{v:>9.3f}{n / v:>12,.0f}")
    print(f"{'read + tokenize_examples':<34}{r + b:>9.3f}{n / (r + b):>12,.0f}")
    print(f"{'read + per-segment calls':<34}{r + v:>9.3f}{n / (r + v):>12,.0f}")
    print(f"identical token ids (batched vs per-segment): {same}/{n}")
    print(f"speed-up tokenization batched / per-segment: {v / b:.2f}x wall time ({statistics.median(cpu_ratio):.2f}x "
          f"process CPU time); read + tokenize: {(r + v) / (r + b):.2f}x wall time")
    print_json("data", {
        "examples": n, "segments": segments, "tokens": tokens, "identical": same,
        "read_examples_per_s": round(n / r, 1), "tokenize_batched_examples_per_s": round(n / b, 1),
        "tokenize_naive_examples_per_s": round(n / v, 1), "read_and_tokenize_examples_per_s": round(n / (r + b), 1),
        "read_and_naive_examples_per_s": round(n / (r + v), 1),
        "speedup_tokenize": round(v / b, 2), "speedup_tokenize_cpu_time": round(statistics.median(cpu_ratio), 2), "speedup_read_and_tokenize": round((r + v) / (r + b), 2),
    }, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
