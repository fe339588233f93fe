"""Padding waste of the stage-2 batching: length-bucketed batches vs random batches padded to their longest.

MixedTokenDataModule's training loader sorts windows of ``batch * megabatch_batches`` samples by each
sample's length before replacement (prompt + CoT + answer, so the number of latent chunks stays random
within a batch) before cutting them into batches (lm_latent/finetune/batching.py). This
iterates that real loader and, on the same dataset and epochs, a plain shuffled DataLoader with the
same collator (what a hand-rolled script does), and reports the share of pad positions in the padded
batches, for generated ProsQA problems and GSM8K train, at a few batch sizes, for the ``latent_ar``
mixing (k random per sample and epoch) and the ``cot`` baseline:

    .venv/bin/python bench/bench_padding.py
    .venv/bin/python bench/bench_padding.py --batch-sizes 8 32 128 --epochs 3

Also printed: the floor (all samples sorted by length, no randomness) and how many positions the model
processes with naive batches per position with bucketed ones (the compute padding costs). Codes are
random (lengths do not depend on their values). GSM8K uses the paper's math m set
{0, 72, 128, 160, 192, 224, 256}; ProsQA draws k uniformly over its 0..n_full whole chunks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from _common import GSM8K_TRAIN, add_thread_arg, bpe_tokenizer, generated_examples, machine_line, print_json, random_codes_file, set_threads

MATH_M_VALUES = [0, 72, 128, 160, 192, 224, 256]


def padded(loader) -> tuple[int, int]:
    """(padded positions, real tokens) over one pass of ``loader``."""
    total = real = 0
    for batch in loader:
        total += batch["attention_mask"].numel()
        real += int(batch["attention_mask"].sum())
    return total, real


def sorted_floor(lengths: list[int], batch_size: int) -> tuple[int, int]:
    """Positions and real tokens when all samples are sorted by length: the least padding possible."""
    ordered = sorted(lengths)
    total = sum(max(ordered[i : i + batch_size]) * len(ordered[i : i + batch_size]) for i in range(0, len(ordered), batch_size))
    return total, sum(lengths)


def measure(name: str, dataset: str, data: Path, examples, workdir: Path, args) -> list[dict]:
    from lm_latent.data.tokenization import tokenize_examples
    from lm_latent.finetune.batching import MixedCollator
    from lm_latent.finetune.datamodule import MixedTokenDataModule

    tok_dir = workdir / f"{name}_tokenizer"
    tokenized, _ = tokenize_examples(bpe_tokenizer(examples, tok_dir, args.vocab_size), examples)
    codes = random_codes_file(tokenized, args.num_codes, 16, workdir / f"{name}_codes.json")
    m_values = MATH_M_VALUES if dataset == "gsm8k" else None
    rows = []
    for strategy in ("latent_ar", "cot"):
        common = dict(codes_file=str(codes), strategy=strategy, m_values=m_values, seed=args.seed)
        train_set = None
        for bs in args.batch_sizes:
            dm = MixedTokenDataModule(dataset, str(data), str(tok_dir), global_batch_size=bs, **common)
            if train_set is None:
                train_set = dm.build_dataset("train", str(data))
            loader = dm.make_loader(train_set, train=True)
            naive_loader = torch.utils.data.DataLoader(
                train_set, batch_size=bs, shuffle=True, collate_fn=MixedCollator(dm.tokenizer.pad_token_id),
                generator=torch.Generator().manual_seed(args.seed),
            )
            sums = {"bucketed": [0, 0], "naive": [0, 0], "floor": [0, 0]}
            for epoch in range(args.epochs):
                loader.batch_sampler.set_epoch(epoch)
                train_set.set_epoch(epoch)  # the naive loader asks for plain indices: the dataset's epoch
                for key, (total, real) in (
                    ("bucketed", padded(loader)),
                    ("naive", padded(naive_loader)),
                    ("floor", sorted_floor(train_set.lengths(epoch), bs)),
                ):
                    sums[key][0] += total
                    sums[key][1] += real
            share = {k: 1 - real / total for k, (total, real) in sums.items()}
            assert len({real for _, real in sums.values()}) == 1, "every batching must see the same tokens"
            rows.append({
                "data": name, "strategy": strategy, "batch": bs, "examples": len(train_set),
                "mean_length": round(sums["floor"][1] / args.epochs / len(train_set), 1),
                "pad_share_naive": round(share["naive"], 4), "pad_share_bucketed": round(share["bucketed"], 4),
                "pad_share_floor": round(share["floor"], 4),
                "positions_naive_over_bucketed": round(sums["naive"][0] / sums["bucketed"][0], 3),
            })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prosqa-examples", type=int, default=4000, help="generated ProsQA problems")
    ap.add_argument("--gsm8k", type=Path, default=GSM8K_TRAIN, help="GSM8K train (skipped with a note if absent)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--epochs", type=int, default=2, help="epochs averaged (k is redrawn every epoch)")
    ap.add_argument("--vocab-size", type=int, default=1024, help="BPE trained on each dataset")
    ap.add_argument("--num-codes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    add_thread_arg(ap)
    args = ap.parse_args(argv)

    set_threads(args.threads)
    from lm_latent.data.readers import read_examples

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, examples = generated_examples("prosqa", args.prosqa_examples, work, args.seed)
        rows += measure("prosqa (generated)", "prosqa", data, examples, work, args)
        if args.gsm8k.is_file():
            rows += measure("gsm8k train", "gsm8k", args.gsm8k, read_examples("gsm8k", args.gsm8k), work, args)
        else:
            print(f"GSM8K train not found at {args.gsm8k}: measured ProsQA only", file=sys.stderr)

    print(machine_line())
    print(f"pad share = pad positions / all positions of the padded batches, over {args.epochs} epoch(s); "
          f"megabatch 64 batches (the DataModule's default)")
    head = f"{'data':<20}{'strategy':<11}{'batch':>6}{'mean len':>10}{'naive':>9}{'bucketed':>10}{'floor':>8}{'naive/bucketed positions':>26}"
    print(head)
    for r in rows:
        print(f"{r['data']:<20}{r['strategy']:<11}{r['batch']:>6}{r['mean_length']:>10.1f}{100 * r['pad_share_naive']:>8.1f}%"
              f"{100 * r['pad_share_bucketed']:>9.1f}%{100 * r['pad_share_floor']:>7.1f}%{r['positions_naive_over_bucketed']:>25.2f}x")
    ratio = statistics.median(r["positions_naive_over_bucketed"] for r in rows)
    print(f"median positions processed, naive / bucketed: {ratio:.2f}x")
    print_json("padding", {"rows": rows, "median_positions_naive_over_bucketed": ratio}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
