"""Vocabulary extension: tying, both matrices when untied, unchanged old logits, new-row init."""

from __future__ import annotations

import pytest
import torch

from lm_latent.data.tokenization import load_tokenizer
from lm_latent.finetune.model import build_model
from lm_latent.finetune.vocab import embeddings_tied, extend_vocabulary, load_codebook_vectors

K = 16
SPECS = {
    "gpt2": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128},
    "llama_tied": {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True,
    },
    "llama_untied": {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": False,
    },
}


def _build(name, tiny_tokenizer):
    torch.manual_seed(0)
    tok = load_tokenizer(tiny_tokenizer)
    return build_model(SPECS[name], tok).eval(), tok


@pytest.mark.parametrize("name", list(SPECS))
def test_extension_keeps_tying_and_old_logits(name, tiny_tokenizer):
    model, tok = _build(name, tiny_tokenizer)
    n_old = len(tok)
    tied_before = embeddings_tied(model)
    assert tied_before == (name != "llama_untied")
    ids = torch.randint(0, n_old, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(ids).logits
    old_out = model.get_output_embeddings().weight.detach().clone()

    vocab = extend_vocabulary(model, tok, K)

    assert len(tok) == n_old + K + 2
    assert (vocab.first_latent_id, vocab.bo_id, vocab.eo_id) == (n_old, n_old + K, n_old + K + 1)
    assert model.get_input_embeddings().weight.shape[0] == n_old + K + 2
    assert model.get_output_embeddings().weight.shape[0] == n_old + K + 2
    assert model.config.vocab_size == n_old + K + 2
    assert embeddings_tied(model) == tied_before
    with torch.no_grad():
        after = model(ids).logits
    assert after.shape[-1] == n_old + K + 2
    assert torch.equal(after[..., :n_old], before)
    assert torch.equal(model.get_output_embeddings().weight[:n_old], old_out)
    if name == "llama_untied":
        # Both matrices were extended and initialised from their own rows.
        inp, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        assert torch.allclose(inp[n_old:], inp[:n_old].mean(0).expand(K + 2, -1))
        assert torch.allclose(out[n_old:], out[:n_old].mean(0).expand(K + 2, -1))


def test_extension_is_idempotent(tiny_tokenizer):
    model, tok = _build("llama_tied", tiny_tokenizer)
    v1 = extend_vocabulary(model, tok, K)
    rows = model.get_input_embeddings().weight.shape[0]
    v2 = extend_vocabulary(model, tok, K)
    assert v1 == v2 and model.get_input_embeddings().weight.shape[0] == rows == len(tok)


def test_random_init_matches_scale(tiny_tokenizer):
    model, tok = _build("llama_tied", tiny_tokenizer)
    n_old = len(tok)
    old_std = model.get_input_embeddings().weight[:n_old].std().item()
    extend_vocabulary(model, tok, 64, init="random", seed=3)
    new = model.get_input_embeddings().weight[n_old:]
    assert new.std().item() == pytest.approx(old_std, rel=0.1)
    assert abs(new.mean().item()) < 0.1 * old_std


def test_codebook_init_preserves_code_geometry(tiny_tokenizer, tmp_path):
    model, tok = _build("llama_untied", tiny_tokenizer)
    n_old = len(tok)
    gen = torch.Generator().manual_seed(0)
    codebook = torch.randn(K, 32, generator=gen)
    codebook[1] = codebook[0] + 0.01  # two near-identical codes
    # A vector-quantize-pytorch style checkpoint: state_dict key ending in "_codebook.embed", (1, K, D).
    ckpt = tmp_path / "codebook.ckpt"
    torch.save({"state_dict": {"quantizer._codebook.embed": codebook[None], "other.weight": torch.ones(3)}}, ckpt)
    vectors = load_codebook_vectors(ckpt, K)
    assert torch.equal(vectors, codebook)

    vocab = extend_vocabulary(model, tok, K, init="codebook", codebook_vectors=vectors, seed=0)
    for matrix in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        old, mean = matrix[:n_old], matrix[:n_old].mean(0)
        rows = matrix[vocab.first_latent_id : vocab.first_latent_id + K]
        # Codes that are close in the codebook start as close tokens; distinct codes stay distinct.
        d01 = (rows[0] - rows[1]).norm()
        d02 = (rows[0] - rows[2]).norm()
        assert d01 < 0.05 * d02
        # Spread around the mean row equals the existing rows' spread.
        spread_new = (rows - rows.mean(0)).pow(2).sum(1).mean().sqrt()
        spread_old = (old - mean).pow(2).sum(1).mean().sqrt()
        assert spread_new.item() == pytest.approx(spread_old.item(), rel=1e-3)
        # Delimiters: near the mean row, and not equal to each other.
        bo, eo = matrix[vocab.bo_id], matrix[vocab.eo_id]
        assert not torch.allclose(bo, eo)
        assert (bo - mean).norm() < 0.5 * spread_old and (eo - mean).norm() < 0.5 * spread_old


@pytest.mark.parametrize("init", ["random", "codebook"])
def test_new_rows_under_a_bf16_default_dtype(tiny_tokenizer, init):
    """A ``bf16-true`` Trainer builds the model in configure_model with bfloat16 as the default dtype: the
    seeded draws stay float32 (CPU QR has no bfloat16), so the rows are those of a float32 build."""
    import copy

    model, tok = _build("llama_untied", tiny_tokenizer)
    vectors = torch.randn(K, 32, generator=torch.Generator().manual_seed(1)) if init == "codebook" else None
    reference, ref_tok = copy.deepcopy(model), copy.deepcopy(tok)
    vocab = extend_vocabulary(reference, ref_tok, K, init=init, codebook_vectors=vectors, seed=0)
    model = model.to(torch.bfloat16)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        assert extend_vocabulary(model, tok, K, init=init, codebook_vectors=vectors, seed=0) == vocab
    finally:
        torch.set_default_dtype(default)
    new = slice(vocab.first_latent_id, vocab.first_latent_id + K)
    for ours, theirs in ((model.get_input_embeddings(), reference.get_input_embeddings()),
                         (model.get_output_embeddings(), reference.get_output_embeddings())):
        torch.testing.assert_close(ours.weight[new].float(), theirs.weight[new], rtol=0.02, atol=1e-4)


def test_bad_init_options_are_clear(tiny_tokenizer, tmp_path):
    model, tok = _build("gpt2", tiny_tokenizer)
    with pytest.raises(ValueError, match="unknown new-token init"):
        extend_vocabulary(model, tok, K, init="zeros")
    with pytest.raises(ValueError, match="needs the codebook vectors"):
        extend_vocabulary(model, tok, K, init="codebook")
    with pytest.raises(ValueError, match=r"expected \(16, D\)"):
        extend_vocabulary(model, tok, K, init="codebook", codebook_vectors=torch.zeros(8, 4))
    path = tmp_path / "x.pt"
    torch.save({"state_dict": {"enc.weight": torch.zeros(4, 4)}}, path)
    with pytest.raises(ValueError, match="no codebook of 16 vectors"):
        load_codebook_vectors(path, K)


def test_model_spec_errors(tiny_tokenizer, tmp_path):
    tok = load_tokenizer(tiny_tokenizer)
    with pytest.raises(ValueError, match="either 'pretrained"):
        build_model({"hidden_size": 8}, tok)
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        build_model({**SPECS["llama_tied"], "vocab_size": 10}, tok)
    with pytest.raises(FileNotFoundError, match="pretrained directory not found"):
        build_model({"pretrained": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="unknown keys"):
        build_model({"pretrained": str(tmp_path), "hidden_size": 3})


def test_codebook_init_from_a_stage1_checkpoint(tiny_tokenizer, tmp_path):
    import lightning.pytorch as pl

    from lm_latent.codebook.module import CodebookAutoencoder
    from lm_latent.finetune.module import MixedTokenLM

    stage1 = CodebookAutoencoder(str(tiny_tokenizer), codebook_size=K, code_dim=8, d_model=32, n_heads=2,
                                 encoder_layers=1, prompt_layers=1, decoder_layers=1, kmeans_init=False)
    trainer = pl.Trainer(accelerator="cpu", max_steps=0, logger=False, enable_checkpointing=False)
    trainer.strategy.connect(stage1)
    trainer.save_checkpoint(tmp_path / "stage1.ckpt")
    codebook = stage1.net.quantizer.codebook
    assert torch.equal(load_codebook_vectors(tmp_path / "stage1.ckpt", K), codebook)

    module = MixedTokenLM(SPECS["llama_tied"], tokenizer_dir=str(tiny_tokenizer), num_codes=K,
                          new_token_init="codebook", codebook_vectors=str(tmp_path / "stage1.ckpt"))
    module.configure_model()
    v = module.latent_vocab
    rows = module.model.get_input_embeddings().weight[v.first_latent_id : v.first_latent_id + K]
    # Distances between latent tokens are the distances between their codes, up to one scale.
    rows, codebook = rows.detach().double(), codebook.double()
    d_rows, d_codes = torch.cdist(rows, rows), torch.cdist(codebook, codebook)
    scale = d_rows.sum() / d_codes.sum()
    torch.testing.assert_close(d_rows, scale * d_codes, rtol=1e-4, atol=1e-6)
