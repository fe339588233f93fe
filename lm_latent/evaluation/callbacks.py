"""Accuracy callbacks: generate for an evaluation set at validation/test time, score, log.

One base, :class:`AccuracyCallback`, and one thin subclass per benchmark. At the end of a validation
(or test) epoch the callback generates answers for its evaluation set, batched and KV-cached, with
each rank generating a strided shard; scores what the model wrote (latent tokens in place, see
:class:`~lm_latent.finetune.generation.Generation`) with :func:`~lm_latent.evaluation.is_correct`;
gathers the scores in a :class:`~lm_latent.evaluation.metrics.GenerationAccuracy` (keyed by example,
so every example counts once on any number of devices); and logs

    <stage>/<name>/accuracy   <stage>/<name>/mean_tokens   <stage>/<name>/mean_latent_tokens
    <stage>/<name>/n          <stage>/<name>/accuracy_best

plus, on rank 0, a markdown table of sample generations as TensorBoard text (``<stage>/<name>/samples``):
question, emitted latent codes (decoded back to text when a codebook checkpoint is given), the text
the model wrote, gold answer and whether it was right. ``last_results`` keeps every example's result.

    callbacks:
      - class_path: lm_latent.evaluation.callbacks.ProsQAAccuracy
        init_args: {file: ../shared/data/prosqa/valid.json, subset: 100}

The module must expose ``.model`` (a Hugging Face causal LM), ``.tokenizer`` and ``.latent_vocab``
(None for a plain model); its own ``.generate(prompts, **kw)`` is used when it has one.
"""

from __future__ import annotations

import json
import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lm_latent.data.example import Example
from lm_latent.data.tokenization import prompt_text
from lm_latent.evaluation.answers import TASK_OF_DATASET, is_correct, resolve_task
from lm_latent.evaluation.metrics import GenerationAccuracy, shard_indices
from lm_latent.finetune.generation import LATENT_DECISIONS

log = logging.getLogger(__name__)

STAGES = ("val", "test")
DECODINGS = ("greedy", "top_k")
# Strategies that shard parameters: every forward pass is a collective, so all ranks must generate
# the same number of batches and keep stepping until the slowest finishes (synced_gpus).
_SHARDED_STRATEGIES = {"FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy"}


def is_sharded_strategy(strategy: Any) -> bool:
    """True for FSDP, DeepSpeed and model-parallel strategies (by class name, so neither FSDP nor
    DeepSpeed has to be importable)."""
    return any(cls.__name__ in _SHARDED_STRATEGIES for cls in type(strategy).__mro__)


