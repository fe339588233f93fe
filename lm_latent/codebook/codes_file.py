"""The on-disk table of latent codes: stage 1 writes it, stage 2 reads it.

A JSON file ``{"num_codes": K, "chunk_size": L, "provenance": {...}, "codes": {example_id: [c_1, ...]}}``
where ``codes[id]`` holds one code per CoT chunk, left to right; the last chunk may be shorter than L
(stage 2 only replaces whole chunks). Written atomically so a kill never leaves half a file.

The provenance records what the codes were encoded from, among others ``data_file`` (its path),
``data_sha256`` (its content) and ``split`` (``train``/``val``/``test``, when the encoder was told).
Codes are looked up by example id and ids repeat across a dataset's splits (``prosqa:0`` is the first
example of every file), so stage 2 checks with :func:`check_codes_source` that a table was encoded
from the very file it is used with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lm_latent.data.errors import DataError
from lm_latent.digests import file_digest

SPLITS: tuple[str, ...] = ("train", "val", "test")
# Where stage 2 takes each split's codes file from (MixedTokenDataModule).
_CONFIG_KEY = {"train": "data.codes_file", "val": "data.val_codes_file", "test": "data.test_codes_file"}


@dataclass(frozen=True)
class CodeTable:
    num_codes: int
    chunk_size: int
    codes: dict[str, list[int]]
    provenance: dict = field(default_factory=dict)

    @property
    def data_file(self) -> str | None:
        """The data file the codes were encoded from (None when the table does not record it)."""
        return self.provenance.get("data_file")

    @property
    def data_sha256(self) -> str | None:
        """Content digest of that data file (None when the table does not record it)."""
        return self.provenance.get("data_sha256")

    @property
    def split(self) -> str | None:
        """The split the codes were encoded for (None when the encoder was not told)."""
        return self.provenance.get("split")

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


class CodesSourceError(DataError):
    """A code table used with a data file it was not encoded from (``path`` is the codes file)."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.detail = message
        super().__init__(path, message)


def check_codes_source(table: CodeTable, codes_path: str | Path, data_file: str | Path, split: str) -> bool:
    """Refuse ``table`` (read from ``codes_path``) for the ``split`` file ``data_file`` unless it was
    encoded from that file's content.

    The recorded content digest decides when there is one (a split recorded under another name is
    fine for the same content: the codes are the same); else a recorded split must be ``split``.
    Raises :class:`CodesSourceError` naming both files on a mismatch. Returns False when the table
    records neither (written by hand or by an older version), so the caller can decide what to do.
    """
    source = f"encoded from {table.data_file or 'an unrecorded data file'}" + (
        f" (split '{table.split}')" if table.split else ""
    )
    if table.data_sha256 is not None:
        if table.data_sha256 != file_digest(data_file):
            raise CodesSourceError(
                codes_path,
                f"{source}, not from the {split} file {data_file} (its content differs); encode {data_file} "
                f"(lm-latent codebook encode --data {data_file} --split {split} ...) and give that codes file "
                f"as {_CONFIG_KEY.get(split, 'its codes file')}",
            )
        return True
    if table.split is not None:
        if table.split != split:
            raise CodesSourceError(
                codes_path, f"{source}, not for the {split} split ({data_file}); give the codes file encoded "
                f"from that file as {_CONFIG_KEY.get(split, 'its codes file')}",
            )
        return True
    return False
