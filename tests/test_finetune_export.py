"""`lm-latent mixed export`: a standard HF directory that plain transformers reloads and decodes identically."""

from __future__ import annotations

import json
import subprocess
import sys

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lm_latent.data.tokenization import prompt_text
from lm_latent.finetune.cli import main
from lm_latent.finetune.export import load_exported
from lm_latent.finetune.module import MixedTokenLM
from test_finetune_data import K, TINY_LLAMA, datamodule, synthetic_example, write_stage2_inputs

MODELS = {
    # GPT-2 with exact GELU: its default tanh-approximation is eight elementwise kernels, slow on busy CPUs.
    "gpt2_tied": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 512,
                  "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "activation_function": "gelu"},
    "llama_untied": {**TINY_LLAMA, "tie_word_embeddings": False},
}

# Runs in a fresh interpreter that imports transformers only: nothing from this project.
PLAIN_HF = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
path, prompts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForCausalLM.from_pretrained(path).eval()
tok = AutoTokenizer.from_pretrained(path)
tok.padding_side = "left"
enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
out = model.generate(**enc, max_new_tokens=24, do_sample=False)
rows = []
for row in out[:, enc["input_ids"].shape[1]:].tolist():
    cut = [i for i, t in enumerate(row) if t in (tok.eos_token_id, tok.pad_token_id)]
    rows.append(row[: cut[0]] if cut else row)
tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
print(json.dumps({"ids": rows, "tied": tied, "added": tok.get_added_vocab()}))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_tokenizer):
    return write_stage2_inputs(tmp_path_factory.mktemp("export_data"), tiny_tokenizer, n_train=48, n_val=8)


@pytest.mark.parametrize("name", list(MODELS))
def test_exported_directory_generates_like_the_module(name, files, tmp_path):
    pl.seed_everything(0)
    # all_replace: every training sequence opens its CoT with latents, so the model learns to emit them.
    module = MixedTokenLM(MODELS[name], tokenizer_dir=files["tokenizer_dir"], num_codes=K, lr=1e-2, lr_schedule="constant")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    trainer = pl.Trainer(accelerator="cpu", max_steps=20, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[ckpt], default_root_dir=tmp_path)
    dm = datamodule(files, strategy="all_replace", global_batch_size=8)
    trainer.fit(module, dm)
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(tmp_path / "ck" / "last.ckpt"), "--out", str(out)]) == 0

    prompts = [prompt_text(synthetic_example(i, "val").question) for i in range(6)]
    # Two prompts already in latent mode: the continuation reads latent rows of the embedding.
    prompts += [prompts[0] + "<boLatent><latent_3>", prompts[1] + "<boLatent>"]
    ours = module.generate(prompts, max_new_tokens=24)
    res = subprocess.run([sys.executable, "-c", PLAIN_HF, str(out), json.dumps(prompts)],
                         capture_output=True, text=True, check=True)
    plain = json.loads(res.stdout.strip().splitlines()[-1])
    assert plain["ids"] == [g.token_ids for g in ours]
    assert plain["tied"] == (name == "gpt2_tied")
    v = module.latent_vocab
    assert plain["added"]["<latent_0>"] == v.first_latent_id
    assert plain["added"][f"<latent_{K - 1}>"] == v.first_latent_id + K - 1
    assert (plain["added"]["<boLatent>"], plain["added"]["<eoLatent>"]) == (v.bo_id, v.eo_id)

    model, tok, vocab = load_exported(out)
    assert vocab == v and len(tok) == len(module.tokenizer)
    # Same logits over the whole extended vocabulary on mixed sequences (latent rows of both matrices).
    batch = next(iter(dm.make_loader(dm.val_set, train=False)))
    assert (batch["input_ids"] >= v.first_latent_id).any()
    with torch.no_grad():
        theirs = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        mine = module.model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert theirs.shape[-1] == len(tok)
    torch.testing.assert_close(theirs, mine, rtol=0, atol=0)
