"""Stage-1 data: chunking, padding, prompt truncation, held-out split, batch plan.

Also home of the ProsQA data and tokenizer helpers the other codebook tests share.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lm_latent.data.example import Example

def write_prosqa(path: Path, num: int, seed: int) -> Path:
    """``num`` ProsQA examples from the project's generator, in Coconut's JSON format."""
    from lm_latent.data.generators import GENERATORS, write_json

    options_cls, generate = GENERATORS["prosqa"]
    write_json(generate(num, seed, options_cls()), path)
    return path


def prosqa_examples(num: int, seed: int, tmp: Path) -> list[Example]:
    from lm_latent.data.readers import read_examples

    return read_examples("prosqa", write_prosqa(tmp / f"prosqa-{num}-{seed}.json", num, seed))


def train_tiny_tokenizer(out_dir: Path, vocab_size: int = 400) -> Path:
    """A byte-level BPE trained on whole generated ProsQA samples (as the paper trains on samples)."""
    import tempfile

    from lm_latent.data.tokenization import full_text, train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        texts = [full_text(ex) for ex in prosqa_examples(400, 12345, Path(tmp))]
    train_tokenizer(texts, out_dir, vocab_size=vocab_size)
    return out_dir


@pytest.fixture(scope="session")
def prosqa_tokenizer(tmp_path_factory) -> Path:
    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


def test_dataset_yields_every_chunk_with_position_and_padding(tmp_path, prosqa_tokenizer):
    from lm_latent.codebook.datamodule import ChunkCollator, ChunkDataset
    from lm_latent.data.tokenization import load_tokenizer, tokenize_examples

    tok = load_tokenizer(prosqa_tokenizer)
    tokd, _ = tokenize_examples(tok, prosqa_examples(5, 1, tmp_path))
    ds = ChunkDataset(tokd, chunk_size=8, max_prompt_tokens=10, with_context=True, max_context_tokens=5, pad_to_multiple=4)
    assert ds.num_real == 5 and len(ds) == 8 and ds.num_chunks == sum(-(-len(t.cot_ids) // 8) for t in tokd)
    # An example's chunks concatenate back to its CoT; the last one may be shorter than L.
    first = ds[0]
    assert sum(first["chunks"], []) == list(tokd[0].cot_ids) and all(len(c) == 8 for c in first["chunks"][:-1])
    # Prompt is left-truncated (keeps the question's end); context is the CoT just before the chunk.
    assert first["prompt"] == list(tokd[0].prompt_ids[-10:])
    assert first["contexts"][0] == [] and first["contexts"][1] == list(tokd[0].cot_ids[8 - 5 : 8])

    batch = ChunkCollator(tok.pad_token_id, 8)([ds[i] for i in range(len(ds))])
    n_real, n_pad = ds.num_chunks, 3 * len(first["chunks"])  # padding examples copy the first one
    assert batch["chunk_ids"].shape == (n_real + n_pad, 8) and batch["prompt_ids"].shape[0] == 8
    assert batch["valid"].tolist() == [True] * n_real + [False] * n_pad
    k = len(first["chunks"])
    assert batch["chunk_pos"][:k].tolist() == list(range(k)) and batch["chunk_example"][:k].tolist() == [0] * k
    assert int(batch["chunk_example"][k]) == 1 and int(batch["chunk_pos"][k]) == 0
    last = n_real - 1
    assert int(batch["chunk_mask"][last].sum()) == (len(tokd[-1].cot_ids) % 8 or 8)
    assert torch.equal(batch["prompt_mask"].sum(1)[:5], torch.tensor([len(ds[i]["prompt"]) for i in range(5)]))
    assert batch["context_ids"].shape[0] == n_real + n_pad


def test_datamodule_holds_out_whole_examples_and_plans_batches(tmp_path, prosqa_tokenizer):
    from lm_latent.codebook.datamodule import CodebookDataModule

    data = write_prosqa(tmp_path / "train.json", 40, seed=2)
    dm = CodebookDataModule("prosqa", str(data), str(prosqa_tokenizer), val_fraction=0.25, global_batch_size=8, micro_batch_size=4)
    dm.setup("fit")
    train_ids = {ex.id for ex in dm.train_set.examples}
    val_ids = {ex.id for ex in dm.val_set.examples}
    assert len(val_ids) == 10 and not train_ids & val_ids
    assert dm.plan.micro_batch_size == 4 and dm.plan.accumulate_grad_batches == 2
    batch = next(iter(dm.train_dataloader()))
    assert batch["prompt_ids"].shape[0] == 4 and batch["chunk_ids"].shape[1] == 16 and "context_ids" not in batch
    assert batch["chunk_ids"].shape[0] == len(batch["chunk_example"]) >= 4


def test_datamodule_names_the_file_without_chains_of_thought(tmp_path, prosqa_tokenizer):
    from lm_latent.codebook.datamodule import CodebookDataModule
    from lm_latent.data.readers import write_canonical

    path = write_canonical([Example("q?", (), "1", "x:0", "x")], tmp_path / "empty.jsonl")
    dm = CodebookDataModule("canonical", str(path), str(prosqa_tokenizer))
    with pytest.raises(ValueError, match="empty.jsonl: no example has a chain of thought"):
        dm.setup("fit")


def _trainer_stub(world_size: int = 1, rank: int = 0, epoch: int = 0):
    """What the DataModule reads of a trainer: world size, rank and the fit loop's epoch (not restarting)."""
    from types import SimpleNamespace

    progress = SimpleNamespace(current=SimpleNamespace(processed=epoch))
    return SimpleNamespace(world_size=world_size, global_rank=rank, accumulate_grad_batches=1,
                           fit_loop=SimpleNamespace(epoch_progress=progress, restarting=False))


