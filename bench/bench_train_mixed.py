"""Training throughput of MixedTokenLM under the Lightning Trainer vs a bare PyTorch loop.

Both train the same model (same initial weights) on the same mixed-token batches with the same
optimizer (MixedTokenLM's AdamW) and the same number of threads; the ratio Lightning / bare is
printed from one run:

    .venv/bin/python bench/bench_train_mixed.py                              # Llama 4 x 256, batch 16
    .venv/bin/python bench/bench_train_mixed.py --layers 2 --d-model 128 --steps 40

Batches come from MixedTokenDataModule (ProsQA-style problems from the project's generator, a BPE
tokenizer trained on them, ``latent_ar`` mixing, length bucketing) and are collated once up front, so
both sides time model work plus their own loop overhead (Lightning: hooks, ``self.log`` of
``train/loss``/``train/latent_share``, the optimizer closure), not data loading. The latent codes are
random (throughput does not depend on their values). Rounds alternate bare / Lightning and each side
reports its median; tokens/s counts every position of the padded batches, identical on both sides.
``--threads 1`` by default: on a shared 2-core machine a second intra-op thread mostly contends with
other processes and makes timings noise.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import add_thread_arg, bpe_tokenizer, generated_examples, lightning_fit_seconds, machine_line, print_json, random_codes_file, set_threads


def make_batches(workdir: Path, args) -> tuple[list[dict], str, int]:
    """Mixed-token batches from generated ProsQA problems; returns (batches, tokenizer dir, K)."""
    from lm_latent.data.tokenization import tokenize_examples
    from lm_latent.finetune.datamodule import MixedTokenDataModule

    data, examples = generated_examples("prosqa", args.examples, workdir)
    tok_dir = workdir / "tokenizer"
    tokenized, _ = tokenize_examples(bpe_tokenizer(examples, tok_dir, args.vocab_size), examples)
    random_codes_file(tokenized, args.num_codes, 16, workdir / "codes.json")
    dm = MixedTokenDataModule(
        "prosqa", str(data), str(tok_dir), codes_file=str(workdir / "codes.json"),
        global_batch_size=args.batch_size, seed=0,
    )
    dm.setup("fit")
    loader = dm.make_loader(dm.train_set, train=True)
    need = args.warmup + args.steps
    batches: list[dict] = []
    epoch = 0
    while len(batches) < need:
        loader.batch_sampler.set_epoch(epoch)
        batches += [{k: v for k, v in b.items() if k != "ids"} for b in loader]
        epoch += 1
    return batches[:need], str(tok_dir), args.num_codes


def bare_loop(module, batches: list[dict], warmup: int) -> float:
    """Seconds for batches[warmup:] with a plain forward/backward/step loop."""
    model = module.model
    model.train()
    opt = module.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    start = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    labels=batch["labels"], use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--vocab-size", type=int, default=1024, help="BPE trained on the problems")
    ap.add_argument("--num-codes", type=int, default=64)
    ap.add_argument("--examples", type=int, default=512, help="generated ProsQA problems")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per round")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/Lightning rounds")
    add_thread_arg(ap)
    args = ap.parse_args(argv)

    import lightning.pytorch as pl

    from lm_latent.finetune.module import MixedTokenLM

    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        batches, tok_dir, num_codes = make_batches(Path(tmp), args)
        spec = {
            "model_type": "llama", "hidden_size": args.d_model, "intermediate_size": 4 * args.d_model,
            "num_hidden_layers": args.layers, "num_attention_heads": max(1, args.d_model // 64),
            "num_key_value_heads": max(1, args.d_model // 64), "max_position_embeddings": 2048,
        }
        pl.seed_everything(0, verbose=False)
        base = MixedTokenLM(spec, tokenizer_dir=tok_dir, num_codes=num_codes, lr=3e-4, lr_schedule="constant")
        base.configure_model()  # built once here: both loops get copies of the same initial weights
    tokens = sum(b["input_ids"].numel() for b in batches[args.warmup :])
    real = sum(int(b["attention_mask"].sum()) for b in batches[args.warmup :])
    params = sum(p.numel() for p in base.parameters())
    print(machine_line())
    print(f"model: Llama {args.layers} x {args.d_model}, vocab {len(base.tokenizer)}, {params / 1e6:.1f} M params; "
          f"threads {torch.get_num_threads()}; batch {args.batch_size}; {args.steps} timed steps "
          f"({tokens} tokens, {100 * (1 - real / tokens):.1f}% padding) x {args.rounds} rounds")
    bare, light = [], []
    for r in range(args.rounds):
        bare.append(tokens / bare_loop(copy.deepcopy(base), batches, args.warmup))
        light.append(tokens / lightning_fit_seconds(copy.deepcopy(base), batches, args.warmup))
        print(f"round {r + 1}: bare {bare[-1]:,.0f} tok/s   lightning {light[-1]:,.0f} tok/s")
    b, l = statistics.median(bare), statistics.median(light)
    print(f"median: bare {b:,.0f} tok/s, lightning {l:,.0f} tok/s, ratio lightning/bare = {l / b:.3f}")
    print_json("train_mixed", {
        "bare_tokens_per_s": round(b, 1), "lightning_tokens_per_s": round(l, 1), "ratio_lightning_over_bare": round(l / b, 3),
        "rounds_bare": [round(x, 1) for x in bare], "rounds_lightning": [round(x, 1) for x in light],
    }, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
