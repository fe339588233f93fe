"""MixedTokenDataModule: sequences per epoch, the epoch hand-off, bucketing, multi-process sharding.

Also holds the small synthetic stage-2 inputs (canonical examples, tokenizer, code tables) that the
other ``test_finetune_*`` files import.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import torch

from lm_latent.codebook.codes_file import CodeTable, load_codes, save_codes
from lm_latent.data.example import Example
from lm_latent.data.tokenization import load_tokenizer, tokenize_examples
from lm_latent.finetune.batching import LengthBucketBatchSampler, MixedCollator, pad_share
from lm_latent.finetune.datamodule import MixedTokenDataModule
from lm_latent.mixing.sequences import IGNORE_INDEX, build_sequence
from lm_latent.mixing.strategies import MixingStrategy, choose

K, L = 16, 4
KINDS = ["wumpus", "yumpus", "zumpus", "rempus", "gerpus", "lempus", "sterpus", "brimpus"]
NAMES = ["Tom", "Sally", "Alex", "Davis", "Stella"]
TINY_LLAMA = {
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 4, "max_position_embeddings": 512,
}


def synthetic_example(i: int, split: str) -> Example:
    """A ProsQA-shaped example: an is-a chain, 1-4 reasoning steps, a one-sentence answer."""
    r = random.Random(f"{split}:{i}")
    chain, who, hops = r.sample(KINDS, 5), r.choice(NAMES), r.randint(1, 4)
    facts = " ".join(f"Every {a} is a {b}." for a, b in zip(chain, chain[1:]))
    question = f"{facts} {who} is a {chain[0]}. Is {who} a {chain[hops]} or {r.choice(KINDS)}?"
    steps = [f"{who} is a {chain[0]}."] + [f"Every {a} is a {b}." for a, b in zip(chain[:hops], chain[1 : hops + 1])]
    return Example(question, tuple(steps), f"{who} is a {chain[hops]}.", f"{split}-{i}", "canonical")


def write_stage2_inputs(out: Path, tokenizer_dir: Path, n_train: int = 96, n_val: int = 24) -> dict[str, str]:
    """Canonical train/val files and code tables (random codes, one per chunk, and the provenance
    stage 1 writes: the data file, its digest and the split)."""
    from lm_latent.data.readers import write_canonical
    from lm_latent.digests import file_digest

    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(tokenizer_dir)
    files = {"tokenizer_dir": str(tokenizer_dir)}
    for split, n in (("train", n_train), ("val", n_val)):
        examples = [synthetic_example(i, split) for i in range(n)]
        write_canonical(examples, out / f"{split}.jsonl")
        tokenized, _ = tokenize_examples(tok, examples)
        rng = random.Random(split)
        codes = {t.id: [rng.randrange(K) for _ in t.chunks(L)] for t in tokenized}
        data = out / f"{split}.jsonl"
        provenance = {"data_file": str(data.resolve()), "data_sha256": file_digest(data), "split": split}
        save_codes(out / f"codes_{split}.json", CodeTable(K, L, codes, provenance))
        files[f"{split}_file"] = str(out / f"{split}.jsonl")
        files[f"{split}_codes"] = str(out / f"codes_{split}.json")
    return files


def datamodule(files: dict[str, str], **kwargs) -> MixedTokenDataModule:
    args = dict(
        dataset="canonical", train_file=files["train_file"], tokenizer_dir=files["tokenizer_dir"],
        codes_file=files["train_codes"], val_file=files["val_file"], val_codes_file=files["val_codes"],
        global_batch_size=8, seed=0,
    )
    args.update(kwargs)
    return MixedTokenDataModule(**args)


@pytest.fixture(scope="module")
def stage2_files(tmp_path_factory, tiny_tokenizer) -> dict[str, str]:
    return write_stage2_inputs(tmp_path_factory.mktemp("stage2"), tiny_tokenizer)


def _setup(files, **kwargs) -> MixedTokenDataModule:
    dm = datamodule(files, **kwargs)
    dm.setup("fit")
    return dm


def _seen(loader, epoch: int) -> dict[str, int]:
    """Iterate a loader as Lightning does for ``epoch`` (set_epoch on its samplers); id -> k seen."""
    from lightning.fabric.utilities.data import _set_sampler_epoch

    _set_sampler_epoch(loader, epoch)
    seen: dict[str, int] = {}
    for batch in loader:
        for ex_id, k in zip(batch["ids"], batch["k"].tolist()):
            seen[ex_id] = k
    return seen


def test_items_are_the_mixed_sequences_of_their_epoch(stage2_files):
    dm = datamodule(stage2_files)
    dm.setup("fit")
    ds = dm.train_set
    assert dm.num_codes == K and dm.chunk_size == L and len(dm.tokenizer) == dm.latent_vocab.eo_id + 1
    codes = load_codes(stage2_files["train_codes"]).codes
    for epoch in (0, 3):
        for i in range(0, len(ds), 7):
            ex = ds.examples[i]
            r = choose(MixingStrategy("latent_ar"), ex.id, ex.num_full_chunks(L), L, 0, epoch)
            item = ds[(i, epoch)]
            assert (item["input_ids"], item["labels"]) == build_sequence(ex, codes[ex.id], r.k, dm.latent_vocab, L)
            assert item["k"] == r.k and item["id"] == ex.id
            assert len(item["input_ids"]) == ds.lengths(epoch)[i]
    # Validation draws with a fixed epoch: val/loss compares across epochs.
    assert dm.val_set[(0, 0)] == dm.val_set[(0, 5)]


@pytest.mark.parametrize("num_workers", [0, 1])
def test_epoch_reaches_the_dataset_through_the_sampler(stage2_files, num_workers):
    dm = datamodule(stage2_files, num_workers=num_workers)
    dm.setup("fit")
    loader = dm.make_loader(dm.train_set, train=True)
    strategy = MixingStrategy("latent_ar")
    for epoch in (0, 1, 2):  # persistent workers keep their dataset copy: the epoch must come with the indices
        seen = _seen(loader, epoch)
        assert len(seen) == len(dm.train_set)
        expected = {ex.id: choose(strategy, ex.id, ex.num_full_chunks(L), L, 0, epoch).k for ex in dm.train_set.examples}
        assert seen == expected


def _rank_worker(rank: int, files: dict, epoch: int, out: str) -> None:
    dm = datamodule(files)
    dm.setup("fit")
    loader = dm.make_loader(dm.train_set, train=True, world_size=2, rank=rank)
    seen, batches = {}, 0
    from lightning.fabric.utilities.data import _set_sampler_epoch

    _set_sampler_epoch(loader, epoch)
    for batch in loader:
        batches += 1
        seen.update(zip(batch["ids"], batch["k"].tolist()))
    Path(out).write_text(json.dumps({"seen": seen, "batches": batches}))


def test_two_processes_see_the_same_k_as_one(stage2_files, tmp_path):
    epoch = 4
    dm = _setup(stage2_files)
    single = _seen(dm.make_loader(dm.train_set, train=True), epoch)
    outs = [str(tmp_path / f"rank{r}.json") for r in range(2)]
    ctx = torch.multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_rank_worker, args=(r, stage2_files, epoch, outs[r])) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    ranks = [json.loads(Path(o).read_text()) for o in outs]
    assert ranks[0]["batches"] == ranks[1]["batches"]  # DDP needs equal step counts
    union: dict[str, int] = {}
    for r in ranks:
        for ex_id, k in r["seen"].items():
            assert union.setdefault(ex_id, k) == k
    assert union == single
    assert set(ranks[0]["seen"]).isdisjoint(ranks[1]["seen"])  # 96 examples split evenly, no padding



def test_bucketing_cuts_padding_and_covers_every_sample(stage2_files):
    dm = _setup(stage2_files, megabatch_batches=8)
    ds = dm.train_set
    loader = dm.make_loader(ds, train=True)
    sampler: LengthBucketBatchSampler = loader.batch_sampler
    sampler.set_epoch(1)
    batches = sampler.batches()
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    assert all(len(b) == 8 for b in batches)
    report = dm.padding_report(epoch=1)
    lengths = ds.lengths(1)
    assert report["bucketed"] == pytest.approx(pad_share(batches, lengths))
    # Bucketing sorts by the length before replacement, so what is left is the spread of the k draws
    # within a batch: large for these short CoTs (up to 10 chunks of 4 tokens), still below random.
    assert report["bucketed"] < 0.75 * report["unsorted"]
    cot = _setup(stage2_files, megabatch_batches=8, strategy="cot").padding_report(epoch=1)
    assert cot["bucketed"] < 0.25 * cot["unsorted"]
    # Batch order is shuffled, not sorted by length through the epoch.
    maxima = [max(lengths[i] for i in b) for b in batches]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)


def _within_batch_spread(batches, ks, batch_size) -> float:
    """Mean over full batches of the standard deviation of k within the batch."""
    import statistics

    return statistics.mean(statistics.pstdev([ks[i] for i in b]) for b in batches if len(b) == batch_size)


@pytest.mark.parametrize("m_values", [None, [0, 8, 16, 24]], ids=["uniform_k", "m_set"])
def test_bucketing_keeps_the_number_of_latent_chunks_random_within_a_batch(tmp_path, tiny_tokenizer, m_values):
    """The paper mixes m at random within a batch. Sorting by the mixed length (each latent chunk is
    L - 1 tokens shorter) would put samples with similar m together; bucketing on the length before
    replacement keeps the within-batch spread of k that of random batches."""
    files = write_stage2_inputs(tmp_path, tiny_tokenizer, n_train=512, n_val=8)
    bs = 8
    dm = _setup(files, global_batch_size=bs, m_values=m_values)
    ds = dm.train_set
    bucketed, random_batches, redrawn = [], [], []
    for epoch in range(4):
        sampler: LengthBucketBatchSampler = dm.make_loader(ds, train=True).batch_sampler
        sampler.set_epoch(epoch)
        batches = sampler.batches()
        ks = [ds.replacement(i, epoch).k for i in range(len(ds))]
        order = list(range(len(ds)))
        random.Random(epoch).shuffle(order)
        bucketed.append(_within_batch_spread(batches, ks, bs))
        random_batches.append(_within_batch_spread([order[i : i + bs] for i in range(0, len(ds), bs)], ks, bs))
        # The same batches with k drawn independently (another epoch's draw): what "random within the
        # batch, given which samples it holds" gives.
        other = [ds.replacement(i, epoch + 1000).k for i in range(len(ds))]
        redrawn.append(_within_batch_spread(batches, other, bs))
    bucketed, random_batches, redrawn = (sum(x) / len(x) for x in (bucketed, random_batches, redrawn))
    # Batches hold samples of similar CoT length, hence similar n_full: a little less spread than fully
    # random batches (0.9x here); sorting by the mixed length gave 0.44x.
    assert bucketed > 0.8 * random_batches, (bucketed, random_batches)
    assert bucketed == pytest.approx(redrawn, rel=0.1), (bucketed, redrawn)
    # Padding still stays well below random batches'.
    report = dm.padding_report()
    assert report["bucketed"] < 0.6 * report["unsorted"], report


def test_collator_pads_right_and_masks_labels():
    collate = MixedCollator(pad_id=1, pad_to_multiple_of=4)
    batch = collate([
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "k": 0, "id": "a"},
        {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, 9], "k": 2, "id": "b"},
    ])
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 1, 1, 1, 1], [5, 6, 7, 8, 9, 1, 1, 1]]
    assert batch["labels"][0].tolist() == [-100, 6, 7] + [IGNORE_INDEX] * 5
    assert batch["attention_mask"].sum(1).tolist() == [3, 5]
    assert batch["k"].tolist() == [0, 2] and batch["ids"] == ["a", "b"]


@pytest.mark.parametrize("strategy", ["cot", "sol_only", "all_replace"])
def test_strategy_is_one_switch(stage2_files, strategy):
    dm = _setup(stage2_files, strategy=strategy)
    ds = dm.train_set
    for i in range(0, len(ds), 11):
        ex, item = ds.examples[i], ds[(i, 0)]
        if strategy == "cot":
            assert item["input_ids"] == list(ex.prompt_ids) + list(ex.cot_ids) + list(ex.answer_ids)
        elif strategy == "sol_only":
            assert item["input_ids"] == list(ex.prompt_ids) + list(ex.answer_ids)
        else:
            assert item["k"] == ex.num_full_chunks(L)


def test_partial_chunk_latent_can_replace_the_whole_cot(stage2_files):
    """``partial_chunk: latent``: a CoT's last, shorter chunk becomes a code too, so all_replace leaves
    no CoT text and latent_ar's k reaches the number of chunks, rounded up."""
    table = load_codes(stage2_files["train_codes"])
    whole = _setup(stage2_files, strategy="all_replace", partial_chunk="latent")
    vocab = whole.latent_vocab
    partial = 0
    for i, ex in enumerate(whole.train_set.examples):
        item, n = whole.train_set[(i, 0)], -(-len(ex.cot_ids) // L)
        partial += len(ex.cot_ids) % L != 0
        codes = [vocab.code_to_id(c) for c in table.codes[ex.id][:n]]
        assert item["k"] == n
        assert item["input_ids"] == list(ex.prompt_ids) + [vocab.bo_id, *codes, vocab.eo_id] + list(ex.answer_ids)
    assert partial > 0  # the fixture has CoTs with a shorter last chunk
    ar = _setup(stage2_files, strategy="latent_ar", partial_chunk="latent")
    seen = [(ar.train_set[(i, e)]["k"], len(ex.cot_ids)) for e in range(4) for i, ex in enumerate(ar.train_set.examples)]
    assert all(0 <= k <= -(-n // L) for k, n in seen)
    assert any(k * L > n for k, n in seen)  # a draw that took a shorter last chunk


def test_baselines_need_no_codes_file(stage2_files):
    dm = _setup(stage2_files, strategy="cot", codes_file=None, val_codes_file=None)
    assert dm.num_codes == 0 and dm.latent_vocab is None
    assert Counter(dm.train_set[(i, 0)]["k"] for i in range(len(dm.train_set))) == {0: len(dm.train_set)}


def test_code_problems_are_reported_with_file_and_id(stage2_files, tmp_path):
    table = load_codes(stage2_files["train_codes"])
    codes = dict(table.codes)
    first = next(iter(codes))
    short = dict(codes, **{first: codes[first][:1]})
    save_codes(tmp_path / "short.json", CodeTable(K, L, short))
    with pytest.raises(ValueError, match=rf"short.json: example '{first}' has 1 codes but its CoT is"):
        _setup(stage2_files, codes_file=str(tmp_path / "short.json"))
    del codes[first]
    save_codes(tmp_path / "missing.json", CodeTable(K, L, codes))
    with pytest.raises(ValueError, match=r"missing.json: no codes for 1 of 96 examples"):
        _setup(stage2_files, codes_file=str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="codes_file is required by strategy 'latent_ar'"):
        datamodule(stage2_files, codes_file=None)
    with pytest.raises(ValueError, match="chunk_size=8 differs"):
        _ = datamodule(stage2_files, chunk_size=8).chunk_size


def _encoded_codes(path: Path, data_file: str, tokenizer_dir: str, split: str | None, seed: int = 0) -> str:
    """A code table with the provenance stage 1 writes (data file, its digest, the split)."""
    from lm_latent.data.readers import read_examples
    from lm_latent.digests import file_digest

    tokenized, _ = tokenize_examples(load_tokenizer(tokenizer_dir), read_examples("canonical", data_file))
    rng = random.Random(seed)
    codes = {t.id: [rng.randrange(K) for _ in t.chunks(L)] for t in tokenized}
    provenance = {"data_file": str(Path(data_file).resolve()), "data_sha256": file_digest(data_file)}
    if split is not None:
        provenance["split"] = split
    save_codes(path, CodeTable(K, L, codes, provenance))
    return str(path)


@pytest.fixture
def same_id_splits(tmp_path, tiny_tokenizer) -> dict[str, str]:
    """Train and val files whose ids collide (as positional ids such as ``prosqa:0`` do) and whose CoTs
    have the same lengths, so nothing but the provenance tells their code tables apart."""
    from dataclasses import replace

    from lm_latent.data.readers import write_canonical

    train = [synthetic_example(i, "train") for i in range(32)]
    val = [replace(ex, question="Consider this. " + ex.question) for ex in train]
    write_canonical(train, tmp_path / "train.jsonl")
    write_canonical(val, tmp_path / "val.jsonl")
    files = {"tokenizer_dir": str(tiny_tokenizer), "train_file": str(tmp_path / "train.jsonl"),
             "val_file": str(tmp_path / "val.jsonl")}
    files["train_codes"] = _encoded_codes(tmp_path / "codes_train.json", files["train_file"], files["tokenizer_dir"], "train")
    files["val_codes"] = _encoded_codes(tmp_path / "codes_val.json", files["val_file"], files["tokenizer_dir"], "val", 1)
    return files


def test_codes_files_must_come_from_their_split_data_file(same_id_splits, tmp_path):
    from lm_latent.codebook.codes_file import CodesSourceError

    files = same_id_splits
    dm = _setup(files)  # every split with its own table: fine
    val_codes = load_codes(files["val_codes"]).codes
    ex = dm.val_set.examples[0]
    assert dm.val_set.codes[ex.id] == val_codes[ex.id] != load_codes(files["train_codes"]).codes[ex.id]

    # No val codes file: the training table (encoded from train.jsonl) must not serve val.jsonl by position.
    with pytest.raises(CodesSourceError) as err:
        _setup(files, val_codes_file=None)
    msg = str(err.value)
    assert "data.val_codes_file is not set" in msg
    assert files["train_codes"] in msg and files["train_file"] in msg and files["val_file"] in msg

    # The training table given as the val table, and the val table as the training one.
    with pytest.raises(CodesSourceError, match=r"codes_train\.json: encoded from .*train\.jsonl \(split 'train'\), "
                                              r"not from the val file .*val\.jsonl"):
        _setup(files, val_codes_file=files["train_codes"])
    with pytest.raises(CodesSourceError, match=r"codes_val\.json: encoded from .*val\.jsonl \(split 'val'\), "
                                              r"not from the train file .*train\.jsonl"):
        _setup(files, codes_file=files["val_codes"])
    # A test file without its own table is refused the same way.
    with pytest.raises(CodesSourceError, match=r"data\.test_codes_file is not set"):
        datamodule(files, test_file=files["val_file"]).setup("test")

    # Validating on the training file itself may share its table (the same content, the same codes).
    _setup(files, val_file=files["train_file"], val_codes_file=None)
    # A table that records only its split is checked on the split.
    only_split = CodeTable(K, L, load_codes(files["train_codes"]).codes, {"split": "train"})
    save_codes(tmp_path / "only_split.json", only_split)
    with pytest.raises(CodesSourceError, match=r"\(split 'train'\), not for the val split"):
        _setup(files, val_codes_file=str(tmp_path / "only_split.json"))
    # A table that records nothing cannot be checked: a warning for its own split, an error as a fallback.
    save_codes(tmp_path / "bare.json", CodeTable(K, L, load_codes(files["train_codes"]).codes))
    with pytest.raises(CodesSourceError, match="does not record the data file"):
        _setup(files, codes_file=str(tmp_path / "bare.json"), val_codes_file=None)
    _setup(files, codes_file=str(tmp_path / "bare.json"))


def test_truncation_is_counted_and_a_cut_training_answer_stops_setup(stage2_files, tmp_path, caplog):
    from lm_latent.data.errors import DataError

    plain = {ex.id: len(ex.prompt_ids) + len(ex.cot_ids) + len(ex.answer_ids) for ex in _setup(stage2_files).train_set.examples}
    limit = sorted(plain.values())[len(plain) // 2]
    expected = sum(n > limit for n in plain.values())
    assert 0 < expected < len(plain)
    # latent_ar can draw k = 0 for every example: each one longer than max_length as plain CoT is cut in
    # some epoch, and right truncation always cuts the answer (and EOS), which ends the sequence.
    with pytest.raises(DataError, match=rf"train\.jsonl: {expected} of {len(plain)} train examples are longer than "
                                        rf"data\.max_length={limit} in some draw .*allow_answer_truncation: true"):
        _setup(stage2_files, max_length=limit)

    with caplog.at_level("WARNING", logger="lm_latent.finetune.datamodule"):
        dm = _setup(stage2_files, max_length=limit, allow_answer_truncation=True)
    train, val = dm.truncation["train"], dm.truncation["val"]
    assert (train["truncated"], train["examples"], train["max_length"]) == (expected, len(plain), limit)
    assert train["longest"] == max(plain.values()) and train["file"] == stage2_files["train_file"]
    assert set(train["first_ids"]) <= {i for i, n in plain.items() if n > limit}
    # Validation draws once (epoch 0): counted on that draw.
    val_lengths = [len(dm.val_set[(i, 0)]["input_ids"]) for i in range(len(dm.val_set))]
    val_untruncated = [sequence_length_of(dm.val_set, i) for i in range(len(dm.val_set))]
    assert val["truncated"] == sum(n > limit for n in val_untruncated) > 0
    assert max(val_lengths) == limit
    assert f"{expected} of {len(plain)} train examples are longer than data.max_length={limit}" in caplog.text
    assert "(allowed by data.allow_answer_truncation)" in caplog.text
    # What a cut looks like: the sequence loses its EOS.
    eos = dm.tokenizer.eos_token_id
    for i, ex in enumerate(dm.train_set.examples):
        item = dm.train_set[(i, 0)]
        assert (item["input_ids"][-1] == eos) == (sequence_length_of(dm.train_set, i, 0) <= limit)

    report = json.loads(dm.write_data_report(tmp_path).read_text())
    assert report == {"max_length": limit, "truncation": json.loads(json.dumps(dm.truncation))}
    # No limit, nothing cut; a cut only on the strategy's own draws counts (sol_only has no CoT).
    assert _setup(stage2_files).truncation["train"]["truncated"] == 0
    sol_only = _setup(stage2_files, strategy="sol_only", max_length=limit).truncation["train"]
    assert sol_only["truncated"] == 0


def sequence_length_of(dataset, index: int, epoch: int | None = None) -> int:
    from lm_latent.mixing.sequences import sequence_length

    r = dataset.replacement(index, epoch)
    return sequence_length(dataset.examples[index], r.chunks, dataset.chunk_size, r.include_cot)
