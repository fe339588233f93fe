"""Generators of ProsQA- and ProntoQA-style training data in Coconut's JSON format, and of mazes.

The official training splits are not available offline, so they are generated; the defaults
reproduce the official validation splits' statistics. Every generator is ``generate(num, seed,
options) -> list[dict]``, deterministic in its arguments, with a frozen options dataclass::

    from lm_latent.data.generators import GENERATORS, write_json
    options_cls, generate = GENERATORS["prosqa"]
    write_json(generate(20000, seed=0, options=options_cls(max_steps=6)), "prosqa_train.json")

Command line: ``lm-latent data generate prosqa --num 20000 --seed 0 --out prosqa_train.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lm_latent.data.generators import maze, prontoqa, prosqa
from lm_latent.data.generators.maze import MazeOptions
from lm_latent.data.generators.prontoqa import ProntoQAOptions
from lm_latent.data.generators.prosqa import ProsQAOptions

GENERATORS: dict[str, tuple[type, Callable[..., list[dict[str, Any]]]]] = {
    "prosqa": (ProsQAOptions, prosqa.generate),
    "prontoqa": (ProntoQAOptions, prontoqa.generate),
    "maze": (MazeOptions, maze.generate),  # Keys-Finding Maze: prompt, A* trace as steps, plan as answer
}


def write_json(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write ``records`` as one JSON array, byte-identical for identical records.

    Written to a temporary file in the same folder and renamed over ``path``, so a reader never sees
    half a file and an interrupted run leaves the previous file intact.
    """
    path = Path(path)
    text = json.dumps(list(records), ensure_ascii=False, indent=None)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; data files are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["GENERATORS", "MazeOptions", "ProntoQAOptions", "ProsQAOptions", "write_json"]
