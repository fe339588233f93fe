"""Experiment files: YAML composed with omegaconf (a `base:` chain, then dotted overrides).

One config system for the whole project: an experiment file is omegaconf YAML; each Lightning stage's
section is a LightningCLI `trainer`/`model`/`data` block, written out as that stage's own config file,
so a stage can always be rerun alone with `lm-latent codebook fit --config ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """Load ``path`` (following ``base: other.yaml`` chains, relative to the file) and apply
    ``key.sub=value`` overrides. Overrides must name keys that exist (typos fail loudly), except
    under ``trainer``/``model``/``data`` blocks, whose keys LightningCLI validates.

    An evaluation set given as ``null`` (``evaluation.sets.NAME: null``) removes a set the base defines:
    merging can add and change keys but not take them away."""
    cfg = _load_with_bases(Path(path), seen=())
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key.sub=value")
        key, _ = item.split("=", 1)
        if not _is_open(key) and OmegaConf.select(cfg, key, default=_MISSING) is _MISSING:
            raise KeyError(f"override '{item}': no key '{key}' in {path}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
    sets = OmegaConf.select(cfg, "evaluation.sets")
    if sets is not None:
        for name in [n for n, s in sets.items() if s is None]:
            del sets[name]
    return cfg


_MISSING = object()

# Sections whose keys are validated elsewhere (LightningCLI for stage blocks, the generator's options
# dataclass) or that are user-named (evaluation sets), so an override may add keys there.
_OPEN_PREFIXES = (
    ("codebook", "trainer"), ("codebook", "model"), ("codebook", "data"), ("codebook", "checkpoint"),
    ("mixed", "trainer"), ("mixed", "model"), ("mixed", "data"), ("mixed", "checkpoint"), ("mixed", "per_strategy"),
    ("data", "generate", "options"), ("evaluation", "sets"),
)


def _is_open(key: str) -> bool:
    parts = tuple(key.split("."))
    return any(parts[: len(p)] == p and len(parts) > len(p) for p in _OPEN_PREFIXES)


def _load_with_bases(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"experiment file not found: {path}")
    if path in seen:
        raise ValueError(f"{path}: circular 'base:' chain")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ValueError(f"{path}: an experiment file must be a YAML mapping")
    base = cfg.pop("base", None)
    if base is None:
        return cfg
    parent = _load_with_bases(path.parent / str(base), seen + (path,))
    return OmegaConf.merge(parent, cfg)


def to_plain(cfg: Any) -> Any:
    """Resolved plain Python containers (for YAML dumps, hashing and LightningCLI)."""
    if isinstance(cfg, DictConfig) or OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def save_yaml(obj: Any, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(to_plain(obj))))
