"""One tiny `lm-latent run` shared by the pipeline and notebook tests.

The whole method (data -> tokenizer -> codebook -> codes -> mixed fit x2 -> test -> report) runs once
per test session, in a child process exactly as a user types it, with models and data small enough
to finish in a couple of minutes on two CPU cores. Tests that change a run work on a copy of it
(:func:`copy_run`), so the shared folder always holds the finished run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "default.yaml"
SHARED_DATA = REPO.parent / "shared" / "data"  # the evaluation sets of experiments/default.yaml

STRATEGIES = ("latent_ar", "cot")
# set name -> examples evaluated: the generated held-out variant, then the official files
EVAL_SETS = {"generated_valid": 8, "generated_test": 8, "prontoqa_valid": 8, "prontoqa_test": 16}
TRAIN_EXAMPLES = 200
MIXED_GLOBAL_BATCH = 32
CODEBOOK_SIZE = 64
STEPS_PER_EPOCH = -(-TRAIN_EXAMPLES // MIXED_GLOBAL_BATCH)

# Everything small: the default experiment's shape, a fraction of its size.
TINY_OVERRIDES = (
    f"data.generate.train={TRAIN_EXAMPLES}",
    "data.generate.val=20",
    "data.generate.test=20",
    "codebook.trainer.max_steps=20",
    "codebook.trainer.val_check_interval=10",
    "codebook.checkpoint.every_n_train_steps=10",
    f"codebook.model.codebook_size={CODEBOOK_SIZE}",
    f"mixed.strategies=[{','.join(STRATEGIES)}]",
    "mixed.trainer.max_epochs=1",
    "mixed.trainer.log_every_n_steps=1",  # a loss value at every step: a resumed fit shows where it went on
    "mixed.model.lm.hidden_size=64",
    "mixed.model.lm.intermediate_size=128",
    "mixed.model.lm.num_hidden_layers=2",
    f"mixed.data.global_batch_size={MIXED_GLOBAL_BATCH}",
    *(f"evaluation.sets.{name}.subset={n}" for name, n in EVAL_SETS.items()),
    "evaluation.max_new_tokens=40",
)

# Every stage folder of the tiny run, in pipeline order.
STAGES = ("data", "tokenizer", "codebook", "codes", *(f"{kind}/{s}" for s in STRATEGIES for kind in ("mixed", "eval")))


def run_command(out: Path, *extra: str, experiment: Path = EXPERIMENT) -> list[str]:
    """The `lm-latent run` command line of the tiny run writing into ``out`` (plus ``extra`` arguments)."""
    return [sys.executable, "-m", "lm_latent.cli", "run", str(experiment), "--out", str(out), *TINY_OVERRIDES, *extra]


def child_env() -> dict[str, str]:
    """The environment of a fresh launch: no rank variables inherited from a surrounding launcher."""
    env = dict(os.environ)
    for var in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def run_pipeline(out: Path, *extra: str, experiment: Path = EXPERIMENT, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the tiny experiment into ``out`` from the repository root (the experiment's evaluation
    files are relative to it); stdout and stderr are returned together in ``.stdout``."""
    return subprocess.run(
        run_command(out, *extra, experiment=experiment), cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )


@dataclass(frozen=True)
class TinyRun:
    dir: Path
    log: str
    experiment: Path  # the experiment file as it was when the run was made; rerun with this one


def stage_markers(run_dir: Path) -> dict[str, tuple[int, str]]:
    """(mtime in ns, content) of every stage's `stage.json` under ``run_dir``, by stage name."""
    out = {}
    for marker in sorted(run_dir.rglob("stage.json")):
        out[marker.parent.relative_to(run_dir).as_posix()] = (marker.stat().st_mtime_ns, marker.read_text())
    return out


def copy_run(run: TinyRun, dest: Path) -> Path:
    """A copy of the finished run to change. Stage outputs keep naming the original's files
    (absolute paths, read only), so the original must stay in place while the copy is used."""
    shutil.copytree(run.dir, dest)
    return dest


_RUN: TinyRun | None = None
_FAILURE: str | None = None  # a failed run is not retried by the next module that asks for it


def tiny_run_once(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The session's tiny run, made on first use. Every module that imports the ``tiny_run``
    fixture gets its own fixture definition; this cache makes them share one run."""
    global _RUN, _FAILURE
    if not SHARED_DATA.is_dir():
        pytest.skip(f"staged data not found at {SHARED_DATA}: the default experiment evaluates on it")
    if _FAILURE is not None:
        pytest.fail(_FAILURE)
    if _RUN is None:
        from lm_latent.config import load_experiment, save_yaml

        root = tmp_path_factory.mktemp("tiny_run")
        # A snapshot (base chain resolved): reruns later in the session must see the same experiment
        # even if experiments/default.yaml is edited meanwhile.
        experiment = root / EXPERIMENT.name
        save_yaml(load_experiment(EXPERIMENT), experiment)
        out = root / "run"
        res = run_pipeline(out, experiment=experiment)
        (root / "run.log").write_text(res.stdout)
        if res.returncode != 0:
            _FAILURE = f"tiny run failed with exit status {res.returncode}:\n{res.stdout[-6000:]}"
            pytest.fail(_FAILURE)
        _RUN = TinyRun(out, res.stdout, experiment)
    return _RUN


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The finished tiny run (read only: copy it with :func:`copy_run` to change anything)."""
    return tiny_run_once(tmp_path_factory)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
