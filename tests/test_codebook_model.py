"""The stage-1 networks, quantizer wrapper and LightningModule: shapes, targets, sync rule, checkpoints,
decoding and the previous-text ablation."""

from __future__ import annotations

import shutil

import lightning as L
import pytest
import torch

from lm_latent.codebook.module import CodebookAutoencoder, chunk_targets
from lm_latent.codebook.networks import ChunkAutoencoder, NetworkSizes
from lm_latent.codebook.quantizer import Quantizer, QuantizerOptions

TINY = dict(d_model=32, n_heads=2, encoder_layers=1, prompt_layers=1, decoder_layers=1, code_dim=16, codebook_size=16)


def _batch(vocab: int = 50, B: int = 6, L_: int = 8, context: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    chunk_ids = torch.randint(2, vocab, (B, L_), generator=g)
    chunk_mask = torch.ones(B, L_, dtype=torch.bool)
    chunk_mask[-1, 5:] = False  # a partial last chunk
    chunk_ids[~chunk_mask] = 1
    batch = {
        "prompt_ids": torch.randint(2, vocab, (B, 11), generator=g),
        "prompt_mask": torch.ones(B, 11, dtype=torch.bool),
        "chunk_ids": chunk_ids,
        "chunk_mask": chunk_mask,
        "chunk_pos": torch.arange(B),
    }
    if context:
        batch["context_ids"] = torch.randint(2, vocab, (B, 4), generator=g)
        batch["context_mask"] = torch.ones(B, 4, dtype=torch.bool)
        batch["context_mask"][0] = False  # the first chunk has no earlier text
    return batch


@pytest.mark.parametrize("context", ["chunk", "previous_text"])
@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_autoencoder_shapes_and_gradients(context, pooling):
    sizes = NetworkSizes(vocab_size=50, chunk_size=8, d_model=32, n_heads=2, encoder_layers=1, prompt_layers=1,
                         decoder_layers=1, context=context, pooling=pooling)
    net = ChunkAutoencoder(sizes, QuantizerOptions(codebook_size=16, code_dim=8, kmeans_init=False))
    out = net(**_batch(context=context == "previous_text"))
    assert out.logits.shape == (6, 8, 50) and out.codes.shape == (6,)
    assert out.codes.dtype == torch.long and int(out.codes.max()) < 16
    (out.logits.logsumexp(-1).mean() + out.commit_loss).backward()
    assert net.chunk_encoder.embed.weight.grad.abs().sum() > 0  # gradients pass the quantizer
    assert torch.isfinite(out.logits).all()


def test_targets_end_a_partial_chunk_with_eos_and_mask_the_rest():
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 1, 1]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    targets, counted = chunk_targets(ids, mask, eos_id=0)
    assert targets.tolist() == [[5, 6, 7, 8], [5, 6, 0, 1]]
    assert counted.tolist() == [[True] * 4, [True, True, True, False]]


def test_quantizer_sync_follows_the_real_world_size():
    opts = QuantizerOptions(codebook_size=8, code_dim=4, kmeans_init=False)
    with pytest.raises(ValueError, match="process group"):
        Quantizer(16, opts, sync_codebook=True)  # one process: syncing would crash inside all_reduce
    q = Quantizer(16, opts)
    assert q.with_sync(False) is q and q.sync_codebook is False
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        q.lookup(torch.tensor([8]))
    with pytest.raises(ValueError, match="positive|>= 2"):
        QuantizerOptions(codebook_size=1)


def test_quantizer_initializes_kmeans_on_many_vectors_once():
    q = Quantizer(8, QuantizerOptions(codebook_size=32, code_dim=8, kmeans_init=True))
    assert not q.initialized
    x = torch.randn(500, 8)
    q.initialize(x)
    assert q.initialized and q.training  # its mode is restored
    before = q.codebook.clone()
    q.initialize(torch.randn(500, 8) + 100)  # a second call is a no-op
    assert torch.equal(before, q.codebook)
    q.eval()
    out = q(x[:10])
    assert torch.equal(out.quantized, q.lookup(out.codes))  # eval-mode output is the code's vector


def test_checkpoint_alone_rebuilds_the_model(tmp_path, tiny_tokenizer):
    tok_dir = tmp_path / "tok"
    shutil.copytree(tiny_tokenizer, tok_dir)
    model = CodebookAutoencoder(str(tok_dir), chunk_size=8, **TINY)
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    shutil.rmtree(tok_dir)  # the checkpoint must not need the tokenizer any more
    loaded = CodebookAutoencoder.load_from_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    assert loaded.hparams.vocab_size == model.hparams.vocab_size and loaded.hparams.codebook_size == 16
    assert loaded.net.quantizer.sync_codebook is False
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert ckpt["vector_quantize_pytorch_version"] == "1.32.0"


