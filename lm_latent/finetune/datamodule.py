"""Stage-2 data: canonical examples + a tokenizer + cached latent codes -> mixed-token batches.

    dm = MixedTokenDataModule("prosqa", "train.json", "tok/", codes_file="codes/train.json",
                              val_file="valid.json", val_codes_file="codes/val.json",
                              strategy="latent_ar", global_batch_size=32)

The extended tokenizer (base tokenizer + ``<latent_i>``, ``<boLatent>``, ``<eoLatent>``) is built here
and by :class:`~lm_latent.finetune.module.MixedTokenLM` from the same directory and codebook size, in the
same way, so their ids agree; ``setup`` checks that they do and writes the tokenizer next to the run's
checkpoints (``<default_root_dir>/tokenizer``).

Every sample's k is drawn per use from (seed, epoch, example id) (see ``lm_latent.mixing.strategies``);
the epoch reaches the dataset through the batch sampler (see ``lm_latent.finetune.batching``).
Validation and test draw with epoch 0 every time, so ``val/loss`` compares across epochs; the
curriculum strategy, whose k is a function of the epoch, uses the current epoch there too.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path
from typing import Mapping, Sequence

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from lm_latent.codebook.codes_file import CodesSourceError, CodeTable, check_codes_source, load_codes
from lm_latent.data.errors import DataError
from lm_latent.data.tokenization import TokenizedExample, load_tokenizer, tokenize_examples
from lm_latent.finetune.batching import LengthBucketBatchSampler, MixedCollator, pad_share
from lm_latent.mixing.sequences import build_sequence, longest_sequence_length, sequence_length
from lm_latent.mixing.strategies import MixingStrategy, Replacement, choose
from lm_latent.mixing.tokens import LatentVocab, add_latent_tokens
from lm_latent.training import (
    BatchPlan,
    EpochSampler,
    ResumableDataLoader,
    apply_batch_plan,
    index_sampler,
    plan_batches,
)

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 16


def extended_tokenizer(tokenizer_dir: str | Path, num_codes: int):
    """The tokenizer of ``tokenizer_dir`` with the latent tokens added (none when ``num_codes`` is 0)."""
    tok = load_tokenizer(tokenizer_dir)
    vocab = add_latent_tokens(tok, num_codes) if num_codes > 0 else None
    return tok, vocab


class MixedTokenDataset(Dataset):
    """Mixed sequences of tokenized examples; item ``(index, epoch)`` or ``index`` (uses ``self.epoch``).

    ``fixed_epoch`` pins the draw (evaluation sets), whatever epoch is asked for.
    """

    def __init__(
        self,
        examples: Sequence[TokenizedExample],
        codes: Mapping[str, Sequence[int]] | None,
        strategy: MixingStrategy,
        latent_vocab: LatentVocab | None,
        chunk_size: int,
        seed: int = 0,
        fixed_epoch: int | None = None,
        max_length: int | None = None,
    ) -> None:
        if strategy.needs_codes and (codes is None or latent_vocab is None):
            raise ValueError(f"strategy '{strategy.name}' replaces CoT chunks and needs a codes file")
        self.examples = list(examples)
        self.codes = codes
        self.strategy = strategy
        self.latent_vocab = latent_vocab
        self.chunk_size = chunk_size
        self.seed = seed
        self.fixed_epoch = fixed_epoch
        self.max_length = max_length
        self.epoch = 0
        self._lengths: tuple[int, list[int]] | None = None
        self._bucket_lengths: list[int] | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _epoch(self, epoch: int | None) -> int:
        if self.fixed_epoch is not None:
            return self.fixed_epoch
        return self.epoch if epoch is None else epoch

    def replacement(self, index: int, epoch: int | None = None) -> Replacement:
        ex = self.examples[index]
        n = self.strategy.replaceable_chunks(len(ex.cot_ids), self.chunk_size)
        return choose(self.strategy, ex.id, n, self.chunk_size, self.seed, self._epoch(epoch))

    def lengths(self, epoch: int | None = None) -> list[int]:
        """Every sample's sequence length in ``epoch``, after truncation (cached for the last epoch asked)."""
        epoch = self._epoch(epoch)
        if self._lengths is None or self._lengths[0] != epoch:
            out = self._untruncated_lengths(epoch)
            self._lengths = (epoch, [min(n, self.max_length) for n in out] if self.max_length else out)
        return self._lengths[1]

    def _untruncated_lengths(self, epoch: int) -> list[int]:
        out = []
        for i, ex in enumerate(self.examples):
            r = self.replacement(i, epoch)
            out.append(sequence_length(ex, r.chunks, self.chunk_size, r.include_cot))
        return out

    def longest_lengths(self) -> list[int]:
        """Every sample's longest sequence before truncation, over the draws this dataset makes: its one
        draw for a fixed epoch (evaluation sets), every draw the strategy can make in any epoch otherwise."""
        if self.fixed_epoch is not None:
            return self._untruncated_lengths(self.fixed_epoch)
        return [longest_sequence_length(ex, self.strategy, self.chunk_size) for ex in self.examples]

    def truncation(self) -> dict:
        """How ``max_length`` cuts this dataset: ``examples``, ``truncated`` (samples longer than
        ``max_length`` in some draw, see :meth:`longest_lengths`), ``longest`` (untruncated), ``max_length``
        and the ids of the first truncated samples (``first_ids``). The answer and EOS end every sequence,
        so a truncated sample always loses the end of its answer (at least the EOS)."""
        longest = self.longest_lengths()
        cut = [i for i, n in enumerate(longest) if self.max_length and n > self.max_length]
        return {
            "examples": len(longest), "truncated": len(cut), "max_length": self.max_length,
            "longest": max(longest, default=0), "first_ids": [self.examples[i].id for i in cut[:5]],
        }

    def bucket_lengths(self, epoch: int | None = None) -> list[int]:
        """What batches are bucketed on: every sample's length before any chunk is replaced (prompt +
        CoT + answer; prompt + answer for ``sol_only``), capped at ``max_length``.

        It does not depend on the draw (``epoch`` is accepted for the batch sampler and ignored), so
        bucketing leaves the number of latent chunks as random within a batch as across the data;
        sorting by :meth:`lengths` would group samples by it (each latent chunk is L - 1 tokens shorter).
        """
        if self._bucket_lengths is None:
            include_cot = self.strategy.includes_cot
            out = [sequence_length(ex, (), self.chunk_size, include_cot) for ex in self.examples]
            self._bucket_lengths = [min(n, self.max_length) for n in out] if self.max_length else out
        return self._bucket_lengths

    def __getitem__(self, index) -> dict:
        index, epoch = index if isinstance(index, tuple) else (index, None)
        ex = self.examples[index]
        r = self.replacement(index, epoch)
        codes = self.codes.get(ex.id) if (self.codes is not None and r.k) else None
        ids, labels = build_sequence(ex, codes, r.chunks, self.latent_vocab, self.chunk_size, include_cot=r.include_cot)
        if self.max_length:
            ids, labels = ids[: self.max_length], labels[: self.max_length]
        return {"input_ids": ids, "labels": labels, "k": r.k, "id": ex.id}


