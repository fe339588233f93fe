"""Errors for bad input: always say which file, which line (or record) and which field."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A problem with an input file, located precisely enough to fix it.

    ``line`` is a 1-based line number for JSON Lines files and a 0-based record index for files that
    hold one JSON array (``record=True``), so the message says which one it is.
    """

    def __init__(
        self,
        path: str | Path,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        record: bool = False,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.record = record
        where = self.path
        if line is not None:
            where += f", record {line}" if record else f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")
