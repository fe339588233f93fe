"""`lm-latent` entry point: dispatches to each stage's own command line.

    lm-latent data {inspect,generate,tokenizer} ...
    lm-latent codebook {fit,validate,encode,decode} ...
    lm-latent mixed {fit,validate,test,export} ...
    lm-latent run EXPERIMENT.yaml [--out DIR] [dotted.overrides=...]
    lm-latent summarize RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "data": ("lm_latent.data.cli", "data: inspect, generate ProsQA/ProntoQA, train a tokenizer"),
    "codebook": ("lm_latent.codebook.cli", "stage 1: fit / encode / decode the CoT codebook"),
    "mixed": ("lm_latent.finetune.cli", "stage 2: fit / validate / test / export the mixed-token LM"),
    "run": ("lm_latent.pipeline.cli", "run an experiment file end to end"),
    "summarize": ("lm_latent.pipeline.seeds", "mean and spread of finished runs over seeds"),
}


def _usage() -> str:
    lines = ["usage: lm-latent COMMAND ...", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"lm-latent: unknown command '{name}'\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
