"""Export a stage-2 model as a standard Hugging Face directory.

    lm-latent mixed export --checkpoint runs/x/checkpoints/last.ckpt --out exported/

writes ``save_pretrained`` weights + config + generation config and the tokenizer, whose latent and
delimiter tokens are ordinary added tokens, so plain ``transformers`` needs nothing from this project:

    model = AutoModelForCausalLM.from_pretrained("exported/")
    tokenizer = AutoTokenizer.from_pretrained("exported/")

``lm_latent.json`` beside them records the latent layout (K, first latent id, delimiter ids) for tools
that want to split generations into codes and text (:func:`load_exported`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from lm_latent.mixing.tokens import LatentVocab, latent_vocab_of

LAYOUT_FILE = "lm_latent.json"


def export_module(module, out_dir: str | Path, dtype: str | None = None) -> Path:
    """Write ``module``'s model (a ``MixedTokenLM`` or anything with ``.model``/``.tokenizer``) to ``out_dir``."""
    from transformers import GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = module.model, module.tokenizer
    if dtype is not None:
        target = getattr(torch, dtype, None)
        if not isinstance(target, torch.dtype):
            raise ValueError(f"unknown dtype '{dtype}' (use e.g. float32, bfloat16, float16)")
        model = copy.deepcopy(model).to(target)
    # Generation defaults of the exported model: stop at EOS, pad with the tokenizer's pad token.
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=getattr(model.config, "bos_token_id", None),
    )
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    vocab: LatentVocab | None = getattr(module, "latent_vocab", None)
    layout = {"num_codes": 0}
    if vocab is not None:
        layout = {"num_codes": vocab.num_codes, "first_latent_id": vocab.first_latent_id,
                  "bo_id": vocab.bo_id, "eo_id": vocab.eo_id}
    (out / LAYOUT_FILE).write_text(json.dumps(layout, indent=2) + "\n")
    return out


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, dtype: str | None = None) -> Path:
    """Load a ``MixedTokenLM`` checkpoint (on CPU) and export it."""
    from lm_latent.checkpointing import check_checkpoint, read_checkpoint
    from lm_latent.finetune.module import MixedTokenLM

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # A truncated, foreign or stage-1 file: a CheckpointError naming it, not a traceback from deep inside.
    check_checkpoint(read_checkpoint(path, mmap=True), path, "mixed", MixedTokenLM)
    module = MixedTokenLM.load_from_checkpoint(str(path), map_location="cpu")
    return export_module(module, out_dir, dtype)


def load_exported(path: str | Path):
    """``(model, tokenizer, latent_vocab)`` of an exported directory, using plain ``transformers``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    layout_file = path / LAYOUT_FILE
    num_codes = json.loads(layout_file.read_text())["num_codes"] if layout_file.is_file() else 0
    vocab = latent_vocab_of(tokenizer, num_codes) if num_codes else None
    return model, tokenizer, vocab
