"""`lm-latent mixed ...`: stage 2 from the command line.

    lm-latent mixed fit --config experiments/mixed/prosqa_tiny.yaml [--trainer.max_epochs 2 ...]
    lm-latent mixed fit --config CONFIG --ckpt_path last                 # resume from <root>/checkpoints/last.ckpt
    lm-latent mixed validate|test --config CONFIG --ckpt_path CKPT
    lm-latent mixed export --checkpoint CKPT --out DIR [--dtype bfloat16]

fit/validate/test are LightningCLI subcommands over :class:`MixedTokenLM` and
:class:`MixedTokenDataModule` (``model:``/``data:``/``trainer:`` blocks; any key can be overridden as
``--block.key value``). ``model.tokenizer_dir`` and ``model.num_codes`` are taken from the data block
(the tokenizer directory, and the codebook size of the codes file), so model and data always agree.
Checkpoints go to ``<trainer.default_root_dir>/checkpoints`` (``last.ckpt`` always kept), TensorBoard
logs and the resolved ``config.yaml`` to the logger's directory; the extended tokenizer to
``<trainer.default_root_dir>/tokenizer``.

Multi-device: ``--trainer.devices N --trainer.strategy ddp`` (CPU processes or GPUs); the global batch
size stays the configured one (``data.global_batch_size``), accumulation is derived.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

SUBCOMMANDS = ("fit", "validate", "test")
USAGE = "usage: lm-latent mixed {fit,validate,test} --config FILE [--block.key VALUE ...]\n" \
        "       lm-latent mixed export --checkpoint CKPT --out DIR [--dtype DTYPE]"


def _cli_class():
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

    class MixedTokenCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.link_arguments("data.tokenizer_dir", "model.tokenizer_dir")
            parser.link_arguments("data.num_codes", "model.num_codes", apply_on="instantiate")

        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            # Checkpoints live in the run folder (not under the logger's versioned folder), so
            # `--ckpt_path last` and the pipeline find <default_root_dir>/checkpoints/last.ckpt.
            for cb in trainer.checkpoint_callbacks:
                if cb.dirpath is None:
                    cb.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
            return trainer

    return MixedTokenCLI, ModelCheckpoint


def run_lightning(argv: list[str]):
    """Run a LightningCLI subcommand; returns the CLI object (trainer, model, datamodule)."""
    from lm_latent.finetune.datamodule import MixedTokenDataModule
    from lm_latent.finetune.module import MixedTokenLM

    cli_class, checkpoint_class = _cli_class()
    with warnings.catch_warnings():
        # `lm-latent mixed fit ...` passes its own argv on; sys.argv must stay the full command line
        # because Lightning's DDP launcher re-executes it for the other ranks.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return cli_class(
            MixedTokenLM,
            MixedTokenDataModule,
            args=argv,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [checkpoint_class(save_last=True)]},
        )


def export_main(argv: list[str]) -> int:
    from lm_latent.finetune.export import export_checkpoint

    parser = argparse.ArgumentParser(prog="lm-latent mixed export", description="write a standard Hugging Face directory")
    parser.add_argument("--checkpoint", required=True, help="a MixedTokenLM checkpoint (e.g. .../checkpoints/last.ckpt)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--dtype", default=None, help="cast the weights, e.g. bfloat16 (default: as trained)")
    args = parser.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.out, args.dtype)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "export":
        return export_main(argv[1:])
    if argv[0] not in SUBCOMMANDS:
        print(f"lm-latent mixed: unknown command '{argv[0]}'\n{USAGE}", file=sys.stderr)
        return 2
    run_lightning(argv)
    return 0
