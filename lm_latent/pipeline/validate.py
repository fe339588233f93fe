"""The whole experiment file checked before any stage runs: `lm-latent run` stops on the first
problem with one ``error: <key path>: <message>`` line and exit status 2, and writes nothing.

Three layers, in order:

1. :data:`SCHEMA`: the keys the pipeline reads, with their types, ranges and allowed values (an
   unknown key gets a did-you-mean suggestion). To accept a new key, add one line here.
2. What depends on several keys or on other code: a source of training data, generator options
   against the generator's options dataclass, strategies and evaluation sets that refer to each
   other, files that must exist.
3. The stage blocks (``codebook``/``mixed`` ``trainer``/``model``/``data``/``checkpoint``, and
   ``mixed.per_strategy``): the config each stage would be given is built as the pipeline builds it
   (with stand-ins for the files earlier stages make) and parsed by that stage's own LightningCLI
   parser, instantiating nothing.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

Check = Callable[[Any], "str | None"]  # returns what is wrong with a value, or None


class ExperimentError(ValueError):
    """A problem in an experiment file, at ``path`` (dotted keys, e.g. ``codebook.model.lr``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# ---------------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Value:
    """A leaf: one of ``types`` (``None`` allowed when ``type(None)`` is among them), then ``check``."""

    types: tuple[type, ...]
    required: bool = False
    check: Check | None = None


@dataclass(frozen=True)
class Section:
    """A mapping with known keys (``null`` allowed when ``nullable``)."""

    keys: Mapping[str, "Value | Section | Named"]
    required: bool = False
    nullable: bool = False


@dataclass(frozen=True)
class Named:
    """A mapping whose keys the user names (evaluation sets, paths), every entry checked by ``each``."""

    each: "Value | Section"
    required: bool = False


def at_least(low: float) -> Check:
    return lambda v: None if v is None or v >= low else f"must be >= {low}, got {v}"


def one_of(choices: Callable[[], typing.Iterable[str]] | typing.Iterable[str]) -> Check:
    """``choices`` may be a function, so registries are read when a file is checked, not at import."""
    def check(v: Any) -> str | None:
        allowed = sorted(choices() if callable(choices) else choices)
        if v is None or v in allowed:
            return None
        return f"unknown value {v!r}{_suggest(str(v), allowed)}; expected one of {', '.join(allowed)}"
    return check


def each(check: Check, non_empty: bool = False) -> Check:
    def run(values: list) -> str | None:
        if non_empty and not values:
            return "must not be empty"
        for i, v in enumerate(values):
            problem = check(v)
            if problem:
                return f"item {i}: {problem}"
        return None
    return run


def _datasets():
    from lm_latent.data.readers import DATASETS
    return DATASETS


def _generators():
    from lm_latent.data.generators import GENERATORS
    return GENERATORS


def _tokenizer_kinds():
    from lm_latent.data.tokenization import TOKENIZER_KINDS
    return TOKENIZER_KINDS


def _strategies():
    from lm_latent.mixing.strategies import STRATEGIES
    return STRATEGIES


def _task(v: Any) -> str | None:
    from lm_latent.evaluation.answers import TASK_OF_DATASET
    return one_of(TASK_OF_DATASET)(v)


STR, INT, FLOAT, BOOL, LIST, DICT, NONE = (str,), (int,), (int, float), (bool,), (list,), (dict,), (type(None),)
STAGE_BLOCK = Value(DICT + NONE)  # checked by the stage's own LightningCLI parser (layer 3)

SCHEMA = Section({
    "name": Value(STR, required=True),
    "seed": Value(INT, required=True, check=at_least(0)),
    "paths": Named(Value(STR + NONE)),  # the user's own values, for ${paths.x} interpolations
    "data": Section({
        "dataset": Value(STR, required=True, check=one_of(_datasets)),
        "generate": Section({
            "generator": Value(STR, required=True, check=one_of(_generators)),
            "train": Value(INT + NONE, check=at_least(1)),
            "val": Value(INT + NONE, check=at_least(1)),
            "test": Value(INT + NONE, check=at_least(1)),
            "options": Value(DICT + NONE),  # against the generator's options dataclass (layer 2)
        }, nullable=True),
        "train_file": Value(STR + NONE),
        "val_file": Value(STR + NONE),
        "test_file": Value(STR + NONE),
    }, required=True),
    "tokenizer": Section({
        "path": Value(STR + NONE),
        "kind": Value(STR, check=one_of(_tokenizer_kinds)),
        "vocab_size": Value(INT, check=at_least(1)),
        "split_forms": Value(BOOL),
    }, required=True),
    "codebook": Section({
        "trainer": STAGE_BLOCK, "model": STAGE_BLOCK, "data": STAGE_BLOCK, "checkpoint": STAGE_BLOCK,
    }, required=True),
    "mixed": Section({
        "strategies": Value(LIST, required=True, check=each(one_of(_strategies), non_empty=True)),
        "parallel": Value(INT, check=at_least(1)),
        "trainer": STAGE_BLOCK, "model": STAGE_BLOCK, "data": STAGE_BLOCK, "checkpoint": STAGE_BLOCK,
        "per_strategy": Named(Section({
            "trainer": STAGE_BLOCK, "model": STAGE_BLOCK, "data": STAGE_BLOCK, "checkpoint": STAGE_BLOCK,
        }, nullable=True)),
    }, required=True),
    "evaluation": Section({
        "max_new_tokens": Value(INT, check=at_least(1)),
        "batch_size": Value(INT, check=at_least(1)),
        "decode_latents": Value(BOOL),
        "during_fit": Section({
            "sets": Value(LIST + NONE),
            "subset": Value(INT + NONE, check=at_least(1)),
        }, nullable=True),
        "sets": Named(Section({
            "task": Value(STR, required=True, check=_task),
            "dataset": Value(STR, check=one_of(_datasets)),
            "file": Value(STR, required=True),
            "subset": Value(INT + NONE, check=at_least(1)),
            "callback_args": Value(DICT + NONE),  # keyword arguments of the set's evaluation callback
            "strategies": Value(LIST + NONE),     # evaluate only these strategies on it (default: all)
        }), required=True),
    }, required=True),
})


def _lookup(key: str) -> tuple[bool, str, list[str]]:
    """Whether the schema allows dotted ``key``; if not, the part that is unknown and the keys known there."""
    spec: Value | Section | Named = SCHEMA
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(spec, Value):  # a mapping checked elsewhere (stage blocks, generator options) is open
            return dict in spec.types, ".".join(parts[:i]), []
        if isinstance(spec, Named):
            spec = spec.each
            continue
        if part not in spec.keys:
            return False, part, list(spec.keys)
        spec = spec.keys[part]
    return True, "", []


def schema_allows(key: str) -> bool:
    """True when an override may set dotted ``key`` even if the experiment file does not (``tokenizer.kind``)."""
    return _lookup(key)[0]


def suggest_key(key: str) -> str:
    """`` (did you mean 'data.dataset'?)`` for a misspelt dotted key, else ``""``."""
    ok, part, known = _lookup(key)
    if ok or not known:
        return ""
    close = difflib.get_close_matches(part, known, n=1, cutoff=0.6)
    parts = key.split(".")
    return f" (did you mean '{'.'.join(parts[: parts.index(part)] + close)}'?)" if close else ""


def _suggest(key: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_names(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
             dict: "a mapping", type(None): "null"}
    return " or ".join(dict.fromkeys(names[t] for t in types if not (t is int and float in types)))


def _check_value(spec: Value, value: Any, path: str) -> None:
    # YAML's true/false are ints to Python: an integer key must not take them, nor a number key.
    wrong_bool = isinstance(value, bool) and bool not in spec.types
    if wrong_bool or not isinstance(value, spec.types):
        raise ExperimentError(path, f"expected {_type_names(spec.types)}, got {value!r}")
    problem = spec.check(value) if spec.check else None
    if problem:
        raise ExperimentError(path, problem)


def check_schema(node: Any, spec: Value | Section | Named = SCHEMA, path: str = "") -> None:
    """Layer 1: keys, types, ranges and allowed values of ``node`` (a plain experiment config)."""
    if isinstance(spec, Value):
        _check_value(spec, node, path)
        return
    if node is None and isinstance(spec, Section) and spec.nullable:
        return
    if not isinstance(node, dict):
        raise ExperimentError(path, f"expected a mapping, got {node!r}")
    if isinstance(spec, Named):
        for name, value in node.items():
            check_schema(value, spec.each, f"{path}.{name}" if path else str(name))
        return
    for key, value in node.items():
        sub = f"{path}.{key}" if path else str(key)
        if key not in spec.keys:
            raise ExperimentError(sub, f"unknown key{_suggest(str(key), spec.keys)}; "
                                       f"known here: {', '.join(spec.keys)}")
        check_schema(value, spec.keys[key], sub)
    for key, sub_spec in spec.keys.items():
        if getattr(sub_spec, "required", False) and key not in node:
            raise ExperimentError(f"{path}.{key}" if path else key, "missing (required)")


# ---------------------------------------------------------------------------------- cross-field checks


def check_references(cfg: dict) -> None:
    """Layer 2: what depends on several keys, on a generator's options, or on files."""
    data = cfg["data"]
    gen = data.get("generate") or {}
    if not (data.get("train_file") or gen.get("train")):
        raise ExperimentError("data", "no training data: give data.train_file or data.generate.train")
    if gen:
        _check_options(gen["generator"], gen.get("options") or {}, "data.generate.options")
    for split in ("train", "val", "test"):
        given = data.get(f"{split}_file")
        if given and not Path(given).expanduser().is_file():
            raise ExperimentError(f"data.{split}_file", f"file not found: {given}")
    tok = cfg["tokenizer"].get("path")
    if tok and not Path(tok).expanduser().is_dir():
        raise ExperimentError("tokenizer.path", f"not a directory: {tok}")

    strategies = cfg["mixed"]["strategies"]
    for name in cfg["mixed"].get("per_strategy") or {}:
        if name not in strategies:
            raise ExperimentError(f"mixed.per_strategy.{name}", f"not one of mixed.strategies ({', '.join(strategies)})")

    ev = cfg["evaluation"]
    splits = {s for s in ("train", "val", "test") if data.get(f"{s}_file") or gen.get(s)}
    for name, s in ev["sets"].items():
        for i, strategy in enumerate(s.get("strategies") or []):
            if strategy not in strategies:
                raise ExperimentError(f"evaluation.sets.{name}.strategies.{i}",
                                      f"'{strategy}' is not one of mixed.strategies ({', '.join(strategies)})")
        file = s["file"]
        if file.startswith("@"):
            if file[1:] not in splits:
                raise ExperimentError(f"evaluation.sets.{name}.file",
                                      f"'{file}' names no split the data stage makes (it makes: {', '.join(sorted(splits))})")
        elif not Path(file).expanduser().is_file():
            raise ExperimentError(f"evaluation.sets.{name}.file", f"file not found: {file} (relative to {Path.cwd()})")
    for i, name in enumerate((ev.get("during_fit") or {}).get("sets") or []):
        if name not in ev["sets"]:
            raise ExperimentError(f"evaluation.during_fit.sets.{i}",
                                  f"'{name}'{_suggest(str(name), ev['sets'])} is not an evaluation set "
                                  f"(evaluation.sets has: {', '.join(ev['sets'])})")


def _check_options(generator: str, options: dict, path: str) -> None:
    """Generator options against the generator's options dataclass: names, simple types, its own checks."""
    options_cls, _ = _generators()[generator]
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    hints = typing.get_type_hints(options_cls)
    for key, value in options.items():
        if key not in fields:
            raise ExperimentError(f"{path}.{key}", f"unknown option of {options_cls.__name__}{_suggest(key, fields)}; "
                                                   f"known: {', '.join(fields)}")
        expected = {int: INT, float: FLOAT, bool: BOOL, str: STR}.get(hints.get(key))
        if expected:
            _check_value(Value(expected), value, f"{path}.{key}")
    try:
        options_cls(**options)
    except (TypeError, ValueError) as e:
        raise ExperimentError(path, str(e)) from None


# ---------------------------------------------------------------------------------- stage blocks


def check_stage_blocks(cfg: dict) -> None:
    """Layer 3: every stage config the pipeline would write, parsed by the stage's LightningCLI parser."""
    from lm_latent.pipeline.run import Pipeline

    p = Pipeline(cfg, Path("<run folder>"))
    data = {"dataset": cfg["data"]["dataset"], "files": {}}
    gen = cfg["data"].get("generate") or {}
    for split in ("train", "val", "test"):
        if cfg["data"].get(f"{split}_file") or gen.get(split):
            data["files"][split] = f"<{split} data>"
    tok = {"dir": cfg["tokenizer"].get("path") or "<tokenizer>"}
    codes = {"files": {split: f"<{split} codes>" for split in ("train", "val") if split in data["files"]},
             "codebook_checkpoint": "<codebook checkpoint>"}

    user = {k: cfg["codebook"].get(k) or {} for k in ("trainer", "model", "data", "checkpoint")}
    _parse_stage("codebook", p.codebook_config(Path("<codebook>"), data, tok), user, {"codebook": user})
    mixed = cfg["mixed"]
    shared = {k: mixed.get(k) or {} for k in ("trainer", "model", "data", "checkpoint")}
    for strategy in mixed["strategies"]:
        own = ((mixed.get("per_strategy") or {}).get(strategy)) or {}
        origins = {f"mixed.per_strategy.{strategy}": own, "mixed": shared}
        config = p.mixed_config(strategy, Path(f"<mixed/{strategy}>"), data, tok, codes)
        _parse_stage("mixed", config, {**shared, **{k: {**shared.get(k, {}), **v} for k, v in own.items()}}, origins)


def _parse_stage(stage: str, config: dict, user: dict, origins: dict[str, dict]) -> None:
    """Parse ``config`` with ``stage``'s parser; ``user`` is what the experiment file set in it and
    ``origins`` where (key path prefix -> block), so an error names the key the user wrote."""
    from jsonargparse import ArgumentError

    def where(key: str) -> str:
        """The experiment's key path of a stage config key (``data.seed`` -> ``mixed.per_strategy.cot.data.seed``)."""
        section, _, rest = key.partition(".")
        name = rest.split(".")[0]
        for prefix, blocks in origins.items():
            if name in (blocks.get(section) or {}):
                return f"{prefix}.{key}"
        # A linked argument (the codebook's data.context -> model.context) is reported at its target.
        for prefix, blocks in origins.items():
            for other, block in blocks.items():
                if name in (block or {}):
                    return f"{prefix}.{other}.{rest}"
        return f"{list(origins)[-1]}.{key}"  # the stage's own section

    def check_keys(parser) -> None:
        known: dict[str, set[str]] = {}
        for key in parser.get_defaults().keys():
            section, _, rest = key.partition(".")
            if rest:
                known.setdefault(section, set()).add(rest.split(".")[0])
        for section, block in user.items():
            for key, value in (block or {}).items():
                if key not in known.get(section, set()):
                    elsewhere = [other for other, keys in known.items() if key in keys and other in user]
                    hint = (f" (it is set under {where(f'{elsewhere[0]}.{key}')})" if elsewhere
                            else _suggest(key, known.get(section, ())))
                    raise ExperimentError(where(f"{section}.{key}"), f"unknown key{hint} "
                                          f"(`lm-latent {stage} fit --help` lists the accepted options)")
                written = config.get(section, {}).get(key)
                extended = isinstance(value, list) and isinstance(written, list) and written[: len(value)] == value
                if written != value and not extended:
                    raise ExperimentError(where(f"{section}.{key}"), "is set by the pipeline (from the data, tokenizer "
                                                                     "and codes stages); remove it")

    try:
        _parse_only(stage, config, check_keys)
    except ArgumentError as e:
        key, message = _one_line(str(e))
        raise ExperimentError(where(key) if key else stage, message) from None


class _Parsed(Exception):
    """Raised once the stage's parser has accepted a config: nothing is instantiated."""


def _parse_only(stage: str, config: dict, before: Callable[[Any], None]) -> None:
    if stage == "codebook":
        from lm_latent.codebook.cli import codebook_cli_class
        from lm_latent.codebook.datamodule import CodebookDataModule as data_class
        from lm_latent.codebook.module import CodebookAutoencoder as model_class

        cli_class = codebook_cli_class()
    else:
        from lm_latent.finetune.cli import _cli_class
        from lm_latent.finetune.datamodule import MixedTokenDataModule as data_class
        from lm_latent.finetune.module import MixedTokenLM as model_class

        cli_class, _ = _cli_class()

    class ParseOnly(cli_class):
        def parse_arguments(self, parser, args) -> None:
            before(parser)
            super().parse_arguments(parser, args)
            raise _Parsed

    try:
        ParseOnly(model_class, data_class, args=config, run=False, parser_kwargs={"exit_on_error": False})
    except _Parsed:
        return


def _one_line(message: str) -> tuple[str | None, str]:
    """jsonargparse's (multi-line) error as (stage config key or None, one line)."""
    m = re.match(r'\s*Parser key "([^"]+)":\s*(.*)', message, re.S)
    key, body = (m.group(1), m.group(2)) if m else (None, message)
    lines = [line.strip().lstrip("- ").strip() for line in body.splitlines() if line.strip()]
    refused = [line for line in lines if "is not accepted" in line or "is required" in line]
    problem = next((line for line in lines if line.startswith("Problem with given class_path")), None)
    if refused:
        text = f"{problem.rstrip(':')}: {refused[0]}" if problem else refused[0]
    elif lines and lines[0].startswith("Does not validate against any of the Union subtypes"):
        given = next((line for line in lines if line.startswith("Given value:")), "")
        subtypes = next((line for line in lines if line.startswith("Subtypes:")), "")
        text = f"invalid value {given.removeprefix('Given value:').strip()}; expected one of {subtypes.removeprefix('Subtypes:').strip()}"
    else:
        text = " ".join(lines)
    # Python's type reprs read as noise in a config error: <class 'int'> -> int, typing.Literal[...] -> [...].
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text).replace("typing.Literal", "").replace("NoneType", "null")
    text = re.sub(r"^Expected an? (.*?)\. Got value: ", r"expected \1, got ", text)
    if m is None:
        required = re.search(r"the following arguments are required: (.*)", message)
        if required:
            return required.group(1).split(",")[0].strip(), "missing (required)"
    return key, text


def validate_experiment(cfg: Any) -> dict:
    """Check an experiment config (as :func:`lm_latent.config.load_experiment` returns it) before any stage
    runs; returns it as plain containers. Raises :class:`ExperimentError` naming the first bad key."""
    from omegaconf.errors import OmegaConfBaseException

    from lm_latent.config import to_plain

    try:
        plain = to_plain(cfg)
    except OmegaConfBaseException as e:  # an interpolation that does not resolve, a missing ??? value
        key = getattr(e, "full_key", None) or ""
        raise ExperimentError(str(key), str(e).splitlines()[0]) from None
    check_schema(plain)
    check_references(plain)
    check_stage_blocks(plain)
    return plain


__all__ = ["SCHEMA", "ExperimentError", "Named", "Section", "Value", "validate_experiment"]
