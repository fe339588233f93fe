"""`lm-latent data ...`: inspect a dataset file, train a tokenizer, generate ProsQA/ProntoQA data.

    lm-latent data inspect gsm8k ../shared/data/gsm8k/train.jsonl [--tokenizer DIR] [--chunk-size 16]
    lm-latent data tokenizer --dataset gsm8k --path train.jsonl [--path more.jsonl] --out tok/ [--vocab-size 1024]
    lm-latent data tokenizer --dataset prosqa --path prosqa_train.json --out tok/ --kind word
    lm-latent data generate maze --num 5000 --seed 0 --out maze_train.json [--split test ...]
    lm-latent data tokenizer --dataset maze --path maze_train.json --out tok/ --kind maze
    lm-latent data generate prosqa --num 1000 --seed 0 --out prosqa_train.json [generator options]

Every command prints one JSON object on stdout. Bad input (a DataError: which file, line, field)
prints ``error: <message>`` on stderr and exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any

from lm_latent.data.errors import DataError
from lm_latent.data.readers import DATASETS, read_dataset


def _print(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


def cmd_inspect(args: argparse.Namespace) -> int:
    from lm_latent.data.inspection import inspect_dataset

    _print(
        inspect_dataset(
            args.dataset,
            args.path,
            tokenizer=args.tokenizer,
            chunk_size=args.chunk_size,
            strip_calculator=not args.keep_calculator,
        )
    )
    return 0


def cmd_tokenizer(args: argparse.Namespace) -> int:
    from lm_latent.data.tokenization import full_text, train_tokenizer

    datasets = args.dataset
    if len(datasets) == 1:
        datasets = datasets * len(args.path)
    if len(datasets) != len(args.path):
        raise SystemExit(_usage_error("give --dataset once, or once per --path"))
    texts: list[str] = []
    files = []
    for name, path in zip(datasets, args.path):
        result = read_dataset(name, path, strip_calculator=not args.keep_calculator)
        texts += [full_text(ex) for ex in result.examples]
        files.append({"dataset": name, "path": str(path), "examples": len(result.examples), "skipped": result.skipped})
    tok = train_tokenizer(texts, args.out, vocab_size=args.vocab_size, kind=args.kind, split_forms=not args.keep_forms)
    _print({"out": str(args.out), "vocab_size": len(tok), "texts": len(texts), "files": files})
    return 0


class GeneratorsUnavailable(RuntimeError):
    """``lm_latent.data.generators`` cannot be imported or lacks ``GENERATORS``/``write_json``."""


def load_generators() -> tuple[dict[str, tuple[type, Any]], Any]:
    """``(GENERATORS, write_json)``, imported only when a command needs them."""
    try:
        from lm_latent.data.generators import GENERATORS, write_json
    except ImportError as e:
        raise GeneratorsUnavailable(f"generate: cannot import lm_latent.data.generators ({e})") from None
    return GENERATORS, write_json


def cmd_generate(args: argparse.Namespace) -> int:
    GENERATORS, write_json = load_generators()
    options_cls, generate = GENERATORS[args.name]
    options = options_cls(**_options_from_args(options_cls, args))
    records = generate(args.num, args.seed, options)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(records, out)
    # Read the file back with the reader every later stage uses, so a bad generator fails here.
    result = read_dataset(args.name, out)
    _print(
        {
            "dataset": args.name,
            "path": str(out),
            "examples": len(result.examples),
            "seed": args.seed,
            "options": dataclasses.asdict(options),
        }
    )
    return 0


def _usage_error(message: str) -> str:
    return f"error: {message}"


def _add_dataclass_options(parser: argparse.ArgumentParser, options_cls: type) -> None:
    """One ``--field-name`` flag per dataclass field, typed from its annotation or default."""
    hints = typing.get_type_hints(options_cls)
    for f in dataclasses.fields(options_cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        kw: dict[str, Any] = {"dest": "opt_" + f.name, "default": default}
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_, **kw)
            continue
        if isinstance(default, (list, tuple)):
            item = type(default[0]) if default else str
            parser.add_argument(flag, nargs="+", type=item, help=f"{help_} (default: {default})", **kw)
            continue
        kind = type(default) if default is not None else _scalar(hints.get(f.name))
        required = default is None and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        parser.add_argument(flag, type=kind, required=required, help=f"{help_} (default: {default})", **kw)


def _options_from_args(options_cls: type, args: argparse.Namespace) -> dict[str, Any]:
    values = {}
    for f in dataclasses.fields(options_cls):
        value = getattr(args, "opt_" + f.name)
        # argparse gives lists for nargs="+"; keep a tuple-typed field a tuple (frozen, hashable).
        values[f.name] = tuple(value) if isinstance(f.default, tuple) and isinstance(value, list) else value
    return values


def _scalar(hint: Any) -> type:
    """The scalar type of an annotation such as ``int`` or ``int | None``; str when unclear."""
    for t in (hint, *typing.get_args(hint)):
        if t in (int, float, str):
            return t
    return str


def build_parser(with_generators: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lm-latent data", description="Data: inspect, tokenizer, generate.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="read a dataset file and print counts and CoT lengths as JSON")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("path", type=Path)
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer dir (default: train a 1024 BPE on the file)")
    p.add_argument("--chunk-size", type=int, default=16, help="L, CoT tokens per latent code (default: 16)")
    p.add_argument("--keep-calculator", action="store_true", help="keep GSM8K <<expr=value>> annotations")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("tokenizer", help="train a tokenizer (byte-level BPE, or word-level) on dataset texts")
    p.add_argument("--dataset", choices=DATASETS, action="append", required=True)
    p.add_argument("--path", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--kind", choices=("bpe", "word", "maze"), default="bpe",
                   help="bpe: byte-level BPE of --vocab-size; word: one token per word, for ProsQA/ProntoQA; "
                        "maze: the maze task's symbolic vocabulary")
    p.add_argument("--vocab-size", type=int, default=1024, help="BPE only: the word tokenizer's size is the data's")
    p.add_argument("--keep-forms", action="store_true",
                   help="word only: keep 'Tumpuses' one token instead of capital mark + 'tumpus' + plural ending")
    p.add_argument("--keep-calculator", action="store_true", help="keep GSM8K <<expr=value>> annotations")
    p.set_defaults(func=cmd_tokenizer)

    p = sub.add_parser("generate", help="generate ProsQA/ProntoQA-style data (Coconut's JSON format) or mazes")
    if with_generators:
        GENERATORS, _ = load_generators()
        gens = p.add_subparsers(dest="name", required=True)
        for name, (options_cls, _) in GENERATORS.items():
            g = gens.add_parser(name, help=(options_cls.__doc__ or "").strip().split("\n")[0])
            g.add_argument("--num", type=int, required=True, help="number of examples")
            g.add_argument("--seed", type=int, required=True)
            g.add_argument("--out", type=Path, required=True, help="output JSON file")
            _add_dataclass_options(g, options_cls)
            g.set_defaults(func=cmd_generate)
    else:
        # The generators are imported only when asked for, so the other commands never need them.
        p.add_argument("name", help="generator name (e.g. prosqa, prontoqa); `generate NAME -h` for options")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(with_generators=bool(argv) and argv[0] == "generate").parse_args(argv)
        return int(args.func(args) or 0)
    except SystemExit as e:  # argparse: usage errors (2) and --help (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else _report(str(e.code)))
    except (DataError, FileNotFoundError, ValueError) as e:
        return _report(str(e))
    except GeneratorsUnavailable as e:
        return _report(str(e))


def _report(message: str) -> int:
    if not message.startswith("error: "):
        message = "error: " + message
    print(message, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
