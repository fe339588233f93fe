"""Batched, KV-cached evaluation vs batch-1 generation on 256 ProsQA problems (same model, same settings).

Coconut evaluated one example at a time; the accuracy callbacks generate in batches (left-padded,
prompts sorted by length, KV cache). This measures both on the same problems with the same greedy
decoding and prints the speed-up from one run:

    .venv/bin/python bench/bench_eval_batched.py                       # tiny Llama 2 x 64
    .venv/bin/python bench/bench_eval_batched.py --layers 4 --d-model 256   # stack.md's small model

The model is randomly initialised (speed does not depend on the weights; a random model rarely emits
EOS, so both modes generate close to ``--max-new-tokens`` per problem). The ProsQA valid split has
300 problems: the first ``--n`` are used (repeated if more are asked for). ``--threads 1`` by default:
on a shared 2-core machine a second intra-op thread mostly contends with other processes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from _common import PROSQA_VALID as DEFAULT_DATA
from _common import add_thread_arg, machine_line, print_json, require_file, set_threads


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ProsQA file (Coconut format)")
    ap.add_argument("--n", type=int, default=256, help="number of problems")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--vocab-size", type=int, default=1024, help="BPE trained on the problems")
    ap.add_argument("--num-codes", type=int, default=64, help="latent codes added to the vocabulary")
    ap.add_argument("--batch-size", type=int, default=64, help="batched mode's batch size (the callbacks' default)")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="the callbacks' default")
    add_thread_arg(ap)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from transformers import LlamaConfig, LlamaForCausalLM

    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import full_text, load_tokenizer, prompt_text, train_tokenizer
    from lm_latent.evaluation import is_correct
    from lm_latent.finetune.generation import generate
    from lm_latent.mixing.tokens import add_latent_tokens

    if not require_file(args.data, "ProsQA file"):
        return 2
    set_threads(args.threads)
    pool = read_examples("prosqa", args.data)
    examples = [pool[i % len(pool)] for i in range(args.n)]

    with tempfile.TemporaryDirectory() as tmp:
        train_tokenizer([full_text(e) for e in pool], tmp, vocab_size=args.vocab_size)
        tok = load_tokenizer(tmp)
    latent_vocab = add_latent_tokens(tok, args.num_codes)
    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=args.d_model, intermediate_size=4 * args.d_model,
        num_hidden_layers=args.layers, num_attention_heads=max(1, args.d_model // 64) * 4,
        num_key_value_heads=max(1, args.d_model // 64) * 4, max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )
    model = LlamaForCausalLM(config).eval()
    prompts = [prompt_text(e.question) for e in examples]
    prompt_lens = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    settings = dict(max_new_tokens=args.max_new_tokens, do_sample=False)
    generate(model, tok, prompts[:4], latent_vocab, batch_size=2, **settings)  # warm-up (allocator, kernels)

    def timed(batch_size: int):
        start = time.perf_counter()
        gens = generate(model, tok, prompts, latent_vocab, batch_size=batch_size, **settings)
        right = [is_correct("prosqa", g.written, e.answer) for g, e in zip(gens, examples)]
        return time.perf_counter() - start, gens, right

    t_batched, g_batched, r_batched = timed(args.batch_size)
    t_single, g_single, r_single = timed(1)

    params = sum(p.numel() for p in model.parameters())
    print(machine_line())
    print(f"model: Llama {args.layers} layers x d {args.d_model}, vocab {len(tok)}, {params / 1e6:.2f} M params; "
          f"threads {args.threads}; greedy, max_new_tokens {args.max_new_tokens}")
    print(f"problems: {args.n} ProsQA ({args.data.name}), prompt tokens mean {sum(prompt_lens) / len(prompt_lens):.0f} "
          f"(min {min(prompt_lens)}, max {max(prompt_lens)})")
    rows = {}
    print(f"{'mode':<12}{'seconds':>10}{'gen tokens':>12}{'tok/s':>10}{'problems/s':>12}{'accuracy':>10}")
    for name, t, gens, right in (
        (f"batch {args.batch_size}", t_batched, g_batched, r_batched),
        ("batch 1", t_single, g_single, r_single),
    ):
        n_tok = sum(len(g.token_ids) for g in gens)
        rows[name] = {"seconds": round(t, 3), "generated_tokens": n_tok, "tokens_per_s": round(n_tok / t, 1),
                      "accuracy": sum(right) / len(right)}
        print(f"{name:<12}{t:>10.2f}{n_tok:>12}{n_tok / t:>10.0f}{len(gens) / t:>12.1f}{sum(right) / len(right):>10.3f}")
    same = sum(a.token_ids == b.token_ids for a, b in zip(g_batched, g_single))
    print(f"identical generations (batched vs batch 1): {same}/{args.n}")
    print(f"speed-up batched / batch-1: {t_single / t_batched:.1f}x")
    print_json("eval_batched", {
        "modes": rows, "identical_generations": same, "n": args.n, "speedup_batched_over_batch1": round(t_single / t_batched, 2),
    }, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
