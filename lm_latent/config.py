"""Experiment files: YAML composed with omegaconf (a `base:` chain, then dotted overrides).

One config system for the whole project: an experiment file is omegaconf YAML; each Lightning stage's
section is a LightningCLI `trainer`/`model`/`data` block, written out as that stage's own config file,
so a stage can always be rerun alone with `lm-latent codebook fit --config ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """Load ``path`` (following ``base: other.yaml`` chains, relative to the file) and apply
    ``key.sub=value`` overrides. An override must name a key that exists or that the experiment
    schema knows (:data:`lm_latent.pipeline.validate.SCHEMA`; typos fail loudly, with a suggestion);
    keys under ``trainer``/``model``/``data`` blocks are checked later against the stage's LightningCLI.
    The whole result is checked by :func:`lm_latent.pipeline.validate.validate_experiment`.

    Merging can add and change keys but not take them away. Two ways to take them away: an evaluation
    set given as ``null`` (``evaluation.sets.NAME: null``) removes a set the base defines, and a
    mapping with ``_replace: true`` replaces the base's mapping at its place instead of merging into it
    (``mixed.model.lm: {_replace: true, pretrained: DIR}`` drops the base's architecture keys)."""
    from lm_latent.pipeline.validate import schema_allows, suggest_key

    cfg = _load_with_bases(Path(path), seen=())
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key.sub=value")
        key, _ = item.split("=", 1)
        if not schema_allows(key) and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise KeyError(f"override '{item}': no key '{key}' in {path}{suggest_key(key)}")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except yaml.YAMLError as e:  # e.g. a value starting with '@' or '%': quote it
            raise ValueError(f"override '{item}': not a YAML value ({str(e).splitlines()[0]}); quote it") from None
    sets = OmegaConf.select(cfg, "evaluation.sets")
    if sets is not None:
        for name in [n for n, s in sets.items() if s is None]:
            del sets[name]
    return cfg


_MISSING = object()


def _load_with_bases(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"experiment file not found: {path}")
    if path in seen:
        raise ValueError(f"{path}: circular 'base:' chain")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{path}: an experiment file must be a YAML mapping")
    base = cfg.pop("base", None)
    replaced = _pop_replacements(cfg)
    if base is None:
        return cfg
    parent = _load_with_bases(path.parent / str(base), seen + (path,))
    for keys in replaced:
        node = OmegaConf.select(parent, ".".join(keys[:-1])) if len(keys) > 1 else parent
        if isinstance(node, DictConfig) and keys[-1] in node:
            del node[keys[-1]]
    return OmegaConf.merge(parent, cfg)


def _pop_replacements(cfg: DictConfig, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The key paths of the mappings marked ``_replace: true`` (the marks removed)."""
    found = []
    # Unresolved: an interpolation may name a key only the base defines.
    for key, value in cfg.items_ex(resolve=False):
        if isinstance(value, DictConfig):
            if "_replace" in value:
                if value["_replace"] is not True:
                    raise ValueError(f"{'.'.join(prefix + (str(key),))}._replace: only `true` is meaningful, got {value['_replace']!r}")
                del value["_replace"]
                found.append(prefix + (str(key),))
            else:
                found += _pop_replacements(value, prefix + (str(key),))
    return found


def to_plain(cfg: Any) -> Any:
    """Resolved plain Python containers (for YAML dumps, hashing and LightningCLI)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def save_yaml(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(to_plain(obj))))