class AccuracyCallback(Callback):
    """Answer accuracy and generated length of a model on one evaluation set.

    Args:
        task: answer checker (``gsm8k``, ``math``, ``prosqa``, ``prontoqa``) or a dataset name that
            maps to one (:data:`~lm_latent.evaluation.answers.TASK_OF_DATASET`).
        file: the evaluation file, read with ``lm_latent.data.readers.read_examples(dataset, file)``.
        dataset: reader name of the file; defaults to ``task``. Use ``canonical`` for files written by
            ``write_canonical``.
        name: the ``<name>`` in logged tags; defaults to ``dataset`` (so MATH-500 logs ``val/math500/..``).
        subset: evaluate only the first ``subset`` examples (deterministic); None for all.
        every_n_epochs: during fitting, evaluate after the validation of every n-th epoch
            (a stand-alone ``validate``/``test`` always evaluates).
        max_new_tokens, batch_size: generation limits; batch_size is per device.
        decoding: ``greedy`` or ``top_k`` (sampling from the ``top_k`` most likely tokens, seeded).
        stages: where to evaluate: ``val`` and/or ``test``.
        num_samples: rows of the TensorBoard sample table (the first examples of the set); 0 for none.
        codebook_checkpoint: a stage-1 checkpoint; when given, emitted codes are shown decoded to text.
        synced_generation: pad shards and pass ``synced_gpus`` to generate; None decides from the
            strategy (on for FSDP/DeepSpeed/model parallel, off otherwise).
        results_file: after each evaluation rank 0 writes the metrics, ``seconds_per_example`` and
            every example's result (``last_results``) to this JSON file.
        examples: evaluate these examples instead of reading ``file`` (for programmatic use).
        force_latent: open every generation with exactly this many latent codes (a diagnosis: accuracy
            against the number of codes, :class:`~lm_latent.finetune.generation.ForceLatentCount`);
            None lets the model decide, as it does at test time, except for a model trained by a
            strategy without codes (the datamodule's ``strategy.needs_codes`` is False: CoT,
            Sol-Only), which decodes with m = 0: its latent rows were never trained, so they are
            ruled out rather than left to chance. Needs a model with latent tokens when > 0.
        latent_decision: ``token`` (plain greedy, the paper's) or ``mass``: inside a latent run,
            another code when the codes together outweigh ``<eoLatent>``
            (:class:`~lm_latent.finetune.generation.LatentRunByMass`); greedy, free decoding only.
    """

    default_dataset: str | None = None

    def __init__(
        self,
        task: str,
        file: str | Path | None = None,
        dataset: str | None = None,
        name: str | None = None,
        subset: int | None = None,
        every_n_epochs: int = 1,
        max_new_tokens: int = 128,
        batch_size: int = 64,
        decoding: str = "greedy",
        top_k: int = 10,
        seed: int = 0,
        stages: Sequence[str] = ("val", "test"),
        num_samples: int = 8,
        codebook_checkpoint: str | Path | None = None,
        synced_generation: bool | None = None,
        results_file: str | Path | None = None,
        examples: Sequence[Example] | None = None,
        force_latent: int | None = None,
        latent_decision: str = "token",
    ) -> None:
        super().__init__()
        self.task = resolve_task(task)
        self.dataset = dataset or task
        self.name = name or self.dataset
        if file is None and examples is None:
            raise ValueError(f"{type(self).__name__}({self.name}): give the evaluation `file` (or `examples`)")
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be >= 1 or None, got {subset}")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
        if latent_decision not in LATENT_DECISIONS or (latent_decision == "mass" and decoding != "greedy"):
            raise ValueError(f"latent_decision must be one of {LATENT_DECISIONS} ('mass' with greedy decoding); "
                             f"got {latent_decision!r}")
        if force_latent is not None and force_latent < 0:
            raise ValueError(f"force_latent must be >= 0 or None, got {force_latent}")
        if isinstance(stages, str):
            stages = (stages,)
        bad = [s for s in stages if s not in STAGES]
        if bad or not stages:
            raise ValueError(f"stages must be a non-empty subset of {STAGES}, got {list(stages)}")
        self.file = None if file is None else Path(file)
        self.subset = subset
        self.every_n_epochs = every_n_epochs
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.decoding = decoding
        self.top_k = top_k
        self.seed = seed
        self.stages = tuple(stages)
        self.num_samples = num_samples
        self.codebook_checkpoint = None if codebook_checkpoint is None else Path(codebook_checkpoint)
        self.synced_generation = synced_generation
        self.results_file = None if results_file is None else Path(results_file)
        self.force_latent = force_latent
        self.latent_decision = latent_decision
        self._forced_now = force_latent  # what the current evaluation uses (:meth:`forced_m`)
        self._examples: list[Example] | None = None if examples is None else list(examples)[:subset]
        self._codebook = None
        self.best: dict[str, float] = {}
        self.last_results: list[dict] = []
        self.last_metrics: dict[str, float] = {}

    # ------------------------------------------------------------------ state

    @property
    def state_key(self) -> str:
        return self._generate_state_key(name=self.name, task=self.task)

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = {k: float(v) for k, v in state_dict.get("best", {}).items()}

    # ------------------------------------------------------------------ data

    @property
    def examples(self) -> list[Example]:
        """The evaluation examples (read once, first ``subset`` of the file)."""
        if self._examples is None:
            from lm_latent.data.readers import read_examples

            self._examples = read_examples(self.dataset, self.file)[: self.subset]
            if not self._examples:
                raise ValueError(f"{self.file}: no {self.dataset} examples to evaluate")
        return self._examples

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.examples  # fail at start-up, not after the first training epoch, on a bad file
        # Lightning suggests sync_dist=True for epoch-level values under DDP; ours are already global
        # (gathered by the metric), and averaging identical values across ranks would only add a collective.
        warnings.filterwarnings(
            "ignore", message=rf"It is recommended to use `self\.log\('(val|test)/{re.escape(self.name)}/"
        )

    # ------------------------------------------------------------------ hooks

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "val" not in self.stages or trainer.sanity_checking:
            return
        fitting = trainer.state.fn == "fit"
        if fitting and (trainer.current_epoch + 1) % self.every_n_epochs != 0:
            return
        self.evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "test" in self.stages:
            self.evaluate(trainer, pl_module, "test")

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> dict[str, float]:
        """Generate, score, gather and log for ``stage``; every rank must call it. Returns the metrics."""
        start = time.perf_counter()
        examples = self.examples
        synced = self.synced_generation
        if synced is None:
            synced = is_sharded_strategy(trainer.strategy)
        indices = shard_indices(len(examples), trainer.global_rank, trainer.world_size, pad=synced)
        self._forced_now = self.forced_m(trainer)
        # synced_gpus all-reduces a "finished" flag every step: only meaningful with a process group.
        rows = self._score_shard(pl_module, indices, synced and trainer.world_size > 1)
        values = self._global_metrics(rows, pl_module.device)

        prefix = f"{stage}/{self.name}"
        if values["n"] > 0:
            best = max(self.best.get(prefix, float("-inf")), values["accuracy"])
            self.best[prefix] = best
            values["accuracy_best"] = best
            for key, value in values.items():
                # Already global after compute(): no reduction across devices wanted here.
                pl_module.log(f"{prefix}/{key}", value, sync_dist=False, on_step=False, on_epoch=True)
        self.last_metrics = values

        self.last_results = self._gather_results(rows, trainer)
        seconds = time.perf_counter() - start
        if trainer.is_global_zero:
            if self.results_file is not None:
                self._write_results(stage, values, seconds)
            if self.num_samples > 0:
                self._log_samples(trainer, pl_module, prefix)
        return values

    def forced_m(self, trainer: Trainer) -> int | None:
        """The number of codes every generation opens with: ``force_latent`` when set; else 0 when the
        trainer's datamodule mixes without codes (its strategy's ``needs_codes`` is False), so a text-only
        baseline never emits a latent token it was not trained on; else None (the model decides)."""
        if self.force_latent is not None:
            return self.force_latent
        strategy = getattr(getattr(trainer, "datamodule", None), "strategy", None)
        return 0 if strategy is not None and getattr(strategy, "needs_codes", True) is False else None

    def _score_shard(self, pl_module: LightningModule, indices: list[int], synced: bool) -> list[dict]:
        """Generate for this rank's examples and score them: one result row per example."""
        examples = self.examples
        gens = self._generate(pl_module, [prompt_text(examples[i].question) for i in indices], synced)
        rows = []
        for i, g in zip(indices, gens):
            ex = examples[i]
            rows.append({
                "index": i, "id": ex.id, "question": ex.question, "gold": ex.answer, "text": g.text,
                "written": g.written, "codes": list(g.codes),
                # Scored on what the model wrote: latent tokens after the answer marker make it wrong.
                "correct": is_correct(self.task, g.written, ex.answer, question=ex.question),
                "num_tokens": g.num_latent + g.num_delimiter + g.num_text, "num_latent": g.num_latent,
                "num_delimiter": g.num_delimiter, "num_text": g.num_text,
            })
        return rows

    def _global_metrics(self, rows: list[dict], device: torch.device) -> dict[str, float]:
        """The metrics over every rank's rows (a collective: every rank calls it); ``n`` and
        ``accuracy`` are always among them."""
        metric = GenerationAccuracy().to(device)
        # Always update, even with an empty shard, so the gathered states keep their integer dtype.
        metric.update([r["index"] for r in rows], [r["correct"] for r in rows],
                      [r["num_tokens"] for r in rows], [r["num_latent"] for r in rows])
        return {k: float(v) for k, v in metric.compute().items()}

    def _write_results(self, stage: str, values: dict[str, float], seconds: float) -> None:
        n = int(values["n"])
        record = {
            "task": self.task, "name": self.name, "dataset": self.dataset,
            "file": None if self.file is None else str(self.file), "stage": stage,
            **{k: (int(v) if k == "n" else v) for k, v in values.items()},
            "seconds": seconds, "seconds_per_example": seconds / n if n else float("nan"),
            "decoding": self.decoding, "max_new_tokens": self.max_new_tokens, "force_latent": self._forced_now,
            "latent_decision": self.latent_decision, "results": self.last_results,
        }
        self.results_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.results_file.with_suffix(self.results_file.suffix + ".tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1))
        tmp.replace(self.results_file)  # a reader never sees a half-written file

    def _generate(self, pl_module: LightningModule, prompts: list[str], synced: bool, decoding: str | None = None):
        decoding = decoding or self.decoding
        kwargs = dict(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            do_sample=decoding == "top_k",
            top_k=self.top_k if decoding == "top_k" else None,
            seed=self.seed,
            synced_gpus=synced,
            force_latent=self._forced_now,
            # A forced m (a text-only model's m = 0 included) leaves no run to decide.
            latent_decision=self.latent_decision if self._forced_now is None else "token",
        )
        if hasattr(pl_module, "generate"):
            return pl_module.generate(prompts, **kwargs)
        from lm_latent.finetune.generation import generate

        return generate(pl_module.model, pl_module.tokenizer, prompts, getattr(pl_module, "latent_vocab", None), **kwargs)

    @staticmethod
    def _gather_results(rows: list[dict], trainer: Trainer) -> list[dict]:
        """Every rank's rows, one per example, in evaluation-set order."""
        gathered = [rows]
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, rows)
        unique = {}
        for part in gathered:
            for r in part:
                unique.setdefault(r["index"], r)
        return [unique[i] for i in sorted(unique)]

    # ------------------------------------------------------------------ samples

    def _log_samples(self, trainer: Trainer, pl_module: LightningModule, prefix: str) -> None:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        table = self.samples_markdown(self.last_results[: self.num_samples], pl_module)
        for lg in loggers:
            lg.experiment.add_text(f"{prefix}/samples", table, global_step=trainer.global_step)

    def samples_markdown(self, results: list[dict], pl_module: LightningModule | None = None) -> str:
        """A markdown table of results: question, latent codes (decoded when possible), output, gold."""
        header = "| # | question | latent codes | model output | gold | correct |\n|---|---|---|---|---|---|"
        lines = [header]
        for r in results:
            codes = self._codes_cell(r, pl_module)
            lines.append("| " + " | ".join([
                str(r["index"]), _cell(r["question"], 400), codes, _cell(r["text"], 600), _cell(r["gold"], 200),
                "yes" if r["correct"] else "no",
            ]) + " |")
        return "\n".join(lines)

    def _codes_cell(self, r: dict, pl_module: LightningModule | None) -> str:
        if not r["codes"]:
            return ""
        shown = " ".join(str(c) for c in r["codes"][:64]) + (" ..." if len(r["codes"]) > 64 else "")
        decoded = self._decode_codes(r, pl_module)
        return _cell(shown) if decoded is None else f"{_cell(shown)}<br>*{_cell(decoded, 600)}*"

    def _decode_codes(self, r: dict, pl_module: LightningModule | None) -> str | None:
        if self.codebook_checkpoint is None or pl_module is None:
            return None
        try:
            from lm_latent.codebook.decode import decode_codes
            from lm_latent.codebook.encode import load_codebook

            if self._codebook is None:
                self._codebook = load_codebook(self.codebook_checkpoint, device="cpu")
            # The LM's tokenizer extends the codebook's with latent tokens appended at the end, so
            # prompt and decoded text ids mean the same in both.
            tok = pl_module.tokenizer
            prompt_ids = tok(prompt_text(r["question"]), add_special_tokens=False)["input_ids"]
            return decode_codes(self._codebook, tok, prompt_ids, r["codes"])
        except Exception as err:  # noqa: BLE001 - a sample view must not stop training
            log.warning("%s: could not decode latent codes with %s: %s", self.name, self.codebook_checkpoint, err)
            self.codebook_checkpoint = None  # warn once, then show code ids only
            return None


