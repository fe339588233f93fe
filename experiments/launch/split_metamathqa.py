#!/usr/bin/env python
"""Split MetaMathQA into training rows and a small held-out validation file.

    python experiments/launch/split_metamathqa.py MetaMathQA-395K.json --out-dir /data/MetaMathQA [--val 1000] [--seed 0]

MetaMathQA has no validation split, but the math experiments need one: it gives the codebook its
held-out metrics, stage 2 its validation loss and mid-epoch checkpoints (Lightning saves after each
validation), and ``mixed test`` a data loader to run the evaluation callbacks over. The held-out rows
are a seeded uniform sample (the file is ordered by source type, so its tail would be one type only);
both outputs keep the rows unchanged and in their original order. Writes
``<out-dir>/metamathqa_train.json`` and ``<out-dir>/metamathqa_val.json`` (JSON arrays), which is where
``experiments/paper/base/math_llama.yaml`` looks (``METAMATHQA_DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

FIELDS = ("query", "response")


def read_rows(path: Path) -> list[dict]:
    """The rows of a JSON array or JSON Lines file; each must be an object with ``query`` and ``response``."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows = json.loads(text)
        where = "record {}"  # 0-based, as the project's readers name JSON array records
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        where = "line {}"
    for i, row in enumerate(rows):
        missing = [f for f in FIELDS if not isinstance(row, dict) or not isinstance(row.get(f), str)]
        if missing:
            loc = where.format(i if where.startswith("record") else i + 1)
            raise ValueError(f"{path}: {loc}: missing or non-string field(s) {missing}; not a MetaMathQA file")
    return rows


def split(rows: list[dict], num_val: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, val): ``num_val`` rows drawn uniformly with ``seed``; both keep the original order."""
    if not 0 < num_val < len(rows):
        raise ValueError(f"--val must be between 1 and {len(rows) - 1} for {len(rows)} rows, got {num_val}")
    held = set(random.Random(seed).sample(range(len(rows)), num_val))
    train = [r for i, r in enumerate(rows) if i not in held]
    val = [r for i, r in enumerate(rows) if i in held]
    return train, val


def write_json(rows: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(rows, f, ensure_ascii=False)
    os.replace(tmp, path)  # never leave half a file where a run would read it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="MetaMathQA-395K.json (a JSON array) or a JSON Lines copy")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--val", type=int, default=1000, help="held-out rows (default: 1000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        train, val = split(read_rows(args.source), args.val, args.seed)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(train, args.out_dir / "metamathqa_train.json")
    write_json(val, args.out_dir / "metamathqa_val.json")
    print(f"{len(train)} training rows -> {args.out_dir / 'metamathqa_train.json'}")
    print(f"{len(val)} held-out rows -> {args.out_dir / 'metamathqa_val.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
