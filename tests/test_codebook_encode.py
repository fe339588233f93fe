"""Encoding a dataset to latent codes: one code per chunk incl. the partial last one, the on-disk
cache is reused for identical inputs and never for changed ones, and a wrong tokenizer is refused."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch

from lm_latent.codebook import encode as encode_mod
from lm_latent.codebook.codes_file import load_codes
from lm_latent.codebook.module import CodebookAutoencoder
from test_codebook_data import write_prosqa

TINY = dict(d_model=32, n_heads=2, encoder_layers=1, prompt_layers=1, decoder_layers=1, code_dim=16)


def save_untrained(tokenizer_dir: Path, path: Path, **kw) -> Path:
    torch.manual_seed(0)
    model = CodebookAutoencoder(str(tokenizer_dir), kmeans_init=False, **{**TINY, **kw})
    trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture
def counted_encodes(monkeypatch):
    calls = []
    real = encode_mod.encode_examples

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(encode_mod, "encode_examples", counting)
    return calls


def test_codes_cover_every_chunk_and_the_cache_follows_its_inputs(tmp_path, tiny_tokenizer, counted_encodes):
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import load_tokenizer, tokenize_examples

    ckpt = save_untrained(tiny_tokenizer, tmp_path / "cb.ckpt", chunk_size=8, codebook_size=32)
    data = write_prosqa(tmp_path / "train.json", 30, seed=3)
    cache = tmp_path / "cache"
    table = encode_mod.encode_dataset(ckpt, "prosqa", data, tiny_tokenizer, cache)
    assert (table.num_codes, table.chunk_size) == (32, 8) and len(counted_encodes) == 1
    examples = read_examples("prosqa", data)
    tokd, _ = tokenize_examples(load_tokenizer(tiny_tokenizer), examples)
    for ex, t in zip(examples, tokd):
        assert len(table[ex.id]) == -(-len(t.cot_ids) // 8)  # the partial last chunk has a code too
    assert load_codes(next(cache.glob("*.codes.json"))).codes == table.codes

    again = encode_mod.encode_dataset(ckpt, "prosqa", data, tiny_tokenizer, cache)
    assert again.codes == table.codes and len(counted_encodes) == 1  # reused
    # The table records the file it was encoded from, and the split when told (a label, not a cache key).
    from lm_latent.digests import file_digest

    assert table.split is None and table.data_sha256 == file_digest(data) and table.data_file == str(data.resolve())
    as_val = encode_mod.encode_dataset(ckpt, "prosqa", data, tiny_tokenizer, cache, split="val")
    assert as_val.split == "val" and as_val.codes == table.codes and len(counted_encodes) == 1
    assert encode_mod.encode_dataset(ckpt, "prosqa", data, tiny_tokenizer, cache, split="train").split == "train"
    with pytest.raises(ValueError, match="split must be one of"):
        encode_mod.encode_dataset(ckpt, "prosqa", data, tiny_tokenizer, cache, split="dev")

    write_prosqa(data, 31, seed=3)  # same path, changed content
    changed = encode_mod.encode_dataset(ckpt, "prosqa", data, tiny_tokenizer, cache)
    assert len(counted_encodes) == 2 and len(changed.codes) == 31

    save_untrained(tiny_tokenizer, ckpt, chunk_size=8, codebook_size=32, d_model=64)  # retrained codebook
    encode_mod.encode_dataset(ckpt, "prosqa", data, tiny_tokenizer, cache)
    assert len(counted_encodes) == 3
    assert len(list(cache.glob("*.codes.json"))) == 3
    prov = load_codes(sorted(cache.glob("*.codes.json"), key=lambda p: p.stat().st_mtime)[-1]).provenance
    assert prov["chunk_size"] == 8 and prov["dataset"] == "prosqa" and prov["data_sha256"]


def test_encoding_in_batches_gives_the_same_codes(tmp_path, tiny_tokenizer):
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import load_tokenizer

    ckpt = save_untrained(tiny_tokenizer, tmp_path / "cb.ckpt", chunk_size=4, codebook_size=64)
    model = encode_mod.load_codebook(ckpt)
    examples = read_examples("prosqa", write_prosqa(tmp_path / "d.json", 12, seed=4))
    tok = load_tokenizer(tiny_tokenizer)
    assert encode_mod.encode_examples(model, tok, examples, batch_size=7) == encode_mod.encode_examples(model, tok, examples)


def test_a_different_tokenizer_is_refused(tmp_path, tiny_tokenizer):
    from lm_latent.data.tokenization import train_tokenizer

    ckpt = save_untrained(tiny_tokenizer, tmp_path / "cb.ckpt")
    other = tmp_path / "other_tok"
    train_tokenizer(["a b c d e f g"] * 10, other, vocab_size=300)
    data = write_prosqa(tmp_path / "d.json", 3, seed=0)
    with pytest.raises(ValueError, match="other_tok.*not the one the codebook was trained with"):
        encode_mod.encode_dataset(ckpt, "prosqa", data, other, tmp_path / "cache")


def test_encode_and_decode_commands(tmp_path, tiny_tokenizer, capsys):
    from lm_latent.codebook.cli import main

    ckpt = save_untrained(tiny_tokenizer, tmp_path / "cb.ckpt", codebook_size=32)
    data = write_prosqa(tmp_path / "d.json", 5, seed=0)
    out = tmp_path / "codes.json"
    argv = ["encode", "--checkpoint", str(ckpt), "--dataset", "prosqa", "--data", str(data),
            "--tokenizer", str(tiny_tokenizer), "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main(argv) == 0
    assert "5 examples" in capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert payload["num_codes"] == 32 and len(payload["codes"]) == 5
    assert main(["decode", "--checkpoint", str(ckpt), "--tokenizer", str(tiny_tokenizer),
                 "--prompt", "Is Tom a wumpus?", "--codes", "3,17,5"]) == 0
    assert capsys.readouterr().out.strip() != ""
    assert main(["decode", "--checkpoint", str(ckpt), "--tokenizer", str(tiny_tokenizer),
                 "--prompt", "x", "--codes", "3,a"]) == 2


def test_encode_all_gsm8k_train(tmp_path, tiny_tokenizer, shared_data):
    """All 7,473 GSM8K train CoTs (benchmark: `lm-latent codebook encode` prints the seconds)."""
    ckpt = save_untrained(tiny_tokenizer, tmp_path / "cb.ckpt", codebook_size=1024)
    table = encode_mod.encode_dataset(ckpt, "gsm8k", shared_data / "gsm8k" / "train.jsonl", tiny_tokenizer, tmp_path)
    assert len(table.codes) == 7473 and all(table.codes.values())
