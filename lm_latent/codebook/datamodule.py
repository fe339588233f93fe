"""Stage-1 data: every CoT chunk of every example, with its prompt and position.

It yields (prompt ids, chunk ids, chunk position[, ids of the CoT text before it]) for every chunk;
an item is one example with all its chunks, so each prompt is encoded once per batch.
Tokenization is the project's segment tokenization (question, each step and answer separately), so
the chunks are exactly the ones stage 2 replaces with codes. The tokenizer is trained on whole
samples [paper]; only the CoT is chunked. ``global_batch_size`` counts *examples* (each with all its
chunks) over all processes.

The training order is shuffled per epoch from (seed, epoch), each process batching its own shard, and
a fit resumed mid-epoch skips the batches the epoch already did (``lm_latent.training``): a run killed
and resumed sees the batches of an uninterrupted one. Validation goes in order.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import Dataset

from lm_latent.data.example import Example
from lm_latent.data.tokenization import TokenizedExample, load_tokenizer, tokenize_examples
from lm_latent.training import (
    BatchPlan,
    ResumableBatchSampler,
    ResumableDataLoader,
    apply_batch_plan,
    index_sampler,
    plan_batches,
)

log = logging.getLogger(__name__)


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists to ``[B, T]`` (T = ``length`` or the longest, at least 1) and a keep-mask."""
    T = max(length or 0, max((len(s) for s in seqs), default=0), 1)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = True
    return ids, mask