@pytest.mark.parametrize("context", ["chunk", "previous_text"])
def test_decode_batch_matches_one_by_one_and_stops_at_eos(tiny_tokenizer, context):
    from lm_latent.codebook.decode import decode_batch, decode_codes
    from lm_latent.data.tokenization import load_tokenizer

    torch.manual_seed(0)
    tok = load_tokenizer(tiny_tokenizer)
    model = CodebookAutoencoder(str(tiny_tokenizer), chunk_size=6, context=context, kmeans_init=False, **{**TINY, "codebook_size": 8})
    prompts = [tok("Is Tom a wumpus?\n")["input_ids"], tok("What is 3 + 4?\n")["input_ids"]]
    codes = [[1, 2, 3], [7]]
    batched = decode_batch(model, prompts, codes)
    singles = [decode_batch(model, [p], [c])[0] for p, c in zip(prompts, codes)]
    assert batched == singles
    assert all(len(ids) <= 6 * len(c) for ids, c in zip(batched, codes))
    assert model.hparams.eos_id not in sum(batched, [])
    assert isinstance(decode_codes(model, tok, prompts[0], codes[0]), str)
    with pytest.raises(ValueError, match="outside the codebook"):
        decode_batch(model, prompts[:1], [[8]])


def test_one_prompt_row_per_example_equals_one_per_chunk():
    sizes = NetworkSizes(vocab_size=50, chunk_size=8, d_model=32, n_heads=2, encoder_layers=1, prompt_layers=1, decoder_layers=1)
    net = ChunkAutoencoder(sizes, QuantizerOptions(codebook_size=16, code_dim=8, kmeans_init=False)).eval()
    b = _batch()
    example = torch.tensor([0, 0, 0, 1, 1, 2])
    per_chunk = net(**{**b, "prompt_ids": b["prompt_ids"][example], "prompt_mask": b["prompt_mask"][example]})
    per_example = net(**{**b, "prompt_ids": b["prompt_ids"][:3], "prompt_mask": b["prompt_mask"][:3]}, chunk_example=example)
    assert torch.allclose(per_chunk.logits, per_example.logits, atol=1e-5)


