"""`lm-latent run EXPERIMENT.yaml [--out DIR] [--force] [dotted.overrides=...]`."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lm-latent run", description=__doc__)
    parser.add_argument("experiment", help="experiment YAML (see experiments/)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. mixed.trainer.max_epochs=2")
    parser.add_argument("--out", help="run folder (default: runs/<experiment name>)")
    parser.add_argument("--force", action="store_true", help="redo every stage even if finished")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)

    from lm_latent.config import load_experiment
    from lm_latent.pipeline.run import run_experiment
    from lm_latent.pipeline.validate import validate_experiment

    try:
        cfg = load_experiment(args.experiment, args.overrides)
        # The whole file before any stage: a typo must not surface after an hour of stage 1.
        validate_experiment(cfg)
    except (KeyError, ValueError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    out = Path(args.out or Path("runs") / str(cfg.name))
    try:
        results = run_experiment(cfg, out, force=args.force)
    except subprocess.CalledProcessError as e:
        # The stage command printed its own error above; say which stage stopped and how to go on.
        command = " ".join(map(str, e.cmd[3:] if e.cmd[1:3] == ["-m", "lm_latent.cli"] else e.cmd))
        print(f"error: stage command failed with exit status {e.returncode}: lm-latent {command}\n"
              f"(finished stages are kept; rerun the same command to continue)", file=sys.stderr)
        return e.returncode if e.returncode > 0 else 1
    print((out / "results.md").read_text())
    print(f"results: {out / 'results.json'}\ntensorboard: tensorboard --logdir {results['tensorboard']}")
    return 0
