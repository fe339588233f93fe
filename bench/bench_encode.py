"""Codebook encoding throughput on GSM8K train: ``encode_examples`` (all chunks batched) vs one example at a time.

Stage 2 needs one code per CoT chunk of every training example. ``lm_latent.codebook.encode.encode_examples``
tokenizes all examples with batched calls, then encodes every chunk of every example together in
batches of ``--batch-size`` chunks. A hand-rolled script typically loops over examples: tokenize its
steps, chunk, run the encoder and quantizer on that example's chunks. Both give the same codes
(checked); chunks/s of each and their ratio are printed from one run:

    .venv/bin/python bench/bench_encode.py                        # GSM8K train, the default experiment's codebook sizes
    .venv/bin/python bench/bench_encode.py --d-model 128 --encoder-layers 2 --n 2000

The codebook is untrained except for its k-means initialisation on ``--kmeans-chunks`` encoder outputs
(speed does not depend on the weights; the initialisation makes the codes spread over the codebook as
after training). The tokenizer is a byte-level BPE trained on the file; neither is timed. Each side is
timed ``--repeats`` times, median reported; ``--threads`` sets torch's and the tokenizer's threads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from _common import GSM8K_TRAIN, Stopwatch, add_codebook_args, add_thread_arg, bpe_tokenizer, machine_line, print_json, require_file, set_threads


@torch.inference_mode()
def naive_encode(model, tokenizer, examples) -> dict[str, list[int]]:
    """Per example: tokenize its steps, cut its CoT into chunks, encode + quantize them, next example."""
    from lm_latent.codebook.datamodule import pad_batch
    from lm_latent.data.tokenization import step_text

    net, L, pad = model.net, model.hparams.chunk_size, model.hparams.pad_id
    out: dict[str, list[int]] = {}
    for ex in examples:
        cot = [t for s in ex.steps for t in tokenizer(step_text(s), add_special_tokens=False)["input_ids"]]
        chunks = [cot[i : i + L] for i in range(0, len(cot), L)]
        if not chunks:
            out[ex.id] = []
            continue
        ids, mask = pad_batch(chunks, pad, L)
        out[ex.id] = net.quantizer(net.encode(ids, mask)).codes.tolist()
    return out


def build_codebook(tok_dir: Path, tokenizer, examples, args):
    """An untrained codebook autoencoder whose codebook is k-means-initialised on real chunks."""
    from lm_latent.codebook.datamodule import pad_batch
    from lm_latent.codebook.module import CodebookAutoencoder
    from lm_latent.data.tokenization import tokenize_examples

    torch.manual_seed(0)
    model = CodebookAutoencoder(
        str(tok_dir), chunk_size=args.chunk_size, codebook_size=args.codebook_size, code_dim=args.code_dim,
        d_model=args.d_model, n_heads=args.n_heads, encoder_layers=args.encoder_layers, prompt_layers=1,
        decoder_layers=1,
    )
    chunks = [list(c) for t in tokenize_examples(tokenizer, examples[: args.kmeans_chunks])[0]
              for c in t.chunks(args.chunk_size)][: args.kmeans_chunks]
    with torch.no_grad():
        ids, mask = pad_batch(chunks, model.hparams.pad_id, args.chunk_size)
        model.net.quantizer.initialize(model.net.encode(ids, mask))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=GSM8K_TRAIN, help="GSM8K-format JSON Lines file")
    ap.add_argument("--dataset", default="gsm8k", help="reader name for read_examples")
    ap.add_argument("--n", type=int, default=None, help="first n examples (default: all)")
    ap.add_argument("--vocab-size", type=int, default=1024, help="BPE trained on the file (not timed)")
    add_codebook_args(ap)
    ap.add_argument("--kmeans-chunks", type=int, default=4096, help="chunks the codebook is initialised on")
    ap.add_argument("--batch-size", type=int, default=4096, help="chunks per forward in encode_examples (its default)")
    ap.add_argument("--repeats", type=int, default=3, help="median over this many timings of each side")
    add_thread_arg(ap)
    args = ap.parse_args(argv)

    if not require_file(args.data, f"{args.dataset} file"):
        return 2
    set_threads(args.threads)
    from lm_latent.codebook.encode import encode_examples
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import tokenize_examples

    examples = read_examples(args.dataset, args.data)[: args.n]
    with tempfile.TemporaryDirectory() as tmp:
        tok = bpe_tokenizer(examples, Path(tmp), args.vocab_size)
        model = build_codebook(Path(tmp), tok, examples, args)
    encode_examples(model, tok, examples[:32], batch_size=args.batch_size)  # warm-up
    naive_encode(model, tok, examples[:32])

    batched_s, naive_s, tokenize_s, cpu_ratio = [], [], [], []
    for _ in range(args.repeats):
        with Stopwatch() as tb:
            batched = encode_examples(model, tok, examples, batch_size=args.batch_size)
        batched_s.append(tb.seconds)
        with Stopwatch() as t:  # the tokenization encode_examples starts with, on its own
            tokenize_examples(tok, examples)
        tokenize_s.append(t.seconds)
        with Stopwatch() as t:
            naive = naive_encode(model, tok, examples)
        naive_s.append(t.seconds)
        cpu_ratio.append(t.cpu_seconds / tb.cpu_seconds)
    same = sum(batched[ex.id] == naive[ex.id] for ex in examples)
    chunks = sum(len(c) for c in batched.values())
    used = len({c for codes in batched.values() for c in codes})
    b, v, tk = statistics.median(batched_s), statistics.median(naive_s), statistics.median(tokenize_s)
    params = sum(p.numel() for p in model.net.chunk_encoder.parameters())

    print(machine_line())
    print(f"codebook: chunk encoder d {args.d_model} x {args.encoder_layers} layer(s) ({params / 1e6:.2f} M params), "
          f"K {args.codebook_size}, L {args.chunk_size}; k-means-initialised, otherwise untrained; "
          f"{used}/{args.codebook_size} codes used")
    print(f"data: {len(examples)} {args.dataset} examples ({args.data.name}), {chunks} chunks; median of {args.repeats}")
    print(f"{'mode':<40}{'seconds':>9}{'chunks/s':>11}{'examples/s':>12}")
    for name, s in ((f"encode_examples (batch {args.batch_size} chunks)", b), ("one example at a time", v)):
        print(f"{name:<40}{s:>9.2f}{chunks / s:>11,.0f}{len(examples) / s:>12,.0f}")
    print(f"(encode_examples starts with tokenize_examples on all segments; timed on its own: {tk:.2f} s)")
    print(f"identical codes (batched vs one at a time): {same}/{len(examples)} examples")
    print(f"speed-up encode_examples / one-at-a-time: {v / b:.1f}x wall time "
          f"({statistics.median(cpu_ratio):.1f}x in process CPU time, which other jobs' load moves less)")
    print_json("encode", {
        "examples": len(examples), "chunks": chunks, "identical_examples": same,
        "batched_chunks_per_s": round(chunks / b, 1), "naive_chunks_per_s": round(chunks / v, 1),
        "speedup": round(v / b, 2), "speedup_cpu_time": round(statistics.median(cpu_ratio), 2), "seconds_tokenize_examples": round(tk, 3), "seconds_batched": [round(x, 3) for x in batched_s],
        "seconds_naive": [round(x, 3) for x in naive_s],
    }, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
