"""`CodebookAutoencoder`: the thin LightningModule of stage 1 (losses, metrics, optimizer, logging).

The networks are plain modules in :mod:`lm_latent.codebook.networks`. Loss = reconstruction cross
entropy + the quantizer's commitment loss. Logged under ``train/`` and ``val/``: reconstruction loss,
token accuracy, exact-chunk accuracy, codebook usage (share of the K codes used on the epoch), code
perplexity and dead codes (codes unused on the epoch); validation also logs the token accuracy of the
same decoder fed *random* codes, the baseline the codes must beat to carry information.

Token and exact-chunk accuracy above are teacher-forced (each token predicted from the chunk's true
prefix), which overstates what a code carries. Validation therefore also decodes every chunk greedily
from its code and the prompt alone, the way stage 2's latent tokens are read back, and logs
``val/greedy_exact`` (share of chunks reproduced exactly, EOS of a partial chunk included),
``val/greedy_token_acc`` (share of target positions right), and both again with the random codes
(``val/greedy_exact_random``, ``val/greedy_token_acc_random``).

Training steps draw their randomness (dropout, the quantizer's dead-code revival) from a stream of
their own, seeded by (run seed, epoch, batch, rank), so a fit resumed from a checkpoint replays the
draws of an uninterrupted one (see :meth:`CodebookAutoencoder.training_step`).
"""

from __future__ import annotations

import os
import random
import warnings
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from lm_latent.codebook.networks import ChunkAutoencoder, NetworkSizes
from lm_latent.codebook.quantizer import QuantizerOptions, real_world_is_distributed, vq_library_version

VQ_VERSION_KEY = "vector_quantize_pytorch_version"


