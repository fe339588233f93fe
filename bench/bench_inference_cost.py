"""Inference cost of the latent model vs the CoT model on the same questions: tokens and wall time per problem.

The latent model replaces the first chunks of its chain of thought by one code each, so it generates
fewer tokens. Does its wall time fall as much? Every problem still pays for its prompt, and a batch
runs until its longest generation ends. Both models answer the same problems with the same greedy,
KV-cached, batched generation as the accuracy callbacks (``lm_latent.finetune.generation``), at each
of ``--batch-sizes``; printed per model: mean generated tokens (latent + delimiter + text), mean
latent tokens, seconds per problem, accuracy; then the latent / CoT ratio of tokens and of time:

    # two fine-tuned models of a finished `lm-latent run` (DIR/mixed/{latent_ar,cot}/checkpoints/last.ckpt),
    # on the run's first evaluation set
    .venv/bin/python bench/bench_inference_cost.py --run runs/default
    # no run: two UNTRAINED models of the default experiment's size, each forced to emit a given sequence
    .venv/bin/python bench/bench_inference_cost.py

Without ``--run`` nothing is trained: both models are random-weight models of the default experiment's
architecture (``mixed.model.lm`` of experiments/default.yaml; a BPE tokenizer trained on the problems,
64 latent codes), and a logits
processor forces each to emit, for every problem, exactly what it was fine-tuned to emit: the CoT model
the gold CoT + answer, the latent model ``<boLatent>`` + one code per full chunk of L = 16 CoT tokens
+ ``<eoLatent>`` + the remaining CoT text + answer (every full chunk replaced, i.e. what latent_ar
produces at its largest k). The forward passes are the same as real generation, so the timings are
real; accuracy is meaningless there and not shown. The output says which mode ran.
``--threads 1`` by default: on a shared 2-core machine a second thread mostly adds noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from _common import PRONTOQA_VALID, REPO, Stopwatch, add_thread_arg, machine_line, print_json, require_file, set_threads

DEFAULT_EXPERIMENT = REPO / "experiments" / "default.yaml"


def default_model_spec() -> dict:
    """The default experiment's stage-2 model spec (read, so the benchmark follows the experiment)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(DEFAULT_EXPERIMENT).mixed.model.lm, resolve=True)


# -- the two models ------------------------------------------------------------------------------
def load_run(run: Path, strategies: tuple[str, str]):
    """The fine-tuned MixedTokenLMs of a finished run, in eval mode, keyed by strategy."""
    from lm_latent.finetune.module import MixedTokenLM

    models = {}
    for strategy in strategies:
        ckpt = run / "mixed" / strategy / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: no '{strategy}' checkpoint in this run (did stage 2 finish?)")
        models[strategy] = MixedTokenLM.load_from_checkpoint(str(ckpt), map_location="cpu", weights_only=True).eval()
    return models


