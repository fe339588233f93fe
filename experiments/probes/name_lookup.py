"""What a saved probe model (``logic_learning.py --save DIR``) picks at ProsQA's name-keyed decision.

Teacher-forced: for every question "Is Tom a X or Y?" the model reads the problem, the gold steps
before it and "Tom is a", and its most likely next token is classed as the right option, the wrong
option, another concept stated of Tom, or anything else. Two problem sets: the recall stage's
(``logic_learning.recall_rows``, scored per question position) and the smallest generated ProsQA
problems (one step, two people: the curriculum's first stage). RESULTS.md quotes it.

    .venv/bin/python experiments/probes/name_lookup.py /work/probes/prosqa_AF --people 8 --queries 8
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logic_learning import recall_rows  # noqa: E402

from lm_latent.data.generators import write_json  # noqa: E402
from lm_latent.data.generators.prosqa import ProsQAOptions, generate  # noqa: E402
from lm_latent.data.readers import read_examples  # noqa: E402
from lm_latent.data.tokenization import load_tokenizer, tokenize_examples  # noqa: E402

ASKED = re.compile(r"Is (\w+) a (\w+) or (\w+)\?")
STATED = re.compile(r"(\w+) is a (\w+)\.")


def classify(model, tok, rows: list[dict]) -> collections.Counter:
    """Counts of the next token's class at each question, in total and per question position."""
    with tempfile.TemporaryDirectory() as tmp:
        write_json(rows, Path(tmp) / "rows.json")
        tokenized = tokenize_examples(tok, read_examples("prosqa", Path(tmp) / "rows.json"))[0]
    counts = collections.Counter()
    for row, t in zip(rows, tokenized):
        facts = STATED.findall(row["question"])
        for k, (name, a, b) in enumerate(ASKED.findall(row["question"])):
            right = STATED.fullmatch(row["steps"][k]).group(2)
            prefix = "\n".join([*row["steps"][:k], f"{name} is a"])
            ids = list(t.prompt_ids) + tok(prefix, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                token = tok.convert_ids_to_tokens([int(model(torch.tensor([ids])).logits[0, -1].argmax())])[0]
            own = {c for n, c in facts if n == name}
            kind = ("right" if token == right else "wrong option" if token in (a, b)
                    else "another own concept" if token in own else "other")
            counts[kind] += 1
            counts[f"question {k + 1} right"] += kind == "right"
            counts[f"question {k + 1}"] += 1
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--people", type=int, default=8)
    p.add_argument("--queries", type=int, default=8)
    p.add_argument("--n", type=int, default=100, help="problems per set")
    args = p.parse_args()
    torch.set_num_threads(1)
    from transformers import LlamaForCausalLM

    tok = load_tokenizer(args.model_dir)
    model = LlamaForCausalLM.from_pretrained(args.model_dir).eval()
    sets = {
        f"recall ({args.people} people, {args.queries} questions)":
            recall_rows(args.n, 4242, people=args.people, queries=args.queries),
        "one step, two people": generate(args.n, 777, ProsQAOptions(min_nodes=4, max_nodes=6, min_steps=1, max_steps=1)),
    }
    for name, rows in sets.items():
        counts = classify(model, tok, rows)
        total = sum(counts[k] for k in ("right", "wrong option", "another own concept", "other"))
        print(f"{name}: {total} questions; " + ", ".join(
            f"{k} {counts[k] / total:.1%}" for k in ("right", "wrong option", "another own concept", "other")))
        positions = sorted({int(k.split()[1]) for k in counts if k.startswith("question ") and k.endswith("right")})
        if len(positions) > 1:
            print("  right by question position: " + ", ".join(
                f"{i}: {counts[f'question {i} right'] / counts[f'question {i}']:.0%}" for i in positions))


if __name__ == "__main__":
    main()
