"""Resumable stages: each writes its artifacts into its own folder and a `stage.json` marker last.

A stage is skipped when its marker holds the same *key*, a hash of everything that determines its
output (its config section, input file contents, upstream stage keys). A killed stage has no marker,
so rerunning the same command redoes (or, for training, resumes) only that stage and what follows.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def write_json_atomic(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class Stage:
    name: str
    dir: Path
    inputs: dict[str, Any]
    force: bool = False
    started: float = field(default=0.0, init=False)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def marker(self) -> Path:
        return self.dir / "stage.json"

    def is_done(self) -> bool:
        if self.force or not self.marker.is_file():
            return False
        try:
            return json.loads(self.marker.read_text()).get("key") == self.key
        except json.JSONDecodeError:
            return False

    @property
    def outputs(self) -> dict[str, Any]:
        return json.loads(self.marker.read_text())["outputs"]

    def begin(self) -> None:
        """Start (or restart) the stage: drop a stale marker, remember the key being worked on."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.marker.exists():
            self.marker.unlink()
        self.started = time.time()

    def can_resume(self) -> bool:
        """True when an earlier, interrupted attempt at this same key left state to resume from."""
        started = self.dir / "started.json"
        if self.force or not started.is_file():
            return False
        try:
            return json.loads(started.read_text()).get("key") == self.key
        except json.JSONDecodeError:
            return False

    def mark_started(self) -> None:
        write_json_atomic({"key": self.key, "inputs": self.inputs}, self.dir / "started.json")

    def finish(self, outputs: dict[str, Any]) -> dict[str, Any]:
        write_json_atomic(
            {"key": self.key, "inputs": self.inputs, "outputs": outputs, "seconds": round(time.time() - self.started, 2)},
            self.marker,
        )
        return outputs