def run_eval_set(run: Path) -> tuple[str, Path, str, str, int]:
    """The run's first evaluation set: (name, file, reader name, task, max_new_tokens), resolved as the
    pipeline does."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(run / "config.yaml"), resolve=True)
    name, spec = next(iter(cfg["evaluation"]["sets"].items()))
    max_new = int(cfg["evaluation"].get("max_new_tokens", 128))
    file = spec["file"]
    if file.startswith("@"):
        file = json.loads((run / "data" / "stage.json").read_text())["outputs"]["files"][file[1:]]
    path = Path(file)
    if not path.is_absolute():  # relative to where `lm-latent run` was started: try here, then the repo
        path = next((p for p in (Path.cwd() / path, REPO / path) if p.is_file()), REPO / path).resolve()
    return name, path, spec.get("dataset", cfg["data"]["dataset"]), spec["task"], max_new


def untrained_models(examples, workdir: Path, args):
    """Two random-weight MixedTokenLMs (same size and tokenizer), keyed 'latent' and 'cot'."""
    import lightning.pytorch as pl

    from _common import bpe_tokenizer
    from lm_latent.finetune.module import MixedTokenLM

    bpe_tokenizer(examples, workdir, args.vocab_size)
    models = {}
    for i, name in enumerate(("latent", "cot")):
        pl.seed_everything(i, verbose=False)
        module = MixedTokenLM(default_model_spec(), tokenizer_dir=str(workdir), num_codes=args.num_codes)
        module.configure_model()
        models[name] = module.eval()
    return models


def forced_targets(module, examples, latent: bool, chunk_size: int) -> list[list[int]]:
    """What each model was fine-tuned to emit after the prompt (without the final EOS)."""
    from lm_latent.data.tokenization import tokenize_examples
    from lm_latent.mixing.sequences import build_sequence

    tokenized, _ = tokenize_examples(module.tokenizer, examples)
    out = []
    for t in tokenized:
        k = len(t.cot_ids) // chunk_size if latent else 0
        codes = [(i * 7) % module.latent_vocab.num_codes for i in range(k)]  # values do not matter for speed
        ids, _ = build_sequence(t, codes, k, module.latent_vocab, chunk_size)
        out.append(ids[len(t.prompt_ids) : -1])  # the continuation, EOS left to the processor
    return out


# -- generation -----------------------------------------------------------------------------------
class ForceTokens:
    """Logits processor: row r emits ``targets[r]`` token by token, then EOS (a stand-in for training)."""

    def __init__(self, targets: list[list[int]], prompt_width: int, eos: int) -> None:
        width = max(len(t) for t in targets) + 1
        self.table = torch.full((len(targets), width), eos, dtype=torch.long)
        for r, t in enumerate(targets):
            self.table[r, : len(t)] = torch.tensor(t, dtype=torch.long)
        self.prompt_width = prompt_width

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = min(input_ids.shape[1] - self.prompt_width, self.table.shape[1] - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(1, self.table[:, step : step + 1].to(scores.device), 0.0)
        return forced


@torch.no_grad()
def forced_generate(module, prompts: list[str], targets: list[list[int]], batch_size: int, max_new_tokens: int):
    """``lm_latent.finetune.generation.generate`` (same sorting, left padding, KV cache, greedy config)
    with each row's output forced to its target."""
    from transformers import LogitsProcessorList

    from lm_latent.finetune.generation import _generation_config, split_generated

    tok, hf = module.tokenizer, module.model
    config = _generation_config(tok, max_new_tokens, False, None)
    encoded = tok(prompts, add_special_tokens=False)["input_ids"]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in idx)
        input_ids = torch.full((len(idx), width), config.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            attention[row, width - len(encoded[i]) :] = 1
        processor = ForceTokens([targets[i] for i in idx], width, tok.eos_token_id)
        out = hf.generate(input_ids=input_ids, attention_mask=attention, generation_config=config,
                          logits_processor=LogitsProcessorList([processor]))
        for row, i in enumerate(idx):
            results[i] = split_generated(out[row, width:].tolist(), tok, module.latent_vocab)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished `lm-latent run` folder")
    ap.add_argument("--latent-strategy", default="latent_ar", help="with --run: the latent model's strategy")
    ap.add_argument("--cot-strategy", default="cot", help="with --run: the CoT baseline's strategy")
    ap.add_argument("--eval-file", type=Path, default=None,
                    help="problems (default: the run's first evaluation set; without --run, ProntoQA valid)")
    ap.add_argument("--dataset", default=None, help="reader name of --eval-file (default: the run's, or prontoqa)")
    ap.add_argument("--task", default=None, help="answer checker (default: the run's, or the dataset's)")
    ap.add_argument("--n", type=int, default=100, help="first n problems of the file")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[100, 1], help="the default experiment evaluates 100 per batch")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's evaluation setting, else 128")
    ap.add_argument("--vocab-size", type=int, default=512, help="without --run: BPE trained on the problems")
    ap.add_argument("--num-codes", type=int, default=64, help="without --run: latent codes added to the vocabulary")
    ap.add_argument("--chunk-size", type=int, default=16, help="without --run: L of the forced latent sequences")
    add_thread_arg(ap)
    args = ap.parse_args(argv)

    set_threads(args.threads)
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import prompt_text
    from lm_latent.evaluation import is_correct
    from lm_latent.finetune.generation import generate

    trained = args.run is not None
    if trained:
        if not (args.run / "config.yaml").is_file():
            print(f"{args.run}: not an `lm-latent run` folder (no config.yaml)", file=sys.stderr)
            return 2
        set_name, file, dataset, task, max_new = run_eval_set(args.run)
        file, dataset, task = args.eval_file or file, args.dataset or dataset, args.task or task
        args.max_new_tokens = args.max_new_tokens or max_new
    else:
        args.max_new_tokens = args.max_new_tokens or 128
        file, dataset = args.eval_file or PRONTOQA_VALID, args.dataset or "prontoqa"
        task = args.task or dataset
    if not require_file(file, "evaluation file"):
        return 2
    examples = read_examples(dataset, file)[: args.n]
    prompts = [prompt_text(e.question) for e in examples]

    with tempfile.TemporaryDirectory() as tmp:
        if trained:
            found = load_run(args.run, (args.latent_strategy, args.cot_strategy))
            models = {"latent": found[args.latent_strategy], "cot": found[args.cot_strategy]}
        else:
            models = untrained_models(examples, Path(tmp), args)
    targets = None if trained else {
        name: forced_targets(m, examples, name == "latent", args.chunk_size) for name, m in models.items()
    }

    def run_once(name: str, batch_size: int, n: int | None = None, max_new_tokens: int | None = None):
        m, max_new = models[name], max_new_tokens or args.max_new_tokens
        if trained:
            return generate(m.model, m.tokenizer, prompts[:n], m.latent_vocab, max_new_tokens=max_new,
                            batch_size=batch_size)
        return forced_generate(m, prompts[:n], targets[name][:n], batch_size, max_new)

    for name in models:  # warm-up (allocator, kernels)
        run_once(name, 2, 4)

    rows: dict[str, dict] = {}
    prompt_only: dict[int, float] = {}
    for bs in args.batch_sizes:
        with Stopwatch() as t:  # the prompts' share: the same batches, one new token each
            run_once("cot", bs, max_new_tokens=1)
        prompt_only[bs] = t.seconds
        for name in ("cot", "latent"):
            with Stopwatch() as t:
                gens = run_once(name, bs)
            n = len(gens)
            row = {
                "batch_size": bs, "seconds": round(t.seconds, 3), "seconds_per_problem": round(t.seconds / n, 5),
                "cpu_seconds": round(t.cpu_seconds, 3),
                "mean_tokens": round(sum(g.num_tokens for g in gens) / n, 2),
                "max_tokens": max(g.num_tokens for g in gens),
                "mean_latent_tokens": round(sum(g.num_latent for g in gens) / n, 2),
                "hit_max_new_tokens": sum(len(g.token_ids) >= args.max_new_tokens for g in gens),
            }
            if not trained:  # the processor must have produced exactly the intended sequences
                row["forced_exact"] = sum(g.token_ids == list(x) for g, x in zip(gens, targets[name]))
            if trained:
                row["accuracy"] = round(sum(is_correct(task, g.written, e.answer) for g, e in zip(gens, examples)) / n, 4)
            rows[f"{name}@{bs}"] = row

    tok = models["cot"].tokenizer
    prompt_lens = [len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"]]
    params = sum(p.numel() for p in models["cot"].model.parameters())
    print(machine_line())
    if trained:
        print(f"mode: TRAINED models of run {args.run} ({args.latent_strategy} vs {args.cot_strategy}), "
              f"free greedy generation, max_new_tokens {args.max_new_tokens}")
    else:
        print("mode: UNTRAINED random-weight models with FORCED outputs (no --run given): the CoT model emits the gold "
              f"CoT + answer, the latent model <boLatent> + one code per full {args.chunk_size}-token chunk + <eoLatent> "
              "+ remaining CoT + answer; timings are real forward passes, accuracy is not meaningful")
    print(f"model: {models['cot'].model.config.model_type} {models['cot'].model.config.num_hidden_layers} layers x "
          f"{models['cot'].model.config.hidden_size}, {params / 1e6:.2f} M params")
    print(f"problems: first {len(examples)} of {file} ({dataset}); prompt tokens mean "
          f"{sum(prompt_lens) / len(prompt_lens):.0f} (min {min(prompt_lens)}, max {max(prompt_lens)})")
    print(f"{'model':<8}{'batch':>6}{'gen tokens':>12}{'max':>6}{'latent':>8}{'s/problem':>11}{'accuracy' if trained else 'forced output':>15}{'hit max':>9}")
    ratios = {}
    for bs in args.batch_sizes:
        for name in ("cot", "latent"):
            r = rows[f"{name}@{bs}"]
            acc = f"{r['accuracy']:.3f}" if trained else f"{r['forced_exact']}/{len(examples)} exact"
            print(f"{name:<8}{bs:>6}{r['mean_tokens']:>12.1f}{r['max_tokens']:>6}{r['mean_latent_tokens']:>8.1f}"
                  f"{r['seconds_per_problem']:>11.4f}{acc:>15}{r['hit_max_new_tokens']:>9}")
        c, l_ = rows[f"cot@{bs}"], rows[f"latent@{bs}"]
        ratios[bs] = {
            "tokens_latent_over_cot": round(l_["mean_tokens"] / max(c["mean_tokens"], 1e-9), 3),
            "time_latent_over_cot": round(l_["seconds"] / c["seconds"], 3),
            "cpu_time_latent_over_cot": round(l_["cpu_seconds"] / c["cpu_seconds"], 3),
            "prompt_only_seconds": round(prompt_only[bs], 3),
            "prompt_share_cot": round(prompt_only[bs] / c["seconds"], 3),
            "prompt_share_latent": round(prompt_only[bs] / l_["seconds"], 3),
        }
    for bs, r in ratios.items():
        print(f"batch {bs}: latent / CoT generated tokens = {r['tokens_latent_over_cot']:.3f}, "
              f"wall time = {r['time_latent_over_cot']:.3f} (process CPU time {r['cpu_time_latent_over_cot']:.3f}); "
              f"reading the prompts + 1 token takes {r['prompt_only_seconds']:.2f} s = {100 * r['prompt_share_cot']:.0f}% "
              f"of the CoT model's time, {100 * r['prompt_share_latent']:.0f}% of the latent model's")
    own = {}
    if trained and (args.run / "results.json").is_file() and not args.eval_file:
        runs = json.loads((args.run / "results.json").read_text())["runs"]
        own = {s: runs[s][set_name] for s in (args.latent_strategy, args.cot_strategy) if set_name in runs.get(s, {})}
        for s, r in own.items():
            print(f"the run's own evaluation ({args.run / 'results.json'}, {set_name}, all {r['n']} problems): "
                  f"{s}: accuracy {r['accuracy']:.3f}, {r['mean_generated_tokens']:.1f} generated tokens, "
                  f"{r['seconds_per_example']:.4f} s/problem")
    print_json("inference_cost", {
        "mode": "trained_run" if trained else "untrained_forced", "n": len(examples), "file": str(file),
        "rows": rows, "ratios": {str(k): v for k, v in ratios.items()}, "run_results": own,
    }, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
