"""Training throughput of CodebookAutoencoder (stage 1) under the Lightning Trainer vs a bare PyTorch loop.

Both train the same ``ChunkAutoencoder`` (same initial weights, same k-means-initialised codebook) on the
same chunk batches with the same optimizer (the module's AdamW) and loss (reconstruction cross entropy
+ commitment), in the same number of threads; the ratio Lightning / bare is printed from one run:

    .venv/bin/python bench/bench_train_codebook.py                  # the default experiment's codebook sizes
    .venv/bin/python bench/bench_train_codebook.py --d-model 128 --encoder-layers 2 --prompt-layers 2

Batches come from CodebookDataModule (ProsQA-style problems from the project's generator, a BPE
tokenizer trained on them; one item per example with all its chunks, each prompt encoded once) and are
collated up front, so both sides time model work plus their own loop overhead (Lightning: hooks, the
module's per-step metrics and ``self.log`` calls, code-usage counting, the optimizer closure), not data
loading. Rounds alternate bare / Lightning and each side reports its median; chunks/s counts real
(non-padding) chunks, identical on both sides. ``--threads 1`` by default: on a shared 2-core machine a
second intra-op thread mostly contends with other processes.
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
import torch.nn.functional as F

from _common import add_codebook_args, add_thread_arg, bpe_tokenizer, generated_examples, lightning_fit_seconds, machine_line, print_json, set_threads


def make_batches(workdir: Path, args) -> tuple[list[dict], str]:
    """Collated stage-1 batches (warm-up + timed steps) and the tokenizer directory."""
    from lm_latent.codebook.datamodule import CodebookDataModule

    data, examples = generated_examples(args.generator, args.examples, workdir)
    tok_dir = workdir / "tokenizer"
    bpe_tokenizer(examples, tok_dir, args.vocab_size)
    dm = CodebookDataModule(args.generator, str(data), str(tok_dir), chunk_size=args.chunk_size,
                            global_batch_size=args.batch_size, seed=0)
    dm.setup("fit")
    need = args.warmup + args.steps
    batches: list[dict] = []
    torch.manual_seed(0)  # the loader's shuffle
    while len(batches) < need:
        batches += [{k: v for k, v in b.items() if k != "index"} for b in dm.train_dataloader()]
    return batches[:need], str(tok_dir)


def build_module(tok_dir: str, batches: list[dict], args):
    """The module with its codebook k-means-initialised once, so every copy starts from the same state
    (Lightning's ``on_train_start`` then skips its own initialisation, and the bare loop needs none)."""
    import lightning.pytorch as pl

    from lm_latent.codebook.module import CodebookAutoencoder

    pl.seed_everything(0, verbose=False)
    module = CodebookAutoencoder(
        tok_dir, chunk_size=args.chunk_size, codebook_size=args.codebook_size, code_dim=args.code_dim,
        d_model=args.d_model, n_heads=args.n_heads, encoder_layers=args.encoder_layers,
        prompt_layers=args.prompt_layers, decoder_layers=args.decoder_layers, ema_decay=0.9,
        dead_code_threshold=0.01, lr=2e-3,
    )
    with torch.no_grad():
        vectors = torch.cat([module.net.encode(b["chunk_ids"], b["chunk_mask"])[b["valid"]] for b in batches])
    module.net.quantizer.initialize(vectors)
    return module


def bare_loop(module, batches: list[dict], warmup: int) -> float:
    """Seconds for batches[warmup:] with a plain forward / loss / backward / step loop over ``module.net``."""
    from lm_latent.codebook.module import chunk_targets

    net, eos = module.net, module.eos_id
    net.train()
    opt = module.configure_optimizers()
    start = 0.0
    for i, b in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        out = net(b["prompt_ids"], b["prompt_mask"], b["chunk_ids"], b["chunk_mask"], b["chunk_pos"], b["chunk_example"])
        targets, counted = chunk_targets(b["chunk_ids"], b["chunk_mask"], eos)
        counted = counted & b["valid"].unsqueeze(1)
        loss = F.cross_entropy(out.logits[counted], targets[counted]) + out.commit_loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--generator", choices=("prosqa", "prontoqa"), default="prosqa")
    ap.add_argument("--examples", type=int, default=1024, help="generated problems")
    ap.add_argument("--vocab-size", type=int, default=512, help="BPE trained on the problems")
    add_codebook_args(ap)
    ap.add_argument("--prompt-layers", type=int, default=1)
    ap.add_argument("--decoder-layers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32, help="examples (each with all its chunks) per step")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps per round")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating bare/Lightning rounds")
    add_thread_arg(ap)
    args = ap.parse_args(argv)

    set_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        batches, tok_dir = make_batches(Path(tmp), args)
        base = build_module(tok_dir, batches, args)
    timed = batches[args.warmup :]
    chunks = sum(int(b["valid"].sum()) for b in timed)
    examples = sum(int(b["prompt_ids"].shape[0]) for b in timed)
    prompt_tokens = sum(int(b["prompt_mask"].sum()) for b in timed)
    params = sum(p.numel() for p in base.net.parameters())
    print(machine_line())
    print(f"model: ChunkAutoencoder d {args.d_model}, layers enc/prompt/dec {args.encoder_layers}/"
          f"{args.prompt_layers}/{args.decoder_layers}, K {args.codebook_size}, vocab {base.hparams.vocab_size}, "
          f"{params / 1e6:.2f} M params; batch {args.batch_size} examples ({args.generator}); {args.steps} timed "
          f"steps = {examples} examples, {chunks} chunks, {prompt_tokens} prompt tokens; x {args.rounds} rounds")
    bare, light = [], []
    for r in range(args.rounds):
        bare.append(chunks / bare_loop(copy.deepcopy(base), batches, args.warmup))
        light.append(chunks / lightning_fit_seconds(copy.deepcopy(base), batches, args.warmup))
        print(f"round {r + 1}: bare {bare[-1]:,.0f} chunks/s   lightning {light[-1]:,.0f} chunks/s")
    b, l = statistics.median(bare), statistics.median(light)
    per_chunk = examples / chunks
    print(f"median: bare {b:,.0f} chunks/s ({b * per_chunk:,.1f} examples/s), lightning {l:,.0f} chunks/s "
          f"({l * per_chunk:,.1f} examples/s), ratio lightning/bare = {l / b:.3f}")
    print_json("train_codebook", {
        "bare_chunks_per_s": round(b, 1), "lightning_chunks_per_s": round(l, 1),
        "bare_examples_per_s": round(b * per_chunk, 2), "lightning_examples_per_s": round(l * per_chunk, 2),
        "ratio_lightning_over_bare": round(l / b, 3),
        "rounds_bare": [round(x, 1) for x in bare], "rounds_lightning": [round(x, 1) for x in light],
    }, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