def _indices(loader) -> list[list[int]]:
    return [batch["index"].tolist() for batch in loader]


def test_training_order_is_seeded_per_epoch_sharded_and_resumable(tmp_path, prosqa_tokenizer):
    """The order is a function of (seed, epoch), not of torch's global random stream, so a resumed fit
    sees the same batches; it starts at the fit loop's epoch and can skip an epoch's first batches.
    Several processes: each batches its own shard of the DistributedSampler the DataModule built, which
    the loader reports as its sampler (where Lightning looks before putting in one of its own).
    Validation goes in order."""
    from torch.utils.data import DistributedSampler

    from lm_latent.codebook.datamodule import CodebookDataModule

    data = write_prosqa(tmp_path / "train.json", 40, seed=2)

    def datamodule(trainer, seed: int = 0) -> CodebookDataModule:
        dm = CodebookDataModule("prosqa", str(data), str(prosqa_tokenizer), val_fraction=0.25, global_batch_size=4, seed=seed)
        dm.trainer = trainer
        dm.setup("fit")
        return dm

    dm = datamodule(_trainer_stub(epoch=2))
    torch.manual_seed(1)
    loader = dm.train_dataloader()
    epoch2 = _indices(loader)
    assert loader.batch_sampler.epoch == 2 and len(epoch2) == len(loader) == 8  # 30 examples, batches of 4
    assert sorted(sum(epoch2, [])) == list(range(30))
    torch.manual_seed(2)
    assert _indices(datamodule(_trainer_stub(epoch=2)).train_dataloader()) == epoch2
    assert _indices(datamodule(_trainer_stub(epoch=2), seed=1).train_dataloader()) != epoch2
    loader.batch_sampler.set_epoch(3)  # Lightning's call at each epoch start
    assert _indices(loader) != epoch2
    loader.batch_sampler.set_epoch(2)
    loader.batch_sampler.resume_at(2, 3)
    assert _indices(loader) == epoch2[3:] and _indices(loader) == epoch2  # only the resumed epoch is cut
    assert sum(_indices(dm.val_dataloader()), []) == list(range(10))

    shards, val = [], []
    for rank in (0, 1):
        dm = datamodule(_trainer_stub(world_size=2, rank=rank, epoch=2))
        loader = dm.train_dataloader()
        assert isinstance(loader.sampler, DistributedSampler) and loader.sampler is loader.batch_sampler.sampler
        assert dm.plan.micro_batch_size == 2 and loader.sampler.seed == 0 and loader.sampler.epoch == 2
        shards.append(sum(_indices(loader), []))
        val.append(sum(_indices(dm.val_dataloader()), []))
    assert len(shards[0]) == len(shards[1]) == 15 and not set(shards[0]) & set(shards[1])
    assert val == [list(range(0, 10, 2)), list(range(1, 10, 2))]  # 10 examples: no padding copies