def _cell(text: str, limit: int = 200) -> str:
    """Text made safe for one markdown table cell: pipes escaped, newlines as <br>, truncated."""
    text = str(text)
    if len(text) > limit:
        text = text[:limit] + " ..."
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", "").replace("\n", "<br>")


class _BenchmarkAccuracy(AccuracyCallback):
    """A benchmark callback: the checker is fixed, the dataset defaults to the benchmark's own."""

    checker: str = ""

    def __init__(self, file: str | Path | None = None, dataset: str | None = None, **kwargs: Any) -> None:
        dataset = dataset or self.checker
        if dataset in TASK_OF_DATASET and TASK_OF_DATASET[dataset] != self.checker:
            raise ValueError(f"{type(self).__name__} scores {self.checker} answers; dataset {dataset!r} "
                             f"is checked as {TASK_OF_DATASET[dataset]}")
        super().__init__(task=self.checker, file=file, dataset=dataset, **kwargs)


class GSM8KAccuracy(_BenchmarkAccuracy):
    """GSM8K: the final number, compared exactly."""

    checker = "gsm8k"


class MATHAccuracy(_BenchmarkAccuracy):
    """MATH and the other math sets (``dataset="math500"``, ``"gaokao2023en"``, ...): the final answer
    compared by mathematical equivalence."""

    checker = "math"


class ProsQAAccuracy(_BenchmarkAccuracy):
    """ProsQA: Coconut's exact match of the text after the last ``#``."""

    checker = "prosqa"


class ProntoQAAccuracy(_BenchmarkAccuracy):
    """ProntoQA: Coconut's exact match of the text after the last ``#`` (``True``/``False``)."""

    checker = "prontoqa"
