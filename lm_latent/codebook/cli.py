"""`lm-latent codebook ...`: fit, validate, encode and decode the stage-1 codebook.

    lm-latent codebook fit --config experiments/codebook/prosqa_tiny.yaml [--trainer.max_steps 2000]
    lm-latent codebook fit --config experiments/codebook/prosqa_tiny.yaml --ckpt_path last   # resume
    lm-latent codebook validate --config experiments/codebook/prosqa_tiny.yaml --ckpt_path last
    lm-latent codebook encode --checkpoint CKPT --dataset gsm8k --data FILE --tokenizer DIR --cache-dir DIR [--split train] [--out FILE]
    lm-latent codebook decode --checkpoint CKPT --tokenizer DIR --prompt "question text" --codes 3,17,5

Several devices: add ``--trainer.devices 2 --trainer.strategy ddp`` (CPU processes or GPUs, one node),
or launch with ``torchrun --nnodes N --nproc-per-node G -m lm_latent.cli codebook fit ...`` and
``--trainer.num_nodes N --trainer.devices G``. ``data.global_batch_size`` is the batch over all of
them; accumulation is derived, so a run means the same on any number of devices.

``fit``/``validate`` are a LightningCLI over :class:`CodebookAutoencoder` and
:class:`CodebookDataModule` (``model:``/``data:``/``trainer:``/``checkpoint:`` sections, dotted
overrides). Tokenizer, L, context mode and the prompt/context lengths are given once under ``data:``
and passed on to the model. Checkpoints go to ``<trainer.default_root_dir>/checkpoints`` (``last.ckpt``
always, so ``--ckpt_path last`` resumes), TensorBoard logs and the resolved config to
``<trainer.default_root_dir>/tensorboard``.
"""

from __future__ import annotations

import argparse
import sys
import time

DEFAULT_ROOT_DIR = "runs/codebook"
_LINKED = ("tokenizer_dir", "chunk_size", "context", "max_prompt_tokens", "max_context_tokens")


def lightning_cli(argv: list[str], run: bool = True):
    """The LightningCLI of ``fit``/``validate`` (``run=False``: parse and instantiate only, no subcommand)."""
    from lm_latent.codebook.datamodule import CodebookDataModule
    from lm_latent.codebook.module import CodebookAutoencoder

    return codebook_cli_class()(CodebookAutoencoder, CodebookDataModule, args=argv, run=run)


def codebook_cli_class():
    """The stage-1 LightningCLI class (its parser also checks experiment files: lm_latent.pipeline.validate)."""
    from lm_latent.lightning_cli import LatentCLI

    class CodebookCLI(LatentCLI):
        stage = "codebook"
        default_root_dir = DEFAULT_ROOT_DIR

        def add_arguments_to_parser(self, parser) -> None:
            super().add_arguments_to_parser(parser)  # checkpoint section, root dir
            for key in _LINKED:
                parser.link_arguments(f"data.{key}", f"model.{key}")

        def check_checkpoint_inputs(self, ckpt: dict, path) -> None:
            _check_resume_tokenizer(ckpt, path, self.datamodule.hparams.tokenizer_dir)

    return CodebookCLI


def _check_resume_tokenizer(ckpt: dict, path, tokenizer_dir: str) -> None:
    """The data's tokenizer must be the one the checkpoint was trained with (vocab, pad and eos ids)."""
    from types import SimpleNamespace

    from lightning.fabric.utilities.data import AttributeDict

    from lm_latent.checkpointing import TokenizerMismatchError
    from lm_latent.codebook.encode import check_tokenizer
    from lm_latent.data.tokenization import load_tokenizer

    hp = AttributeDict(ckpt.get("hyper_parameters", {}))
    if all(k in hp for k in ("vocab_size", "pad_id", "eos_id", "tokenizer_dir")):
        try:
            check_tokenizer(SimpleNamespace(hparams=hp), load_tokenizer(tokenizer_dir), tokenizer_dir)
        except ValueError as e:
            raise TokenizerMismatchError(f"--ckpt_path {path}: {e}") from e


