"""`MixedTokenLM`: the thin LightningModule of stage 2.

It holds a Hugging Face causal LM (``.model``), the extended tokenizer (``.tokenizer``) and the latent
layout (``.latent_vocab``), and only wires the loss, logging and the optimizer; the model, the
vocabulary extension, the data and generation live in plain functions next to it.

The LM is built in :meth:`MixedTokenLM.configure_model`, not in ``__init__``: the Trainer calls it once
the processes are up, under the strategy's init context (single device and DDP: on the device itself;
a ``*-true`` precision: in its dtype), and ``load_from_checkpoint`` calls it before loading the weights.
Construction only reads the tokenizer and adds the latent tokens, so the data and the checks that need
the vocabulary work before any weight exists. Outside a Trainer (tests, benchmarks), call
``module.configure_model()`` before using ``module.model``.

Checkpoints are self-contained: besides the weights they carry the extended tokenizer and the model's
config, so ``MixedTokenLM.load_from_checkpoint(path)`` rebuilds the module even where the original
tokenizer directory or pretrained weights are gone (and never loads pretrained weights twice).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lm_latent.finetune.generation import Generation, generate
from lm_latent.finetune.model import build_model, config_json, model_spec
from lm_latent.finetune.vocab import extend_vocabulary, load_codebook_vectors
from lm_latent.data.tokenization import load_tokenizer
from lm_latent.mixing.sequences import IGNORE_INDEX
from lm_latent.mixing.tokens import add_latent_tokens

LR_SCHEDULES = ("cosine", "linear", "constant")
ASSETS_KEY = "lm_latent"


class MixedTokenLM(pl.LightningModule):
    """Fine-tunes a causal LM on mixed latent/text sequences.

    Args:
        lm: model spec for :func:`lm_latent.finetune.model.build_model` (``model_type`` + config keys,
            or ``pretrained: DIR``).
        tokenizer_dir: the base tokenizer (default: the pretrained directory).
        num_codes: codebook size K; 0 leaves the vocabulary as it is (the CoT / Sol-Only baselines
            without a codebook).
        new_token_init: "mean", "random" or "codebook" (see ``lm_latent.finetune.vocab``).
        codebook_vectors: stage-1 file with the codebook, for ``new_token_init="codebook"``.
        init_seed: seed of the random/codebook initialisation of the new rows.
        lr, weight_decay, betas: AdamW (no decay on biases and norm weights).
        warmup_steps: linear warm-up from 0; then ``lr_schedule`` ("cosine" or "linear" decay to
            ``min_lr_ratio * lr`` at the last step, or "constant").
        gradient_checkpointing: trade compute for activation memory on large models.
    """

    def __init__(
        self,
        lm: dict[str, Any],
        tokenizer_dir: str | None = None,
        num_codes: int = 0,
        new_token_init: str = "mean",
        codebook_vectors: str | None = None,
        init_seed: int = 0,
        lr: float = 3e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 0,
        lr_schedule: str = "cosine",
        min_lr_ratio: float = 0.1,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"unknown lr_schedule '{lr_schedule}'; choose one of {', '.join(LR_SCHEDULES)}")
        tok_dir = tokenizer_dir or dict(lm).get("pretrained")
        if tok_dir is None:
            raise ValueError("MixedTokenLM needs tokenizer_dir (or a pretrained model directory holding its tokenizer)")
        self.tokenizer = load_tokenizer(tok_dir)
        # What the model takes from the base tokenizer (a from-config model's vocabulary size and special
        # ids) is fixed before the latent tokens are added; the model itself comes in configure_model.
        self._lm_spec = model_spec(lm, self.tokenizer)
        self._codebook_vectors = None
        self.latent_vocab = None
        if num_codes > 0:
            if new_token_init == "codebook" and codebook_vectors is None:
                raise ValueError("new_token_init='codebook' needs codebook_vectors (a stage-1 checkpoint)")
            if new_token_init == "codebook":
                self._codebook_vectors = load_codebook_vectors(codebook_vectors, num_codes)
            self.latent_vocab = add_latent_tokens(self.tokenizer, num_codes)
        # A model built on the CPU draws its random initialisation from the generator as it is now, not as
        # whatever ran between here and configure_model left it: the same seed, the same initial weights.
        self._init_rng_state = torch.get_rng_state()
        self.model = None

    def configure_model(self) -> None:
        """Build the LM: load or initialise it, extend its vocabulary, turn on gradient checkpointing.

        Idempotent (Lightning calls it at every fit/validate/test, and ``load_from_checkpoint`` once more).
        """
        if self.model is not None:
            return
        model = self.build_lm()
        if self.hparams.gradient_checkpointing:
            # Non-reentrant, as torch recommends; spelled out so that a new transformers default cannot change it.
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.model = model

    def build_lm(self):
        """The configured LM, vocabulary extended and new rows initialised, on the current default device.

        Under ``torch.device("meta")`` this is the architecture alone (nothing allocated, no weights read):
        what a checkpoint's shapes are compared with before the run starts."""
        hp = self.hparams
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._init_rng_state)
            model = build_model(self._lm_spec)
            if self.latent_vocab is not None:
                extend_vocabulary(model, self.tokenizer, hp.num_codes, init=hp.new_token_init,
                                  codebook_vectors=self._codebook_vectors, seed=hp.init_seed)
        rows = model.get_input_embeddings().weight.shape[0]
        if len(self.tokenizer) > rows:
            raise ValueError(f"the tokenizer has {len(self.tokenizer)} tokens but the model only {rows} embedding rows")
        return model

    # -- steps ------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, labels=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, use_cache=False)

    def _step(self, batch: dict, split: str) -> torch.Tensor:
        labels = batch["labels"]
        out = self(batch["input_ids"], batch["attention_mask"], labels)
        if split == "train":
            # Per-step values only: no batch-size bookkeeping, so no device sync in the training loop.
            self.log("train/loss", out.loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=labels.shape[0])
            self.log("train/latent_share", self._latent_share(labels), on_step=True, batch_size=labels.shape[0])
        else:
            # Token-weighted epoch mean: each batch's loss is a mean over its supervised tokens.
            targets = int((labels[:, 1:] != IGNORE_INDEX).sum())
            self.log(f"{split}/loss", out.loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=targets,
                     sync_dist=True)
        return out.loss

    def _latent_share(self, labels: torch.Tensor) -> torch.Tensor:
        """Share of supervised target tokens that are latent codes (delimiters not counted)."""
        supervised = labels[:, 1:] != IGNORE_INDEX
        if self.latent_vocab is None:
            return torch.zeros((), device=labels.device)
        latent = self.latent_vocab.is_latent(labels[:, 1:])
        return latent.sum() / supervised.sum().clamp_min(1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for p in self.model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        fused = all(p.is_cuda for p in self.model.parameters())
        opt = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas), fused=fused or None)
        if hp.lr_schedule == "constant" and hp.warmup_steps == 0:
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(hp.lr_schedule, hp.warmup_steps, total, hp.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- checkpoints ------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[ASSETS_KEY] = {"tokenizer": tokenizer_files(self.tokenizer), "config_json": config_json(self.model)}

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None, strict=None, **kwargs):
        """Lightning's ``load_from_checkpoint``, rebuilding tokenizer and architecture from the checkpoint
        itself (the files it was trained from need not exist any more)."""
        assets = read_assets(checkpoint_path)
        parent = super(MixedTokenLM, cls).load_from_checkpoint
        if assets is None:
            return parent(checkpoint_path, map_location=map_location, hparams_file=hparams_file, strict=strict, **kwargs)
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in assets["tokenizer"].items():
                mode = "w" if isinstance(content, str) else "wb"
                with open(Path(tmp) / name, mode) as f:
                    f.write(content)
            kwargs.setdefault("tokenizer_dir", tmp)
            kwargs.setdefault("lm", {"config_json": assets["config_json"]})
            # The new rows are overwritten by the checkpoint's weights: skip reading a codebook file.
            kwargs.setdefault("new_token_init", "mean")
            return parent(checkpoint_path, map_location=map_location, hparams_file=hparams_file, strict=strict, **kwargs)

    # -- generation -------------------------------------------------------------------------------
    def generate(self, prompts: list[str], **kwargs) -> list[Generation]:
        """:func:`lm_latent.finetune.generation.generate` with this module's model, tokenizer and latents."""
        if self.model is None:
            raise RuntimeError("MixedTokenLM has no model yet: call configure_model() first (a Trainer does)")
        return generate(self.model, self.tokenizer, prompts, self.latent_vocab, **kwargs)


def lr_factor(schedule: str, warmup_steps: int, total_steps: int, min_ratio: float):
    """Multiplier of the base lr at each optimizer step: linear warm-up, then the schedule's decay."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * shape

    return factor


def tokenizer_files(tokenizer) -> dict[str, str | bytes]:
    """The tokenizer's ``save_pretrained`` files (text as str, binary files as bytes)."""
    out: dict[str, str | bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for path in sorted(Path(tmp).iterdir()):
            data = path.read_bytes()
            try:
                out[path.name] = data.decode("utf-8")
            except UnicodeDecodeError:
                out[path.name] = data
    return out


def read_assets(checkpoint_path) -> dict | None:
    """The tokenizer and config stored by :meth:`MixedTokenLM.on_save_checkpoint` (None if absent)."""
    ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
    return ckpt.get(ASSETS_KEY)