class ChunkDataset(Dataset):
    """One item per example: its prompt and all its CoT chunks, left to right.

    Items are whole examples so a batch encodes each prompt once for all of its chunks (prompts are
    far longer than a chunk: ProsQA's ~350 tokens vs 16). Prompts and earlier-CoT context are
    *left*-truncated to their maximum length (the end of a question holds what is asked; the end of
    the earlier CoT is closest to the chunk). Examples without a CoT have no chunks and are left out.

    ``pad_to_multiple`` appends weight-0 copies of the first example so the length is a multiple of
    the number of processes: the distributed sampler then adds no duplicates that would be counted
    twice in validation metrics.
    """

    def __init__(
        self,
        examples: Sequence[TokenizedExample],
        chunk_size: int,
        max_prompt_tokens: int,
        with_context: bool = False,
        max_context_tokens: int = 256,
        pad_to_multiple: int = 1,
    ) -> None:
        self.examples = [ex for ex in examples if ex.cot_ids]
        if not self.examples:
            raise ValueError("no CoT chunks: every example has an empty chain of thought")
        self.chunk_size = chunk_size
        self.max_prompt_tokens = max_prompt_tokens
        self.with_context = with_context
        self.max_context_tokens = max_context_tokens
        self.num_real = len(self.examples)
        self.num_padding = -self.num_real % max(pad_to_multiple, 1)

    @property
    def num_chunks(self) -> int:
        return sum(-(-len(ex.cot_ids) // self.chunk_size) for ex in self.examples)

    def __len__(self) -> int:
        return self.num_real + self.num_padding

    def __getitem__(self, index: int) -> dict[str, Any]:
        real = index < self.num_real
        ex = self.examples[index if real else 0]
        cot, L_ = ex.cot_ids, self.chunk_size
        starts = range(0, len(cot), L_)
        item = {
            "index": index,
            "valid": real,
            "prompt": list(ex.prompt_ids[-self.max_prompt_tokens :]),
            "chunks": [list(cot[s : s + L_]) for s in starts],
        }
        if self.with_context:
            item["contexts"] = [list(cot[max(0, s - self.max_context_tokens) : s]) for s in starts]
        return item


class ChunkCollator:
    """Examples -> a batch: ``B`` prompts and the ``N`` chunks of those examples, flattened.

    ``chunk_example[n]`` is the prompt row of chunk n, ``chunk_pos[n]`` its position in its CoT and
    ``valid[n]`` False for padding examples. Picklable, for worker processes.
    """

    def __init__(self, pad_id: int, chunk_size: int) -> None:
        self.pad_id = pad_id
        self.chunk_size = chunk_size

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompt_ids, prompt_mask = pad_batch([it["prompt"] for it in items], self.pad_id)
        chunks = [c for it in items for c in it["chunks"]]
        chunk_ids, chunk_mask = pad_batch(chunks, self.pad_id, self.chunk_size)
        per = [len(it["chunks"]) for it in items]
        batch = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "prompt_ids": prompt_ids,
            "prompt_mask": prompt_mask,
            "chunk_ids": chunk_ids,
            "chunk_mask": chunk_mask,
            "chunk_pos": torch.tensor([p for n in per for p in range(n)], dtype=torch.long),
            "chunk_example": torch.repeat_interleave(torch.arange(len(items)), torch.tensor(per)),
            "valid": torch.tensor([it["valid"] for it, n in zip(items, per) for _ in range(n)], dtype=torch.bool),
        }
        if "contexts" in items[0]:
            batch["context_ids"], batch["context_mask"] = pad_batch([c for it in items for c in it["contexts"]], self.pad_id)
        return batch


def split_examples(examples: Sequence[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Hold out a seeded random ``val_fraction`` of the examples (whole examples, never single chunks)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(examples) * val_fraction))
    if n_val >= len(examples):
        raise ValueError(f"only {len(examples)} example(s): too few to hold out a validation split")
    val = set(order[:n_val])
    return [ex for i, ex in enumerate(examples) if i not in val], [ex for i, ex in enumerate(examples) if i in val]


class CodebookDataModule(L.LightningDataModule):
    """CoT chunks of any dataset the readers know, for the codebook autoencoder.

    Args:
        dataset: reader name (``lm_latent.data.readers``), e.g. "prosqa", "gsm8k", "canonical".
        train_file: the training file.
        tokenizer_dir: a local Hugging Face tokenizer directory.
        val_file: a validation file; if None, ``val_fraction`` of the training examples is held out.
        val_fraction: share of training examples held out when there is no ``val_file``.
        chunk_size: L, CoT tokens per code.
        global_batch_size: examples (each with all its chunks) per optimizer step over all processes.
        micro_batch_size: examples per forward pass per process (default: all of its share).
        max_prompt_tokens: prompts are left-truncated to this many tokens.
        context: "chunk", or "previous_text" to also yield the CoT tokens before each chunk.
        max_context_tokens: the earlier CoT is left-truncated to this many tokens.
        num_workers: DataLoader worker processes.
        seed: seed of the held-out split and of the training order.
    """

    def __init__(
        self,
        dataset: str,
        train_file: str,
        tokenizer_dir: str,
        val_file: str | None = None,
        val_fraction: float = 0.05,
        chunk_size: int = 16,
        global_batch_size: int = 32,
        micro_batch_size: int | None = None,
        max_prompt_tokens: int = 512,
        context: str = "chunk",
        max_context_tokens: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if context not in ("chunk", "previous_text"):
            raise ValueError(f"context must be 'chunk' or 'previous_text', got {context!r}")
        self.save_hyperparameters()
        self.tokenizer = None
        self.train_set: ChunkDataset | None = None
        self.val_set: ChunkDataset | None = None
        self.plan: BatchPlan | None = None

    def _read(self, path: str) -> list[Example]:
        from lm_latent.data.readers import read_examples

        examples = read_examples(self.hparams.dataset, path)
        with_steps = [ex for ex in examples if ex.has_steps]
        if len(with_steps) < len(examples):
            log.warning("%s: %d example(s) without a chain of thought left out", path, len(examples) - len(with_steps))
        if not with_steps:
            raise ValueError(f"{path}: no example has a chain of thought; the codebook has nothing to learn")
        return with_steps

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.plan = (
            apply_batch_plan(self.trainer, hp.global_batch_size, hp.micro_batch_size)
            if self.trainer is not None
            else plan_batches(hp.global_batch_size, 1, hp.micro_batch_size)
        )
        if self.train_set is not None:
            return
        self.tokenizer = load_tokenizer(hp.tokenizer_dir)
        train = self._read(hp.train_file)
        if hp.val_file:
            val = self._read(hp.val_file)
        else:
            train, val = split_examples(train, hp.val_fraction, hp.seed)
        world = self.plan.world_size
        make = lambda exs, pad: ChunkDataset(  # noqa: E731
            tokenize_examples(self.tokenizer, exs)[0],
            hp.chunk_size,
            hp.max_prompt_tokens,
            with_context=hp.context == "previous_text",
            max_context_tokens=hp.max_context_tokens,
            pad_to_multiple=pad,
        )
        self.train_set = make(train, 1)
        self.val_set = make(val, world)
        log.info("codebook data: %d train / %d val chunks", self.train_set.num_chunks, self.val_set.num_chunks)

    def _loader(self, ds: ChunkDataset, shuffle: bool) -> ResumableDataLoader:
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = index_sampler(ds, shuffle=shuffle, seed=self.hparams.seed, world_size=world, rank=rank)
        return ResumableDataLoader(
            ds,
            batch_sampler=ResumableBatchSampler(sampler, self.plan.micro_batch_size),
            num_workers=self.hparams.num_workers,
            collate_fn=ChunkCollator(self.tokenizer.pad_token_id, self.hparams.chunk_size),
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.train_set, shuffle=True).follow_fit_loop(self.trainer)

    def val_dataloader(self) -> ResumableDataLoader:
        return self._loader(self.val_set, shuffle=False)