class CodeUsage(Metric):
    """How many times each code was chosen (summed over processes): usage, perplexity, dead codes."""

    full_state_update = False

    def __init__(self, num_codes: int) -> None:
        super().__init__()
        self.num_codes = num_codes
        self.add_state("counts", torch.zeros(num_codes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, codes: Tensor) -> None:
        self.counts += torch.bincount(codes.reshape(-1).long(), minlength=self.num_codes)

    def compute(self) -> dict[str, Tensor]:
        counts = self.counts.float()
        p = counts / counts.sum().clamp(min=1)
        entropy = -(p * p.clamp(min=1e-12).log()).sum()
        used = (self.counts > 0).sum()
        return {"usage": used.float() / self.num_codes, "perplexity": entropy.exp(), "dead_codes": (self.num_codes - used).float()}


def chunk_targets(chunk_ids: Tensor, chunk_mask: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """The decoder's L targets and which count: a chunk's tokens, plus EOS right after a partial chunk."""
    lengths = chunk_mask.sum(1)
    L_ = chunk_ids.shape[1]
    pos = torch.arange(L_, device=chunk_ids.device).unsqueeze(0)
    is_end = (pos == lengths.unsqueeze(1)) & (lengths.unsqueeze(1) < L_)
    targets = torch.where(is_end, torch.full_like(chunk_ids, eos_id), chunk_ids)
    return targets, chunk_mask | is_end


def chunk_scores(predicted: Tensor, batch: dict[str, Tensor], eos_id: int) -> dict[str, Tensor]:
    """Token and exact-chunk accuracy of predicted ids ``[N, L]`` against the chunks' targets
    (:func:`chunk_targets`), over the real chunks (``batch["valid"]``); positions after a partial
    chunk's EOS do not count. Returns fractions plus the counts to weight them by."""
    targets, counted = chunk_targets(batch["chunk_ids"], batch["chunk_mask"], eos_id)
    counted = counted & batch["valid"].unsqueeze(1)
    n_tok = counted.sum()
    correct = (predicted == targets) & counted
    exact = (correct | ~counted).all(1)[batch["valid"]]
    return {
        "token_acc": correct.sum() / n_tok.clamp(min=1),
        "exact_chunk_acc": exact.float().mean() if exact.numel() else correct.new_zeros((), dtype=torch.float),
        "num_tokens": n_tok,
        "num_chunks": exact.new_tensor(exact.numel(), dtype=torch.long),
    }


class CodebookAutoencoder(L.LightningModule):
    """Stage 1 of Token Assorted: a VQ-VAE that turns each chunk of L CoT tokens into one code.

    All arguments are saved as hyperparameters, so ``load_from_checkpoint(path)`` alone rebuilds the
    model. ``vocab_size``/``pad_id``/``eos_id`` are read from ``tokenizer_dir`` when not given (and
    then saved), so a loaded checkpoint never needs the tokenizer directory to exist.

    Args:
        tokenizer_dir: the tokenizer the chunks were made with (recorded; read for vocab/pad/eos).
        chunk_size: L, tokens per chunk (one code per chunk).
        codebook_size: K, number of codes.
        code_dim: dimension of the codebook vectors.
        d_model, n_heads: width and heads of all transformers.
        encoder_layers, prompt_layers, decoder_layers: depths of f_enc, g and f_dec.
        dropout: dropout in every transformer layer.
        pooling: how f_enc and g pool token states to one vector ("mean" or "max").
        context: "chunk" (default) or "previous_text"; see :class:`~lm_latent.codebook.networks.ChunkAutoencoder`.
        prompt_conditioning: "vector" (the paper's one prompt vector g(P), default) or "tokens" (the
            decoder also cross-attends to the prompt's token states, so it can copy names from the
            question; what closed-vocabulary tasks need for exact reconstruction).
        encoder_reads_prompt: f_enc also cross-attends to the prompt's tokens (off, as in the paper): a
            lever for codes a fine-tuned LM can predict from the question (RESULTS.md, "Can the model
            predict the codes?").
        max_prompt_tokens, max_context_tokens, max_chunks: sizes of the position tables
            (chunk positions past ``max_chunks`` share the last entry).
        ema_decay, commitment_weight, kmeans_init, dead_code_threshold: the quantizer's options
            (:class:`~lm_latent.codebook.quantizer.QuantizerOptions`).
        kmeans_init_chunks: with ``kmeans_init``, k-means runs on the encoder outputs of this many
            training chunks per process when training starts (not on one batch, too few for large K).
        lr, weight_decay: AdamW.
    """

    def __init__(
        self,
        tokenizer_dir: str,
        chunk_size: int = 16,
        codebook_size: int = 64,
        code_dim: int = 64,
        d_model: int = 128,
        n_heads: int = 4,
        encoder_layers: int = 2,
        prompt_layers: int = 2,
        decoder_layers: int = 2,
        dropout: float = 0.0,
        pooling: Literal["mean", "max"] = "mean",
        context: Literal["chunk", "previous_text"] = "chunk",
        prompt_conditioning: Literal["vector", "tokens"] = "vector",
        encoder_reads_prompt: bool = False,
        max_prompt_tokens: int = 512,
        max_context_tokens: int = 256,
        max_chunks: int = 64,
        ema_decay: float = 0.99,
        commitment_weight: float = 0.25,
        kmeans_init: bool = True,
        kmeans_init_chunks: int = 4096,
        dead_code_threshold: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        vocab_size: int | None = None,
        pad_id: int | None = None,
        eos_id: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if vocab_size is None or pad_id is None or eos_id is None:
            from lm_latent.data.tokenization import load_tokenizer

            tok = load_tokenizer(tokenizer_dir)
            self.hparams.vocab_size = vocab_size if vocab_size is not None else len(tok)
            self.hparams.pad_id = pad_id if pad_id is not None else tok.pad_token_id
            self.hparams.eos_id = eos_id if eos_id is not None else tok.eos_token_id
        hp = self.hparams
        self.sizes = NetworkSizes(
            vocab_size=hp.vocab_size,
            chunk_size=chunk_size,
            d_model=d_model,
            n_heads=n_heads,
            encoder_layers=encoder_layers,
            prompt_layers=prompt_layers,
            decoder_layers=decoder_layers,
            dropout=dropout,
            pooling=pooling,
            context=context,
            prompt_conditioning=prompt_conditioning,
            encoder_reads_prompt=encoder_reads_prompt,
            max_prompt_tokens=max_prompt_tokens,
            max_context_tokens=max_context_tokens,
            max_chunks=max_chunks,
        )
        self.quantizer_options = QuantizerOptions(
            codebook_size=codebook_size,
            code_dim=code_dim,
            ema_decay=ema_decay,
            commitment_weight=commitment_weight,
            kmeans_init=kmeans_init,
            dead_code_threshold=dead_code_threshold,
        )
        # Built for the world as it is now; configure_model() re-checks once the process group exists.
        self.net = ChunkAutoencoder(self.sizes, self.quantizer_options, sync_codebook=real_world_is_distributed())
        self.eos_id = int(hp.eos_id)
        for split in ("train", "val"):
            setattr(self, f"{split}_usage", CodeUsage(codebook_size))
        self.val_recon = MeanMetric()
        self.val_token_acc = MeanMetric()
        self.val_exact = MeanMetric()
        self.val_token_acc_random = MeanMetric()
        self.val_recon_random = MeanMetric()
        for name in ("greedy_exact", "greedy_token_acc", "greedy_exact_random", "greedy_token_acc_random"):
            setattr(self, f"val_{name}", MeanMetric())

    def configure_model(self) -> None:
        # Lightning calls this after creating the process group (and load_from_checkpoint calls it
        # without one): the codebook's EMA is all-reduced exactly when there really are several ranks.
        self.net.quantizer = self.net.quantizer.with_sync(real_world_is_distributed())

    def on_train_start(self) -> None:
        quantizer = self.net.quantizer
        if quantizer.initialized:  # no k-means init, or resumed from a checkpoint
            return
        vectors, n = [], 0
        with torch.no_grad():
            for batch in self.trainer.train_dataloader:
                batch = {k: v.to(self.device) for k, v in batch.items()}
                prompt = None
                if self.net.reads_prompt:
                    prompt = self.net.chunk_prompts(batch["prompt_ids"], batch["prompt_mask"], batch["chunk_example"])
                enc = self.net.encode(batch["chunk_ids"], batch["chunk_mask"], batch.get("context_ids"), batch.get("context_mask"), prompt)
                vectors.append(enc[batch["valid"]])
                n += len(vectors[-1])
                if n >= self.hparams.kmeans_init_chunks:
                    break
        quantizer.initialize(torch.cat(vectors))

    def _inputs(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        keys = ("prompt_ids", "prompt_mask", "chunk_ids", "chunk_mask", "chunk_pos", "chunk_example", "context_ids", "context_mask")
        return {k: batch[k] for k in keys if k in batch}

    def _reconstruction(self, logits: Tensor, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        targets, counted = chunk_targets(batch["chunk_ids"], batch["chunk_mask"], self.eos_id)
        counted = counted & batch["valid"].unsqueeze(1)
        n_tok = counted.sum()
        ce = F.cross_entropy(logits[counted].float(), targets[counted]) if n_tok > 0 else logits.sum() * 0
        return {"recon_loss": ce, **chunk_scores(logits.argmax(-1), batch, self.eos_id)}

    def _step_seed(self, batch_idx: int) -> int:
        run_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))  # seed_everything's, as Lightning reads it
        return random.Random(f"{run_seed}:{self.current_epoch}:{batch_idx}:{self.global_rank}").getrandbits(63)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        # Dropout and the quantizer's dead-code revival draw from torch's global random stream. A
        # checkpoint does not carry it, and the k-means initialisation and every data-loader iterator
        # draw from it too, at other points in a resumed run. So each step draws from a stream seeded
        # by (run seed, epoch, batch, rank) instead: a resumed run replays the uninterrupted one's draws
        # with no state to save (each DDP rank has its own). fork_rng puts the global stream back.
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device] if cuda else []):
            torch.manual_seed(self._step_seed(batch_idx))
            out = self.net(**self._inputs(batch))
        r = self._reconstruction(out.logits, batch)
        loss = r["recon_loss"] + out.commit_loss
        self.train_usage.update(out.codes[batch["valid"]])
        bs = int(batch["valid"].sum())
        log = dict(on_step=True, on_epoch=True, batch_size=bs)
        self.log("train/loss", loss, prog_bar=True, **log)
        self.log("train/recon_loss", r["recon_loss"], **log)
        self.log("train/commit_loss", out.commit_loss, **log)
        self.log("train/token_acc", r["token_acc"], prog_bar=True, **log)
        self.log("train/exact_chunk_acc", r["exact_chunk_acc"], **log)
        # Usage is an epoch quantity; this per-step view shows a collapse from the first steps on.
        counts = torch.bincount(out.codes[batch["valid"]], minlength=self.quantizer_options.codebook_size).float()
        p = counts / counts.sum().clamp(min=1)
        self.log("train/batch_code_perplexity", (-(p * p.clamp(min=1e-12).log()).sum()).exp(), on_step=True, on_epoch=False, batch_size=bs)
        threshold = self.quantizer_options.dead_code_threshold
        if threshold > 0:
            ema_dead = (self.net.quantizer.cluster_size < threshold).sum().float()
            self.log("train/ema_dead_codes", ema_dead, on_step=True, on_epoch=False, batch_size=bs)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        if not self.net.quantizer.initialized:
            # The sanity check runs before training starts: k-means must not initialise on val data.
            return
        inputs = self._inputs(batch)
        out = self.net(**inputs)
        r = self._reconstruction(out.logits, batch)
        self.val_recon.update(r["recon_loss"], r["num_tokens"])
        self.val_token_acc.update(r["token_acc"], r["num_tokens"])
        self.val_exact.update(r["exact_chunk_acc"], r["num_chunks"])
        self.val_usage.update(out.codes[batch["valid"]])
        # The same decoder fed random codes: what the prompt and position alone give. The draw is
        # a function of (run seed, batch), so it is the same at every validation of one run.
        gen = torch.Generator(device="cpu").manual_seed(self._validation_seed(batch_idx))
        random_codes = torch.randint(0, self.quantizer_options.codebook_size, out.codes.shape, generator=gen)
        random_codes = random_codes.to(out.codes.device)
        rand = self.net(**inputs, codes=random_codes)
        r_rand = self._reconstruction(rand.logits, batch)
        self.val_token_acc_random.update(r_rand["token_acc"], r["num_tokens"])
        self.val_recon_random.update(r_rand["recon_loss"], r["num_tokens"])
        # Teacher forcing gives the decoder the chunk's true prefix, so its accuracy overstates what a
        # code carries; greedy decoding from the code (and prompt) alone is what stage 2 relies on.
        for suffix, codes in (("", out.codes), ("_random", random_codes)):
            g = chunk_scores(self._greedy(batch, codes), batch, self.eos_id)
            getattr(self, f"val_greedy_exact{suffix}").update(g["exact_chunk_acc"], g["num_chunks"])
            getattr(self, f"val_greedy_token_acc{suffix}").update(g["token_acc"], g["num_tokens"])

    def _greedy(self, batch: dict[str, Tensor], codes: Tensor) -> Tensor:
        keys = ("prompt_ids", "prompt_mask", "chunk_pos", "chunk_example", "context_ids", "context_mask")
        return self.net.reconstruct_greedy(codes=codes, **{k: batch[k] for k in keys if k in batch})

    def _validation_seed(self, batch_idx: int) -> int:
        run_seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return random.Random(f"{run_seed}:val:{batch_idx}:{self.global_rank}").getrandbits(63)

    def _log_usage(self, split: str) -> None:
        metric: CodeUsage = getattr(self, f"{split}_usage")
        if not metric.update_called:
            return
        for name, value in metric.compute().items():  # compute() already sums over processes
            self.log(f"{split}/code_{name}" if name != "dead_codes" else f"{split}/dead_codes", value, sync_dist=False)
        metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_usage("train")

    def on_validation_epoch_end(self) -> None:
        keys = {
            "recon": "recon_loss",
            "token_acc": "token_acc",
            "exact": "exact_chunk_acc",
            "token_acc_random": "token_acc_random_codes",
            "recon_random": "recon_loss_random_codes",
            "greedy_exact": "greedy_exact",
            "greedy_token_acc": "greedy_token_acc",
            "greedy_exact_random": "greedy_exact_random",
            "greedy_token_acc_random": "greedy_token_acc_random",
        }
        for name, key in keys.items():
            metric: MeanMetric = getattr(self, f"val_{name}")
            if metric.update_called:
                self.log(f"val/{key}", metric.compute(), prog_bar=name == "token_acc")
            metric.reset()
        self._log_usage("val")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[VQ_VERSION_KEY] = vq_library_version()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved, now = checkpoint.get(VQ_VERSION_KEY), vq_library_version()
        if saved is not None and saved != now:
            warnings.warn(f"checkpoint was written with vector-quantize-pytorch {saved}, running {now}", stacklevel=2)

