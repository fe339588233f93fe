"""`lm-latent mixed ...`: stage 2 from the command line.

    lm-latent mixed fit --config experiments/mixed/prosqa_tiny.yaml [--trainer.max_epochs 2 ...]
    lm-latent mixed fit --config CONFIG --ckpt_path last                 # resume from <root>/checkpoints/last.ckpt
    lm-latent mixed validate|test --config CONFIG --ckpt_path CKPT
    lm-latent mixed export --checkpoint CKPT --out DIR [--dtype bfloat16]

fit/validate/test are LightningCLI subcommands over :class:`MixedTokenLM` and
:class:`MixedTokenDataModule` (``model:``/``data:``/``trainer:`` blocks; any key can be overridden as
``--block.key value``). ``model.tokenizer_dir`` and ``model.num_codes`` are taken from the data block
(the tokenizer directory, and the codebook size of the codes file), so model and data always agree.
Checkpoints go to ``<trainer.default_root_dir>/checkpoints`` (``last.ckpt`` always kept; the
``checkpoint:`` block sets e.g. ``every_n_train_steps``), TensorBoard logs and the resolved
``config.yaml`` to ``<trainer.default_root_dir>/tensorboard`` unless ``trainer.logger`` says otherwise;
the extended tokenizer to ``<trainer.default_root_dir>/tokenizer``. A NaN/inf loss, a bad
``--ckpt_path`` or a tokenizer that is not the checkpoint's stop with one ``error:`` line
(:mod:`lm_latent.lightning_cli`).

Multi-device: ``--trainer.devices N --trainer.strategy ddp`` (CPU processes or GPUs); the global batch
size stays the configured one (``data.global_batch_size``), accumulation is derived.
"""

from __future__ import annotations

import argparse
import sys

SUBCOMMANDS = ("fit", "validate", "test")
USAGE = "usage: lm-latent mixed {fit,validate,test} --config FILE [--block.key VALUE ...]\n" \
        "       lm-latent mixed export --checkpoint CKPT --out DIR [--dtype DTYPE]"


def _cli_class():
    """``(MixedTokenCLI, ModelCheckpoint)``: the stage-2 LightningCLI class (and, for callers that build
    it with their own ``trainer_defaults``, the checkpoint class it uses)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningArgumentParser

    from lm_latent.lightning_cli import LatentCLI

    class MixedTokenCLI(LatentCLI):
        stage = "mixed"

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            super().add_arguments_to_parser(parser)  # checkpoint section, root dir
            parser.link_arguments("data.tokenizer_dir", "model.tokenizer_dir")
            parser.link_arguments("data.num_codes", "model.num_codes", apply_on="instantiate")

        def check_checkpoint_inputs(self, ckpt: dict, path) -> None:
            import torch

            from lm_latent.checkpointing import check_state_shapes

            check_checkpoint_tokenizer(ckpt, path, self.datamodule.tokenizer, self.datamodule.hparams.tokenizer_dir)
            # The LM is only built when the run starts (configure_model): compare the checkpoint with the
            # configured architecture on the meta device, which allocates nothing and reads no weights.
            with torch.device("meta"):
                architecture = torch.nn.ModuleDict({"model": self.model.build_lm()})
            check_state_shapes(ckpt, path, architecture)

    return MixedTokenCLI, ModelCheckpoint


def check_checkpoint_tokenizer(ckpt: dict, path, tokenizer, tokenizer_dir) -> None:
    """Raise :class:`~lm_latent.checkpointing.TokenizerMismatchError` unless ``tokenizer`` (the data's,
    latent tokens included) has exactly the vocabulary stored in the stage-2 checkpoint ``ckpt``.

    Equal sizes are not enough: a retrained tokenizer of the same size maps ids to other tokens, and
    the resumed model would silently read everything wrong."""
    import tempfile
    from pathlib import Path

    from lm_latent.checkpointing import TokenizerMismatchError
    from lm_latent.data.tokenization import load_tokenizer
    from lm_latent.finetune.module import ASSETS_KEY

    files = (ckpt.get(ASSETS_KEY) or {}).get("tokenizer")
    if not files:
        return  # written before checkpoints carried their tokenizer
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            (Path(tmp) / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
        theirs = load_tokenizer(tmp).get_vocab()
    ours = tokenizer.get_vocab()
    if ours == theirs:
        return
    differ = sorted(t for t in set(ours) | set(theirs) if ours.get(t) != theirs.get(t))
    example = differ[0]
    raise TokenizerMismatchError(
        f"--data.tokenizer_dir {tokenizer_dir} is not the tokenizer checkpoint {path} was trained with: "
        f"{len(ours)} tokens (latent tokens included) here, {len(theirs)} in the checkpoint, {len(differ)} "
        f"differ (e.g. {example!r}: id {ours.get(example)} here, {theirs.get(example)} in the checkpoint); "
        "give the tokenizer (and codes) the checkpoint was trained with"
    )


def run_lightning(argv: list[str]):
    """Run a LightningCLI subcommand; returns the CLI object (trainer, model, datamodule)."""
    from lm_latent.finetune.datamodule import MixedTokenDataModule
    from lm_latent.finetune.module import MixedTokenLM

    cli_class, _ = _cli_class()
    return cli_class(MixedTokenLM, MixedTokenDataModule, args=argv)


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
    from lm_latent.lightning_cli import run_cli

    return run_cli(lambda: run_lightning(argv))