def test_previous_text_ablation_fits_and_encodes(tmp_path, tiny_tokenizer):
    from lm_latent.codebook.datamodule import CodebookDataModule
    from lm_latent.codebook.encode import encode_examples
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import load_tokenizer
    from test_codebook_data import write_prosqa

    data = write_prosqa(tmp_path / "d.json", 20, seed=7)
    dm = CodebookDataModule("prosqa", str(data), str(tiny_tokenizer), val_fraction=0.2, chunk_size=8,
                            global_batch_size=4, context="previous_text", max_context_tokens=16)
    model = CodebookAutoencoder(str(tiny_tokenizer), chunk_size=8, context="previous_text", max_context_tokens=16,
                                kmeans_init_chunks=32, **TINY)
    trainer = L.Trainer(fast_dev_run=2, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    assert model.net.quantizer.initialized and trainer.callback_metrics["val/token_acc"] >= 0
    codes = encode_examples(model.eval(), load_tokenizer(tiny_tokenizer), read_examples("prosqa", data))
    assert all(len(c) > 0 for c in codes.values())


def test_token_conditioned_decoder_reads_every_prompt_token():
    """prompt_conditioning="tokens": the decoder cross-attends to the prompt's token states, so a
    change to one prompt token reaches the chunk's logits through attention (not only through the
    pooled vector), and greedy decoding runs on the same inputs as training."""
    sizes = NetworkSizes(vocab_size=50, chunk_size=8, d_model=32, n_heads=2, encoder_layers=1, prompt_layers=1,
                         decoder_layers=1, prompt_conditioning="tokens")
    torch.manual_seed(0)
    net = ChunkAutoencoder(sizes, QuantizerOptions(codebook_size=16, code_dim=8, kmeans_init=False)).eval()
    batch = _batch()
    out = net(**batch)
    assert out.logits.shape == (6, 8, 50)
    changed = dict(batch, prompt_ids=batch["prompt_ids"].clone())
    changed["prompt_ids"][0, 3] = (changed["prompt_ids"][0, 3] + 1) % 50
    again = net(**changed, codes=out.codes)
    assert not torch.allclose(again.logits[0], out.logits[0])  # the changed example moved
    assert torch.allclose(again.logits[1:], out.logits[1:], atol=1e-6)  # the others did not
    greedy = net.reconstruct_greedy(batch["prompt_ids"], batch["prompt_mask"], batch["chunk_pos"], out.codes)
    assert greedy.shape == (6, 8)
    # Per-example prompts shared by chunks give the same decoder inputs as one prompt row per chunk.
    shared = net(**dict(batch, prompt_ids=batch["prompt_ids"][:2], prompt_mask=batch["prompt_mask"][:2],
                        chunk_example=torch.tensor([0, 1, 0, 1, 0, 1])), codes=out.codes)
    rows = torch.tensor([0, 1, 0, 1, 0, 1])
    direct = net(**dict(batch, prompt_ids=batch["prompt_ids"][rows], prompt_mask=batch["prompt_mask"][rows]), codes=out.codes)
    assert torch.allclose(shared.logits, direct.logits, atol=1e-5)
    with pytest.raises(ValueError, match="prompt_conditioning"):
        NetworkSizes(vocab_size=50, prompt_conditioning="cross")


def test_an_encoder_that_reads_the_prompt_codes_chunks_by_their_question():
    """encoder_reads_prompt: f_enc cross-attends to the prompt's tokens, so the same chunk under
    another question gets another pre-quantization vector (the default encoder sees the chunk only),
    gradients reach the prompt encoder through the encoder, and per-example prompt rows give the same
    vectors as one row per chunk."""
    base = dict(vocab_size=50, chunk_size=8, d_model=32, n_heads=2, encoder_layers=1, prompt_layers=1, decoder_layers=1)
    torch.manual_seed(0)
    net = ChunkAutoencoder(NetworkSizes(**base, encoder_reads_prompt=True),
                           QuantizerOptions(codebook_size=16, code_dim=8, kmeans_init=False))
    b = _batch()
    prompt = net.encode_prompt(b["prompt_ids"], b["prompt_mask"])
    other = net.encode_prompt(b["prompt_ids"].roll(1, dims=0), b["prompt_mask"])
    vec = net.encode(b["chunk_ids"], b["chunk_mask"], prompt=prompt)
    assert not torch.allclose(vec, net.encode(b["chunk_ids"], b["chunk_mask"], prompt=other))
    with pytest.raises(ValueError, match="encoder_reads_prompt"):
        net.encode(b["chunk_ids"], b["chunk_mask"])

    example = torch.tensor([0, 0, 0, 1, 1, 2])
    shared = net.encode(b["chunk_ids"], b["chunk_mask"], prompt=net.encode_prompt(b["prompt_ids"][:3], b["prompt_mask"][:3]).select(example))
    per_chunk = net.encode(b["chunk_ids"], b["chunk_mask"], prompt=net.encode_prompt(b["prompt_ids"][example], b["prompt_mask"][example]))
    assert torch.allclose(shared, per_chunk, atol=1e-5)

    net.train()
    net.zero_grad()
    net.encode(b["chunk_ids"], b["chunk_mask"], prompt=prompt).pow(2).sum().backward()
    assert net.prompt_encoder.embed.weight.grad.abs().sum() > 0
    out = net(**b)
    assert out.logits.shape == (6, 8, 50) and out.codes.shape == (6,)

    plain = ChunkAutoencoder(NetworkSizes(**base), QuantizerOptions(codebook_size=16, code_dim=8, kmeans_init=False))
    assert torch.equal(plain.encode(b["chunk_ids"], b["chunk_mask"], prompt=prompt),
                       plain.encode(b["chunk_ids"], b["chunk_mask"], prompt=other))


def test_an_encoder_that_reads_the_prompt_fits_and_encodes_as_in_training(tmp_path, tiny_tokenizer):
    """The codes `encode` writes are the codes the training forward pass gives the same chunks."""
    from lm_latent.codebook.datamodule import ChunkCollator, CodebookDataModule
    from lm_latent.codebook.encode import encode_examples
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import load_tokenizer
    from test_codebook_data import write_prosqa

    data = write_prosqa(tmp_path / "d.json", 20, seed=7)
    dm = CodebookDataModule("prosqa", str(data), str(tiny_tokenizer), val_fraction=0.2, chunk_size=8, global_batch_size=4)
    model = CodebookAutoencoder(str(tiny_tokenizer), chunk_size=8, encoder_reads_prompt=True, kmeans_init_chunks=32, **TINY)
    trainer = L.Trainer(fast_dev_run=2, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, dm)
    assert model.net.quantizer.initialized
    model.eval()
    examples = read_examples("prosqa", data)
    codes = encode_examples(model, load_tokenizer(tiny_tokenizer), examples, batch_size=5)
    ds = dm.train_set
    batch = ChunkCollator(dm.tokenizer.pad_token_id, 8)([ds[i] for i in range(3)])
    with torch.no_grad():
        out = model.net(**model._inputs(batch))
    ids = [ds.examples[i].id for i in range(3)]
    assert out.codes.tolist() == [c for i in ids for c in codes[i]]
