#!/usr/bin/env python
"""Prepare an experiment for launching stage 2 with torchrun or srun: everything up to the mixed fits.

    python experiments/launch/prepare_run.py EXPERIMENT.yaml --out DIR [--force] [dotted.overrides=...]

``lm-latent run`` starts each stage as one child process, which Lightning turns into several processes
on one node (``devices=8 strategy=ddp``). Several nodes need every stage-2 process started by the
cluster (``srun``) or by ``torchrun`` on each node instead. This script runs the stages that stay on
one node, exactly as ``lm-latent run`` does (data, tokenizer, codebook fit, encode; skipped when
already done), then writes each strategy's stage-2 config ``DIR/mixed/<strategy>/config.yaml``
*without* training it, and the plan ``DIR/stage2_plan.tsv``, one line per strategy::

    <strategy> TAB <config path> TAB todo|resume|done

``todo``: launch ``lm-latent mixed fit --config <config>``; ``resume``: add ``--ckpt_path last``;
``done``: nothing to do. Each stage is marked started with the pipeline's own key, just like an
interrupted ``lm-latent run``; so once the launched fits have written their checkpoints, rerunning
``lm-latent run EXPERIMENT.yaml --out DIR`` with the same overrides adopts them (a finished fit resumes
to its end at once), evaluates and writes the results. See docs/LAUNCH.md.

Give ``trainer.num_nodes``/``trainer.devices`` on the launch command line, not as overrides here: an
override changes the stage's key and the final ``lm-latent run`` would have to use it too.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

PLAN_NAME = "stage2_plan.tsv"


class _Stage2Ready(Exception):
    """Raised in place of launching `lm-latent mixed fit`: its config is written, training is not ours."""

    def __init__(self, args: tuple[str, ...]):
        super().__init__("stage 2 prepared")
        self.resume = "--ckpt_path" in args


@contextmanager
def _stop_before_mixed_fit():
    """Let the pipeline launch every stage except `mixed fit`, which raises :class:`_Stage2Ready`."""
    from lm_latent.pipeline import run as pipeline

    launch = pipeline._cli

    def guarded(*args, **kwargs):
        if tuple(map(str, args[:2])) == ("mixed", "fit"):
            raise _Stage2Ready(tuple(map(str, args)))
        return launch(*args, **kwargs)

    pipeline._cli = guarded
    try:
        yield
    finally:
        pipeline._cli = launch


def prepare(
    experiment: str | Path, out: str | Path, overrides: list[str] | None = None, force: bool = False
) -> list[tuple[str, Path, str]]:
    """Run the single-process stages and write every strategy's stage-2 config; returns the plan rows."""
    from lm_latent.config import load_experiment
    from lm_latent.pipeline.run import Pipeline
    from lm_latent.pipeline.validate import validate_experiment

    cfg = load_experiment(experiment, overrides)
    validate_experiment(cfg)  # the whole file before any stage, as `lm-latent run` does
    p = Pipeline(cfg, out, force)
    data, tok, cb, codes = p.prepare()
    rows = []
    with _stop_before_mixed_fit():
        for strategy in p.cfg["mixed"]["strategies"]:
            stage_dir = p.out / "mixed" / strategy
            try:
                p.mixed(strategy, data, tok, codes)
                status = "done"
            except _Stage2Ready as ready:
                # The pipeline has removed checkpoints of other inputs before a fresh start.
                status = "resume" if ready.resume else "todo"
            rows.append((strategy, stage_dir / "config.yaml", status))
    plan = p.out / PLAN_NAME
    plan.write_text("".join(f"{s}\t{c}\t{st}\n" for s, c, st in rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, as for `lm-latent run`")
    parser.add_argument("--out", required=True, help="the run folder (the same one `lm-latent run` finishes)")
    parser.add_argument("--force", action="store_true", help="redo the finished stages")
    args = parser.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        rows = prepare(args.experiment, args.out, args.overrides, args.force)
    except (KeyError, ValueError, FileNotFoundError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
        return 2
    for strategy, config, status in rows:
        print(f"{strategy}\t{config}\t{status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
