"""Readers for every supported dataset file: ``read_dataset(name, path)`` -> canonical examples.

    result = read_dataset("gsm8k", "../shared/data/gsm8k/train.jsonl")
    result.examples[0].steps     # ('Natalia sold 48/2 = 24 clips in May.', ...)
    result.skipped               # {} here; {"needs an image": 53} for TheoremQA

Files are JSON Lines or one JSON array. Bad input raises :class:`DataError` naming the file, the line
(JSON Lines, 1-based) or record (JSON array, 0-based) and the field. Nothing is dropped silently: the
only records left out are deliberate skips, counted by reason in ``ReadResult.skipped``.

Ids are ``"<dataset>:<key>"``, where the key is the source's own id field when the dataset has one
and it is unique within the file, else the 0-based record index; ``canonical`` files keep their ids.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from lm_latent.data.example import Example
from lm_latent.data.readers.records import Record, load_records
from lm_latent.data.readers.sources import SOURCES, Context, Skip
from lm_latent.data.readers.text import last_boxed, split_steps, strip_calculator

__all__ = [
    "DATASETS",
    "ReadResult",
    "read_dataset",
    "read_examples",
    "write_canonical",
    "last_boxed",
    "split_steps",
    "strip_calculator",
]

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = tuple(SOURCES)


@dataclass
class ReadResult:
    """The examples read from one file, and the records deliberately left out (reason -> count)."""

    examples: list[Example]
    skipped: dict[str, int] = field(default_factory=dict)
    path: str = ""

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())


def read_dataset(name: str, path: str | Path, *, strip_calculator: bool = True) -> ReadResult:
    """Read a dataset file into canonical examples.

    ``name`` is one of :data:`DATASETS`. ``strip_calculator`` removes GSM8K's ``<<expr=value>>``
    annotations from the steps (other sets have none).
    """
    if name not in SOURCES:
        raise ValueError(f"unknown dataset '{name}'; known datasets: {', '.join(DATASETS)}")
    spec = SOURCES[name]
    records = load_records(path)
    ids = _ids(name, records, spec.id_field)
    examples: list[Example] = []
    skipped: Counter[str] = Counter()
    seen: dict[str, Record] = {}
    for rec, ex_id in zip(records, ids):
        out = spec.convert(rec, Context(source=name, id=ex_id, strip_calculator=strip_calculator))
        if isinstance(out, Skip):
            skipped[out.reason] += 1
            continue
        if out.id in seen:
            raise rec.error(f"duplicate id '{out.id}' (also {_where(seen[out.id])})", "id")
        seen[out.id] = rec
        examples.append(out)
    return ReadResult(examples=examples, skipped=dict(skipped), path=str(path))


def read_examples(name: str, path: str | Path, **kwargs) -> list[Example]:
    """:func:`read_dataset`, returning only the examples; skipped records are logged at WARNING."""
    result = read_dataset(name, path, **kwargs)
    for reason, count in sorted(result.skipped.items()):
        log.warning("%s: skipped %d %s record(s): %s", result.path, count, name, reason)
    return result.examples


def write_canonical(examples: Iterable[Example], path: str | Path) -> Path:
    """Write examples as JSON Lines of ``Example.to_dict()``, readable with ``read_dataset("canonical", ...)``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
    return path


def _ids(name: str, records: list[Record], id_field: str | None) -> list[str]:
    """The source's own ids where usable (present, scalar and unique in this file), else indices.
    Canonical records carry their own ids, so the placeholder here is never used for them."""
    if id_field is not None and name != "canonical":
        values = [rec.data.get(id_field) for rec in records]
        if all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            keys = [str(v) for v in values]
            if len(set(keys)) == len(keys):
                return [f"{name}:{k}" for k in keys]
    return [f"{name}:{rec.index}" for rec in records]


def _where(rec: Record) -> str:
    return f"line {rec.line}" if rec.line is not None else f"record {rec.index}"

