"""Stage-1 data: every CoT chunk of every example, with its prompt and position.

One item is one chunk: (prompt ids, chunk ids, chunk position[, ids of the CoT text before it]).
Tokenization is the project's segment tokenization (question, each step and answer separately), so
the chunks are exactly the ones stage 2 replaces with codes. The tokenizer is trained on whole
samples [paper]; only the CoT is chunked. ``global_batch_size`` counts chunks over all processes.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lm_latent.data.example import Example
from lm_latent.data.tokenization import TokenizedExample, load_tokenizer, tokenize_examples
from lm_latent.training import BatchPlan, apply_batch_plan, plan_batches

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
    """All chunks of ``examples``, example by example, left to right.

    Prompts and earlier-CoT context are *left*-truncated to their maximum length (the end of a
    question holds what is asked; the end of the earlier CoT is closest to the chunk).

    ``pad_to_multiple`` appends weight-0 copies of the first chunk so the length is a multiple of the
    number of processes: the distributed sampler then adds no duplicates that would be counted twice
    in validation metrics.
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
        self.examples = list(examples)
        self.chunk_size = chunk_size
        self.max_prompt_tokens = max_prompt_tokens
        self.with_context = with_context
        self.max_context_tokens = max_context_tokens
        self.items = [(e, c) for e, ex in enumerate(self.examples) for c in range(len(ex.chunks(chunk_size)))]
        if not self.items:
            raise ValueError("no CoT chunks: every example has an empty chain of thought")
        self.num_real = len(self.items)
        self.num_padding = -self.num_real % max(pad_to_multiple, 1)

    def __len__(self) -> int:
        return self.num_real + self.num_padding

    def __getitem__(self, index: int) -> dict[str, Any]:
        real = index < self.num_real
        e, c = self.items[index if real else 0]
        ex = self.examples[e]
        cot = ex.cot_ids
        start = c * self.chunk_size
        item = {
            "index": index,
            "valid": real,
            "prompt": list(ex.prompt_ids[-self.max_prompt_tokens :]),
            "chunk": list(cot[start : start + self.chunk_size]),
            "chunk_pos": c,
        }
        if self.with_context:
            item["context"] = list(cot[max(0, start - self.max_context_tokens) : start])
        return item


class ChunkCollator:
    """Items -> a batch of tensors (picklable, for worker processes)."""

    def __init__(self, pad_id: int, chunk_size: int) -> None:
        self.pad_id = pad_id
        self.chunk_size = chunk_size

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompt_ids, prompt_mask = pad_batch([it["prompt"] for it in items], self.pad_id)
        chunk_ids, chunk_mask = pad_batch([it["chunk"] for it in items], self.pad_id, self.chunk_size)
        batch = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "valid": torch.tensor([it["valid"] for it in items], dtype=torch.bool),
            "prompt_ids": prompt_ids,
            "prompt_mask": prompt_mask,
            "chunk_ids": chunk_ids,
            "chunk_mask": chunk_mask,
            "chunk_pos": torch.tensor([it["chunk_pos"] for it in items], dtype=torch.long),
        }
        if "context" in items[0]:
            batch["context_ids"], batch["context_mask"] = pad_batch([it["context"] for it in items], self.pad_id)
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
        global_batch_size: chunks per optimizer step over all processes.
        micro_batch_size: chunks per forward pass per process (default: all of its share).
        max_prompt_tokens: prompts are left-truncated to this many tokens.
        context: "chunk", or "previous_text" to also yield the CoT tokens before each chunk.
        max_context_tokens: the earlier CoT is left-truncated to this many tokens.
        num_workers: DataLoader worker processes.
        seed: seed of the held-out split.
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
        log.info("codebook data: %d train / %d val chunks", len(self.train_set), self.val_set.num_real)

    def _loader(self, ds: ChunkDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.plan.micro_batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=ChunkCollator(self.tokenizer.pad_token_id, self.hparams.chunk_size),
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)
