"""Why a latent model writes as many codes as it does: the next-token distribution where it decides
between another code and leaving the latent run.

After ``<boLatent>`` and j codes the model's next token is either one more code (the codebook's K
tokens share that mass) or ``<eoLatent>``. Two causes can make it stop early: training that rarely
had more codes there, or greedy decoding, which compares single tokens and so leaves the run when
``P(<eoLatent>)`` beats the top code even if the codes together are more likely. This probe replays
each problem's own prefix (the question, then the codes the model wrote in an evaluation file) and
reports, at each decision, the mass on ``<eoLatent>``, on all codes together and on the top code, and
how often each rule would go on. It reads a ``mixed`` checkpoint and an evaluation file
(``eval/<strategy>/<set>.json``) written from it::

    python experiments/probes/latent_decision.py --checkpoint runs/X/mixed/latent_ar/checkpoints/last.ckpt \\
        --eval runs/X/eval/latent_ar/forced_m2.json

With an evaluation that forced m codes (``force_latent``), every problem has m decisions to replay;
with a free one, as many as the model took.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from lm_latent.data.tokenization import prompt_text
from lm_latent.finetune.export import export_checkpoint, load_exported


@torch.no_grad()
def decisions(model, tokenizer, vocab, question: str, codes: list[int]) -> list[dict[str, float]]:
    """The masses at each point of the latent run: after ``<boLatent>`` and 1, 2, ... of ``codes``."""
    prompt = tokenizer(prompt_text(question), add_special_tokens=False)["input_ids"]
    ids = prompt + [vocab.bo_id] + [vocab.code_to_id(c) for c in codes]
    probs = model(torch.tensor([ids])).logits[0].float().softmax(-1)
    out = []
    for j in range(1, len(codes) + 1):  # the position after j codes decides code j + 1 or <eoLatent>
        p = probs[len(prompt) + j]
        code_mass = p[vocab.code_ids]
        out.append({"codes_written": j, "eo": p[vocab.eo_id].item(), "codes": code_mass.sum().item(),
                    "top_code": code_mass.max().item()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a mixed-stage checkpoint (last.ckpt)")
    parser.add_argument("--eval", required=True, help="its per-example evaluation file (eval/<strategy>/<set>.json)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model, tokenizer, vocab = load_exported(export_checkpoint(args.checkpoint, Path(tmp) / "hf"))
    model.eval()
    rows = json.loads(Path(args.eval).read_text())["results"]
    by_depth: dict[int, list[dict]] = {}
    for row in rows:
        for d in decisions(model, tokenizer, vocab, row["question"], row["codes"]):
            by_depth.setdefault(d["codes_written"], []).append(d)
    print(f"{args.eval}: {len(rows)} problems")
    print("| after codes | decisions | P(<eoLatent>) | P(all codes) | P(top code) | greedy goes on | all codes beat <eoLatent> |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for j, ds in sorted(by_depth.items()):
        mean = {k: statistics.fmean(d[k] for d in ds) for k in ("eo", "codes", "top_code")}
        greedy_on = sum(d["top_code"] > d["eo"] for d in ds)
        mass_on = sum(d["codes"] > d["eo"] for d in ds)
        print(f"| {j} | {len(ds)} | {mean['eo']:.3f} | {mean['codes']:.3f} | {mean['top_code']:.3f} | "
              f"{greedy_on} | {mass_on} |")


if __name__ == "__main__":
    main()
