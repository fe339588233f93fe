"""The on-disk table of latent codes: stage 1 writes it, stage 2 reads it.

A JSON file ``{"num_codes": K, "chunk_size": L, "provenance": {...}, "codes": {example_id: [c_1, ...]}}``
where ``codes[id]`` holds one code per CoT chunk, left to right; the last chunk may be shorter than L
(stage 2 only replaces whole chunks). Written atomically so a kill never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class CodeTable:
    num_codes: int
    chunk_size: int
    codes: dict[str, list[int]]
    provenance: dict = field(default_factory=dict)

    def __getitem__(self, example_id: str) -> list[int]:
        try:
            return self.codes[example_id]
        except KeyError:
            raise KeyError(f"no latent codes for example id '{example_id}'") from None


def save_codes(path: str | Path, table: CodeTable) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    payload = {
        "num_codes": table.num_codes,
        "chunk_size": table.chunk_size,
        "provenance": table.provenance,
        "codes": table.codes,
    }
    with open(tmp, "w") as f:
        json.dump(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_codes(path: str | Path) -> CodeTable:
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"latent code file not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a latent code file (invalid JSON at line {e.lineno}: {e.msg})") from None
    for key in ("num_codes", "chunk_size", "codes"):
        if key not in payload:
            raise ValueError(f"{path}: not a latent code file (missing field '{key}')")
    K = int(payload["num_codes"])
    for ex_id, codes in payload["codes"].items():
        if any(not (0 <= c < K) for c in codes):
            raise ValueError(f"{path}: codes of example '{ex_id}' fall outside the codebook size {K}")
    return CodeTable(K, int(payload["chunk_size"]), payload["codes"], payload.get("provenance", {}))
