"""Loading raw records from JSON Lines or single-JSON-array files, each remembering where it came from.

Every error raised here, or by a converter through :meth:`Record.error`, is a :class:`DataError` that
names the file, the line (JSON Lines, 1-based) or record index (JSON array, 0-based) and the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_latent.data.errors import DataError


@dataclass(frozen=True)
class Record:
    """One raw JSON object from a dataset file and its location in that file."""

    data: dict
    index: int  # 0-based position among the file's records (blank lines are not records)
    path: str
    line: int | None  # 1-based line number for JSON Lines; None for records of a JSON array

    def error(self, message: str, field: str | None = None) -> DataError:
        if self.line is not None:
            return DataError(self.path, message, line=self.line, field=field)
        return DataError(self.path, message, line=self.index, field=field, record=True)

    def get(self, name: str, *types: type, optional: bool = False) -> Any:
        """The value of field ``name``, checked against ``types``; a missing field is an error unless
        ``optional`` (then None). ``bool`` is never accepted as a number: JSON true is not 1."""
        if name not in self.data:
            if optional:
                return None
            raise self.error("missing field", name)
        value = self.data[name]
        if optional and value is None:
            return None
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join(_type_name(t) for t in types)
            raise self.error(f"expected {want}, got {_type_name(type(value))} {_preview(value)}", name)
        return value

    def str_list(self, name: str) -> list[str]:
        """Field ``name`` as a list of strings (each item checked)."""
        value = self.get(name, list)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(
                    f"expected a list of str, item {i} is {_type_name(type(item))} {_preview(item)}", name
                )
        return value


def _type_name(t: type) -> str:
    return {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "object"}.get(
        t, "null" if t is type(None) else t.__name__
    )


def _preview(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_records(path: str | Path) -> list[Record]:
    """All records of a JSON Lines file or of a file holding one JSON array of objects.

    The format is decided by the first non-blank character (``[`` means one array). Blank lines in
    JSON Lines are not records. An empty file, or one with no records, is an error: reading nothing
    from a dataset is never what the user meant.
    """
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise DataError(name, "file not found")
    if not p.is_file():
        raise DataError(name, "not a regular file")
    try:
        # utf-8-sig: files saved by some editors start with a byte order mark.
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(name, f"not valid UTF-8 ({e.reason} at byte {e.start})") from None
    stripped = text.lstrip()
    if not stripped:
        raise DataError(name, "file is empty (no records)")
    records = _load_array(name, text) if stripped[0] == "[" else _load_lines(name, text)
    if not records:
        raise DataError(name, "file holds no records")
    return records


def _load_array(name: str, text: str) -> list[Record]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(name, f"malformed JSON: {e.msg} (column {e.colno})", line=e.lineno) from None
    if not isinstance(items, list):
        raise DataError(name, "expected one JSON array of objects")
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise DataError(name, f"expected a JSON object, got {_preview(item)}", line=i, record=True)
        records.append(Record(item, i, name, None))
    return records


def _load_lines(name: str, text: str) -> list[Record]:
    records = []
    # split("\n"), not splitlines(): JSON strings may hold a raw U+2028, which splitlines() breaks on.
    for lineno, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DataError(name, f"malformed JSON: {e.msg} (column {e.colno})", line=lineno) from None
        if not isinstance(item, dict):
            raise DataError(name, f"expected a JSON object, got {_preview(item)}", line=lineno)
        records.append(Record(item, len(records), name, lineno))
    return records