class MixedTokenDataModule(pl.LightningDataModule):
    """Canonical examples (``dataset`` reader + files) + tokenizer dir + codes files -> mixed batches.

    Args:
        dataset: reader name for :func:`lm_latent.data.readers.read_examples` ("prosqa", "gsm8k", "canonical", ...).
        train_file / val_file / test_file: data files (val and test optional; ``test`` falls back to val).
        tokenizer_dir: the base tokenizer (the one stage 1 chunked the CoTs with).
        codes_file / val_codes_file / test_codes_file: stage-1 code tables, keyed by example id. Each must
            have been encoded from its split's data file (checked against the digest the table records;
            a table without one is used with a warning). The val and test ones default to
            ``codes_file`` only where that was encoded from the same content; otherwise that is an error.
            Not needed by the ``cot``/``sol_only`` baselines.
        strategy: one of ``lm_latent.mixing.strategies.STRATEGIES``; ``m_values``, ``epochs_per_stage``,
            ``chunks_per_stage``, ``poisson_rate`` and ``partial_chunk`` (``"text"``: a CoT's last, shorter
            chunk always stays text; ``"latent"``: it can be replaced too) are its options.
        seed: seeds the k draws (with the epoch and the example id) and the shuffling.
        global_batch_size / micro_batch_size: the global batch is the configured quantity; per-device
            micro batch and gradient accumulation are derived from the world size.
        eval_batch_size: per-device batch for validation/test (default: the micro batch).
        max_length: truncate longer sequences on the right (None: no limit). Truncated examples are
            counted per split at setup, logged, and written to ``<default_root_dir>/data_report.json``.
        allow_answer_truncation: train on examples that ``max_length`` cuts. The answer and EOS end
            every sequence, so a cut always removes the end of the answer; by default (False) setup stops
            with an error when any training example is longer than ``max_length`` in some draw.
        megabatch_batches: length bucketing sorts within windows of this many batches (by each sample's
            length before replacement, so the number of latent chunks stays random within a batch).
        pad_to_multiple_of: round each batch's padded length up to a multiple of this.
        chunk_size: only for runs without a codes file (else the code table's chunk size is used; a
            different value here is an error).
    """

    def __init__(
        self,
        dataset: str,
        train_file: str,
        tokenizer_dir: str,
        codes_file: str | None = None,
        val_file: str | None = None,
        val_codes_file: str | None = None,
        test_file: str | None = None,
        test_codes_file: str | None = None,
        strategy: str = "latent_ar",
        m_values: list[int] | None = None,
        epochs_per_stage: int = 1,
        chunks_per_stage: int = 1,
        poisson_rate: float | None = None,
        partial_chunk: str = "text",
        seed: int = 0,
        global_batch_size: int = 32,
        micro_batch_size: int | None = None,
        eval_batch_size: int | None = None,
        max_length: int | None = None,
        allow_answer_truncation: bool = False,
        megabatch_batches: int = 64,
        pad_to_multiple_of: int | None = None,
        chunk_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.strategy = MixingStrategy(
            strategy,
            tuple(m_values) if m_values is not None else None,
            epochs_per_stage,
            chunks_per_stage,
            poisson_rate,
            partial_chunk,
        )
        if self.strategy.needs_codes and not codes_file:
            raise ValueError(f"data.codes_file is required by strategy '{strategy}' (it replaces CoT chunks by codes)")
        self.plan: BatchPlan = plan_batches(global_batch_size, 1, micro_batch_size)
        self.train_set: MixedTokenDataset | None = None
        self.val_set: MixedTokenDataset | None = None
        self.test_set: MixedTokenDataset | None = None
        #: Per split, how max_length cuts it (MixedTokenDataset.truncation); filled by build_dataset.
        self.truncation: dict[str, dict] = {}

    # -- vocabulary ------------------------------------------------------------------------------
    @cached_property
    def code_table(self) -> CodeTable | None:
        return load_codes(self.hparams.codes_file) if self.hparams.codes_file else None

    @property
    def num_codes(self) -> int:
        """Codebook size K (0 without a codes file: the vocabulary is then not extended)."""
        return self.code_table.num_codes if self.code_table is not None else 0

    @property
    def chunk_size(self) -> int:
        given = self.hparams.chunk_size
        if self.code_table is None:
            return given or DEFAULT_CHUNK_SIZE
        if given is not None and given != self.code_table.chunk_size:
            raise ValueError(
                f"data.chunk_size={given} differs from the chunk size {self.code_table.chunk_size} "
                f"of {self.hparams.codes_file}; the codes only make sense with the chunks they were made from"
            )
        return self.code_table.chunk_size

    @cached_property
    def _tokenizer_and_vocab(self):
        return extended_tokenizer(self.hparams.tokenizer_dir, self.num_codes)

    @property
    def tokenizer(self):
        """The extended tokenizer (what the model's vocabulary must match)."""
        return self._tokenizer_and_vocab[0]

    @property
    def latent_vocab(self) -> LatentVocab | None:
        return self._tokenizer_and_vocab[1]

    # -- datasets ---------------------------------------------------------------------------------
    def _codes_for(self, split: str) -> tuple[str | None, CodeTable | None]:
        own = {"val": self.hparams.val_codes_file, "test": self.hparams.test_codes_file}.get(split)
        if split == "train" or not own:
            return self.hparams.codes_file, self.code_table
        table = load_codes(own)
        if (table.num_codes, table.chunk_size) != (self.num_codes, self.chunk_size):
            raise ValueError(
                f"{own}: codebook size {table.num_codes} / chunk size {table.chunk_size} differ from "
                f"{self.hparams.codes_file} ({self.num_codes} / {self.chunk_size})"
            )
        return own, table

    def _check_codes_source(self, split: str, table: CodeTable, codes_path: str, data_file: str) -> None:
        """The code table must have been encoded from ``data_file``: ids repeat across splits, so another
        file's table would hand example i the codes of that file's example i."""
        own_key = {"train": "codes_file", "val": "val_codes_file", "test": "test_codes_file"}[split]
        fallback = split != "train" and not self.hparams[own_key]
        try:
            verified = check_codes_source(table, codes_path, data_file, split)
        except CodesSourceError as err:
            if fallback:
                raise CodesSourceError(
                    codes_path, f"data.{own_key} is not set, so the {split} split would use data.codes_file, "
                    f"but it was {err.detail}",
                ) from None
            raise
        if verified:
            return
        if fallback:
            raise CodesSourceError(
                codes_path, f"data.{own_key} is not set, so the {split} split would use data.codes_file, which does "
                f"not record the data file it was encoded from: it cannot be used for the {split} file {data_file} "
                f"(codes are looked up by example id, and ids repeat across splits); give data.{own_key}",
            )
        log.warning(
            "%s does not record the data file it was encoded from (written by hand or by an older lm-latent); "
            "cannot check that it belongs to the %s file %s", codes_path, split, data_file,
        )

    def build_dataset(self, split: str, data_file: str) -> MixedTokenDataset:
        """Read, tokenize and check one split (codes present and consistent with the chunking)."""
        from lm_latent.data.readers import read_examples

        examples = read_examples(self.hparams.dataset, data_file)
        if not examples:
            raise ValueError(f"{data_file}: no examples for split '{split}'")
        tokenized, mismatches = tokenize_examples(self.tokenizer, examples, check_roundtrip=True)
        if mismatches:
            log.warning(
                "%s: %d of %d examples tokenize differently segment by segment than as one text",
                data_file, mismatches, len(examples),
            )
        codes_path, table = self._codes_for(split)
        if self.strategy.needs_codes:
            self._check_codes_source(split, table, codes_path, data_file)
            self._check_codes(tokenized, table, codes_path, data_file)
        fixed = None if (split == "train" or self.strategy.depends_on_epoch_only) else 0
        dataset = MixedTokenDataset(
            tokenized,
            table.codes if table is not None else None,
            self.strategy,
            self.latent_vocab,
            self.chunk_size,
            seed=self.hparams.seed,
            fixed_epoch=fixed,
            max_length=self.hparams.max_length,
        )
        self._check_truncation(split, data_file, dataset)
        return dataset

    def _check_truncation(self, split: str, data_file: str, dataset: MixedTokenDataset) -> None:
        """Count the examples max_length cuts; log them; stop when it would cut training answers."""
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        report = {"file": str(data_file), **dataset.truncation()}
        self.truncation[split] = report
        n, total, limit = report["truncated"], report["examples"], report["max_length"]
        if not n:
            if limit and rank_zero_only.rank == 0:
                log.info("%s: no example longer than max_length=%d (longest %d tokens)", split, limit, report["longest"])
            return
        what = (
            f"{n} of {total} {split} examples are longer than data.max_length={limit}"
            + (" in some draw" if dataset.fixed_epoch is None else "")
            + f" (longest {report['longest']} tokens; first: {', '.join(report['first_ids'])}); truncation on the "
            "right cuts the end of their answer (at least the EOS)"
        )
        if split == "train" and not self.hparams.allow_answer_truncation:
            raise DataError(
                data_file, f"{what}. Raise data.max_length, leave those examples out of the file, or set "
                "data.allow_answer_truncation: true to train on them cut",
            )
        if rank_zero_only.rank == 0:
            log.warning("%s: %s%s", data_file, what, " (allowed by data.allow_answer_truncation)" if split == "train" else "")

    def write_data_report(self, directory: str | Path) -> Path:
        """``data_report.json`` in ``directory``: per split, the truncation counts of :attr:`truncation`."""
        import json

        path = Path(directory) / "data_report.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"max_length": self.hparams.max_length, "truncation": self.truncation}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    def _check_codes(self, tokenized, table: CodeTable, codes_path, data_file) -> None:
        L = self.chunk_size
        missing = [t.id for t in tokenized if t.id not in table.codes]
        if missing:
            raise ValueError(
                f"{codes_path}: no codes for {len(missing)} of {len(tokenized)} examples of {data_file} "
                f"(first: {missing[:3]}); encode this file with stage 1 (or give the split's own codes file)"
            )
        for t in tokenized:
            n_cot, have = len(t.cot_ids), len(table.codes[t.id])
            if not (n_cot // L <= have <= -(-n_cot // L)):
                raise ValueError(
                    f"{codes_path}: example '{t.id}' has {have} codes but its CoT is {n_cot} tokens "
                    f"({-(-n_cot // L)} chunks of {L}); was it encoded with a different tokenizer?"
                )

    def setup(self, stage: str | None = None) -> None:
        trainer = self.trainer
        if trainer is not None:
            self.plan = apply_batch_plan(trainer, self.hparams.global_batch_size, self.hparams.micro_batch_size)
            self._check_model_vocab(trainer)
            if trainer.is_global_zero:
                self.tokenizer.save_pretrained(str(Path(trainer.default_root_dir) / "tokenizer"))
        hp = self.hparams
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = self.build_dataset("train", hp.train_file)
            report = self.padding_report()
            log.info(
                "train: %d examples, padding share %.1f%% bucketed vs %.1f%% unsorted (batch %d)",
                len(self.train_set), 100 * report["bucketed"], 100 * report["unsorted"], self.plan.micro_batch_size,
            )
        if stage in (None, "fit", "validate") and self.val_set is None and hp.val_file:
            self.val_set = self.build_dataset("val", hp.val_file)
        if stage in (None, "test") and self.test_set is None:
            if hp.test_file:
                self.test_set = self.build_dataset("test", hp.test_file)
            elif hp.val_file:
                self.test_set = self.val_set if self.val_set is not None else self.build_dataset("val", hp.val_file)
        if trainer is not None and trainer.is_global_zero and self.truncation:
            self.write_data_report(trainer.default_root_dir)

    def _check_model_vocab(self, trainer) -> None:
        module = trainer.lightning_module
        theirs = getattr(module, "latent_vocab", None) if module is not None else None
        tok = getattr(module, "tokenizer", None) if module is not None else None
        if tok is not None and (theirs != self.latent_vocab or len(tok) != len(self.tokenizer)):
            raise ValueError(
                f"the model's vocabulary ({len(tok)} tokens, latents {theirs}) does not match the data's "
                f"({len(self.tokenizer)} tokens, latents {self.latent_vocab}); give model and data the same "
                "tokenizer_dir and codebook size"
            )

    # -- loaders ----------------------------------------------------------------------------------
    def make_loader(self, dataset: MixedTokenDataset, train: bool, world_size: int = 1, rank: int = 0) -> DataLoader:
        """A bucketed loader over ``dataset`` for process ``rank`` of ``world_size``."""
        hp = self.hparams
        sampler = index_sampler(dataset, shuffle=train, seed=hp.seed, world_size=world_size, rank=rank)
        batch = self.plan.micro_batch_size if train else (hp.eval_batch_size or self.plan.micro_batch_size)
        batches = LengthBucketBatchSampler(
            sampler, batch, drop_last=False, lengths=dataset.bucket_lengths,
            megabatch_batches=hp.megabatch_batches, shuffle=train, seed=hp.seed,
        )
        pad = self.tokenizer.pad_token_id
        return ResumableDataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=MixedCollator(pad, hp.pad_to_multiple_of),
            num_workers=hp.num_workers,
            persistent_workers=hp.num_workers > 0,
        )

    def _loader(self, dataset: MixedTokenDataset | None, train: bool, split: str) -> DataLoader:
        if dataset is None:
            raise ValueError(f"no {split} data: set data.{split}_file")
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return self.make_loader(dataset, train, world, rank)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, "train").follow_fit_loop(self.trainer)

    def val_dataloader(self):
        return self._loader(self.val_set, False, "val") if self.val_set is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, "test")

    def padding_report(self, epoch: int = 0) -> dict[str, float]:
        """Padding share of this epoch's training batches: bucketed vs the same order unsorted."""
        ds = self.train_set
        if ds is None:
            raise ValueError("call setup('fit') first")
        lengths = ds.lengths(epoch)
        sampler = EpochSampler(len(ds), shuffle=True, seed=self.hparams.seed)
        sampler.set_epoch(epoch)
        bs = self.plan.micro_batch_size
        order = list(sampler)
        unsorted = [order[i : i + bs] for i in range(0, len(order), bs)]
        bucketed = LengthBucketBatchSampler(
            sampler, bs, False, ds.bucket_lengths, megabatch_batches=self.hparams.megabatch_batches,
            seed=self.hparams.seed,
        ).batches()
        return {"bucketed": pad_share(bucketed, lengths), "unsorted": pad_share(unsorted, lengths)}
