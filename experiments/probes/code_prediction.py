"""How well does a fine-tuned latent model predict the codes of its own test problems?

The codebook gives every chunk of a test problem's chain a code (its "gold" code); the m-forced
evaluation sets (``callback_args: {force_latent: m}``) record which codes the model wrote. This
compares them position by position: a model that cannot predict the first code from the question
cannot use codes in place of text, whatever the codes hold.

    .venv/bin/python experiments/probes/code_prediction.py runs/prontoqa_h5_warm/seed0

It encodes the run's test split with the run's codebook (``lm-latent codebook encode``, into the run's
``probes/`` folder) and reads ``eval/latent_ar/<set>.json`` for every set whose results record
``force_latent`` > 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from lm_latent.codebook.codes_file import load_codes


def gold_codes(run: Path) -> Path:
    """The test split's codes under the run's own codebook (written once, then reused)."""
    out = run / "probes" / "test_codes.json"
    if not out.is_file():
        data = json.loads((run / "data" / "stage.json").read_text())["outputs"]
        # The tokenizer the run's training codes were made with (their provenance names it).
        tokenizer = json.loads((run / "codes" / "train.json").read_text())["provenance"]["tokenizer_dir"]
        checkpoint = json.loads((run / "codebook" / "stage.json").read_text())["outputs"]["checkpoint"]
        cmd = [sys.executable, "-m", "lm_latent.cli", "codebook", "encode", "--checkpoint", checkpoint,
               "--dataset", data["dataset"], "--data", data["files"]["test"], "--split", "test",
               "--tokenizer", tokenizer, "--cache-dir", str(run / "probes" / "cache"), "--out", str(out)]
        subprocess.run(cmd, check=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="an `lm-latent run` output folder with m-forced latent_ar sets")
    p.add_argument("--strategy", default="latent_ar")
    args = p.parse_args()
    gold = load_codes(gold_codes(args.run))
    for path in sorted((args.run / "eval" / args.strategy).glob("*.json")):
        r = json.loads(path.read_text())
        m = r.get("force_latent")
        if not m:
            continue
        rows = r["results"]
        hits = [sum(row["codes"][j] == gold[row["id"]][j] for row in rows) / len(rows) for j in range(m)]
        whole = sum(row["codes"][:m] == gold[row["id"]][:m] for row in rows) / len(rows)
        # What writing each position's most common gold code would score: the floor to beat.
        floor = [max(Counter(gold[row["id"]][j] for row in rows).values()) / len(rows) for j in range(m)]
        used = len(Counter(row["codes"][0] for row in rows))
        want = len(Counter(gold[row["id"]][0] for row in rows))
        print(f"{path.stem}: m={m}, {len(rows)} problems; code right at position 1..m: "
              + ", ".join(f"{100 * h:.1f}%" for h in hits)
              + " (most common gold code: " + ", ".join(f"{100 * f:.1f}%" for f in floor) + ")"
              + f"; all m right: {100 * whole:.1f}%; distinct first codes written {used} (gold: {want})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