def _encode(args: argparse.Namespace) -> int:
    from lm_latent.codebook.codes_file import save_codes
    from lm_latent.codebook.encode import encode_dataset

    start = time.perf_counter()
    table = encode_dataset(
        args.checkpoint, args.dataset, args.data, args.tokenizer, args.cache_dir, batch_size=args.batch_size,
        device=args.device, split=args.split,
    )
    if args.out:
        save_codes(args.out, table)
    n_chunks = sum(len(c) for c in table.codes.values())
    print(
        f"{len(table.codes)} examples, {n_chunks} chunks, K={table.num_codes}, L={table.chunk_size} "
        f"in {time.perf_counter() - start:.1f}s" + (f" -> {args.out}" if args.out else "")
    )
    return 0


def _decode(args: argparse.Namespace) -> int:
    from lm_latent.codebook.decode import decode_codes
    from lm_latent.codebook.encode import check_tokenizer, load_codebook
    from lm_latent.data.tokenization import load_tokenizer, prompt_text

    try:
        codes = [int(c) for c in args.codes.split(",") if c.strip()]
    except ValueError:
        print(f"--codes: expected comma-separated integers, got {args.codes!r}", file=sys.stderr)
        return 2
    tokenizer = load_tokenizer(args.tokenizer)
    model = load_codebook(args.checkpoint, args.device)
    check_tokenizer(model, tokenizer, args.tokenizer)
    prompt_ids = tokenizer(prompt_text(args.prompt), add_special_tokens=False)["input_ids"]
    print(decode_codes(model, tokenizer, prompt_ids, codes))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lm-latent codebook", description="stage 1: the CoT codebook (VQ-VAE)")
    sub = p.add_subparsers(dest="command", metavar="{fit,validate,encode,decode}")
    sub.add_parser("fit", help="train (LightningCLI; see `fit --help`)", add_help=False)
    sub.add_parser("validate", help="validate a checkpoint (LightningCLI)", add_help=False)
    enc = sub.add_parser("encode", help="a dataset's CoTs -> latent code table (cached)")
    enc.add_argument("--checkpoint", required=True)
    enc.add_argument("--dataset", required=True, help="reader name, e.g. gsm8k, prosqa, canonical")
    enc.add_argument("--data", required=True, help="the dataset file")
    enc.add_argument("--tokenizer", required=True, help="tokenizer directory the codebook was trained with")
    enc.add_argument("--cache-dir", required=True)
    enc.add_argument("--split", choices=("train", "val", "test"),
                     help="the split this file is (recorded in the table, checked by stage 2)")
    enc.add_argument("--out", help="also write the table here")
    enc.add_argument("--batch-size", type=int, default=4096, help="chunks per forward pass")
    enc.add_argument("--device", default="cpu")
    dec = sub.add_parser("decode", help="code ids + prompt -> CoT text (greedy)")
    dec.add_argument("--checkpoint", required=True)
    dec.add_argument("--tokenizer", required=True)
    dec.add_argument("--prompt", required=True, help="the question (a newline is appended, as in training)")
    dec.add_argument("--codes", required=True, help="comma-separated code ids, e.g. 3,17,5")
    dec.add_argument("--device", default="cpu")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("fit", "validate"):
        from lm_latent.lightning_cli import run_cli

        return run_cli(lambda: lightning_cli(argv))
    parser = _parser()
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(argv)
    try:
        check_codebook_file(args.checkpoint)
        return {"encode": _encode, "decode": _decode}[args.command](args)
    except (ValueError, FileNotFoundError) as e:  # bad input: checkpoint, tokenizer, data (CheckpointError is one)
        print(f"error: {e}", file=sys.stderr)
        return 2


def check_codebook_file(path: str) -> None:
    """A clear error unless ``path`` is a readable stage-1 (codebook) checkpoint."""
    from lm_latent.checkpointing import check_checkpoint, read_checkpoint
    from lm_latent.codebook.module import CodebookAutoencoder

    check_checkpoint(read_checkpoint(path, mmap=True), path, "codebook", CodebookAutoencoder)


if __name__ == "__main__":
    sys.exit(main())
