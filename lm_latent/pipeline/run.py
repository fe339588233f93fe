"""`lm-latent run`: one experiment file through every stage of the method.

    data -> tokenizer -> codebook fit -> encode -> mixed fit (per strategy) -> test -> report

Each Lightning stage runs as its own `lm-latent codebook|mixed ...` command on a config file written
into the run folder, exactly what a user would run by hand; multi-device strategies (DDP on CPU
processes or GPUs) therefore launch the same way inside and outside the pipeline.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from lm_latent.config import save_yaml, to_plain
from lm_latent.digests import dir_digest, file_digest
from lm_latent.evaluation.chance import constant_answer_rate
from lm_latent.mixing.strategies import MixingStrategy
from lm_latent.pipeline.stages import Stage

log = logging.getLogger("lm_latent.run")

# Figures an evaluation callback may write besides the accuracy, copied into results.json's rows.
EXTRA_RESULT_FIELDS = ("feasible_at_k", "optimal_at_k", "sample_feasible", "greedy_feasible", "greedy_optimal",
                       "mean_text_tokens", "greedy_mean_tokens", "greedy_mean_latent_tokens")


def _cli(*args: str, threads: int | None = None) -> None:
    """Run an `lm-latent` command in a child process (fresh memory, same interpreter); ``threads``
    caps its intra-op threads (for runs side by side on a CPU machine)."""
    cmd = [sys.executable, "-m", "lm_latent.cli", *map(str, args)]
    log.info("$ lm-latent %s", " ".join(map(str, args)))
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    # A child must not inherit a parent's rank variables: it is a fresh launch.
    for var in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    subprocess.run(cmd, check=True, env=env)


def _merge(base: dict, extra: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (extra or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


class Pipeline:
    def __init__(self, cfg: DictConfig, out: str | Path, force: bool = False):
        self.cfg = to_plain(cfg)
        self.out = Path(out).resolve()
        self.force = force
        self.tb_dir = self.out / "tensorboard"
        # Strategies fine-tuned side by side (CPU machines: single-thread processes side by side beat
        # one process with several threads for models this small; BENCHMARKS.md measures it), each
        # with cores // parallel threads, at least one. 1 = one after another.
        self.parallel = max(1, int(self.cfg["mixed"].get("parallel", 1)))
        self.threads_per_run = max(1, (os.cpu_count() or 1) // self.parallel) if self.parallel > 1 else None

    def stage(self, name: str, inputs: dict[str, Any]) -> Stage:
        return Stage(name, self.out / name, inputs, force=self.force)

    def prepare(self) -> tuple[dict, dict, dict, dict]:
        """The single-process stages before the fine-tunes: data, tokenizer, codebook, codes."""
        self.out.mkdir(parents=True, exist_ok=True)
        save_yaml(self.cfg, self.out / "config.yaml")
        data = self.data()
        tok = self.tokenizer(data)
        cb = self.codebook(data, tok)
        return data, tok, cb, self.encode(data, tok, cb)

    # -- data ---------------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        from lm_latent.data.generators import GENERATORS, write_json

        spec = self.cfg["data"]
        st = self.stage("data", {"data": spec, "seed": self.cfg["seed"]})
        if st.is_done():
            return st.outputs
        st.begin()
        files: dict[str, str] = {}
        gen = spec.get("generate")
        for split in ("train", "val", "test"):
            given = spec.get(f"{split}_file")
            if given:
                files[split] = str(Path(given).resolve())
            elif gen and gen.get(split):
                options_cls, generate = GENERATORS[gen["generator"]]
                options = dict(gen.get("options") or {})  # null: the generator's defaults
                if "split" in {f.name for f in dataclasses.fields(options_cls)}:
                    options["split"] = split  # a generator that keeps splits apart (mazes by layout) is told which
                options = options_cls(**options)
                # Distinct, fixed seeds per split: the splits never share a random stream.
                seed = self.cfg["seed"] * 1000 + {"train": 0, "val": 1, "test": 2}[split]
                path = st.dir / f"{split}.json"
                write_json(generate(int(gen[split]), seed, options), path)
                files[split] = str(path)
        if "train" not in files:
            raise ValueError("data: give data.train_file or data.generate.train")
        digests = {split: file_digest(p) for split, p in files.items()}
        return st.finish({"dataset": spec["dataset"], "files": files, "digests": digests})

    # -- tokenizer ----------------------------------------------------------------------------
    def tokenizer(self, data: dict[str, Any]) -> dict[str, Any]:
        spec = self.cfg["tokenizer"]
        if spec.get("path"):
            path = Path(spec["path"]).resolve()
            return {"dir": str(path), "digest": dir_digest(path)}
        st = self.stage("tokenizer", {"tokenizer": spec, "train": data["digests"]["train"]})
        if st.is_done():
            return st.outputs
        st.begin()
        from lm_latent.data.readers import read_examples
        from lm_latent.data.tokenization import full_text, train_tokenizer

        examples = read_examples(data["dataset"], data["files"]["train"])
        out = st.dir / "tokenizer"
        train_tokenizer(
            (full_text(e) for e in examples), out, vocab_size=int(spec.get("vocab_size", 1024)),
            kind=spec.get("kind", "bpe"), split_forms=bool(spec.get("split_forms", True)),
        )
        return st.finish({"dir": str(out), "digest": dir_digest(out)})

    # -- stage 1: codebook --------------------------------------------------------------------
    def codebook(self, data: dict[str, Any], tok: dict[str, Any]) -> dict[str, Any]:
        spec = self.cfg["codebook"]
        st = self.stage(
            "codebook", {"codebook": spec, "seed": self.cfg["seed"], "data": data["digests"], "tokenizer": tok["digest"]}
        )
        if st.is_done():
            return st.outputs
        resume = self._start_training(st, "codebook")
        save_yaml(self.codebook_config(st.dir, data, tok), st.dir / "config.yaml")
        _cli("codebook", "fit", "--config", st.dir / "config.yaml", *(["--ckpt_path", "last"] if resume else []))
        ckpt = st.dir / "checkpoints" / "last.ckpt"
        metrics = _last_scalars(self.tb_dir / "codebook")
        return st.finish({"checkpoint": str(ckpt), "checkpoint_digest": file_digest(ckpt), "metrics": metrics})

    def codebook_config(self, root: Path, data: dict[str, Any], tok: dict[str, Any]) -> dict[str, Any]:
        """The `lm-latent codebook fit` config of this experiment, for a stage folder ``root``."""
        spec = self.cfg["codebook"]
        # `checkpoint` is the codebook command's ModelCheckpoint section (e.g. every_n_train_steps).
        blocks = {k: spec.get(k) or {} for k in ("trainer", "model", "data")}
        if spec.get("checkpoint"):
            blocks["checkpoint"] = spec["checkpoint"]
        config = _merge(
            blocks,
            {
                "seed_everything": self.cfg["seed"],
                "trainer": self._trainer_paths(root, "codebook"),
                "data": {
                    "dataset": data["dataset"],
                    "train_file": data["files"]["train"],
                    "val_file": data["files"].get("val"),
                    "tokenizer_dir": tok["dir"],
                },
            },
        )
        return _seed_stage(config, self.cfg["seed"], ("data", "seed"))

    def encode(self, data: dict[str, Any], tok: dict[str, Any], cb: dict[str, Any]) -> dict[str, Any]:
        st = self.stage("codes", {"codebook": cb["checkpoint_digest"], "data": data["digests"], "tokenizer": tok["digest"]})
        if st.is_done():
            return {**st.outputs, "codebook_checkpoint": cb["checkpoint"]}
        st.begin()
        files = {}
        for split in ("train", "val"):
            if split not in data["files"]:
                continue
            out = st.dir / f"{split}.json"
            _cli(
                "codebook", "encode", "--checkpoint", cb["checkpoint"], "--dataset", data["dataset"],
                "--data", data["files"][split], "--split", split, "--tokenizer", tok["dir"], "--cache-dir", st.dir / "cache",
                "--out", out,
            )
            files[split] = str(out)
        return {**st.finish({"files": files, "digests": {k: file_digest(v) for k, v in files.items()}}),
                "codebook_checkpoint": cb["checkpoint"]}

    # -- stage 2: mixed-token fine-tune, one run per strategy ------------------------------------
    def mixed(self, strategy: str, data, tok, codes) -> dict[str, Any]:
        during_fit = self.cfg["evaluation"].get("during_fit") or {}
        st = self.stage(
            f"mixed/{strategy}",
            {
                "block": self._mixed_block(strategy), "strategy": strategy, "seed": self.cfg["seed"],
                "during_fit": during_fit, "data": data["digests"], "tokenizer": tok["digest"], "codes": codes["digests"],
            },
        )
        if st.is_done():
            return st.outputs
        resume = self._start_training(st, f"mixed_{strategy}")
        save_yaml(self.mixed_config(strategy, st.dir, data, tok, codes), st.dir / "config.yaml")
        _cli("mixed", "fit", "--config", st.dir / "config.yaml", *(["--ckpt_path", "last"] if resume else []),
             threads=self.threads_per_run)
        ckpt = st.dir / "checkpoints" / "last.ckpt"
        return st.finish({
            "checkpoint": str(ckpt), "checkpoint_digest": file_digest(ckpt), "config": str(st.dir / "config.yaml"),
            # Examples max_length cut, per split (the datamodule writes it at setup).
            "data_report": _read_json(st.dir / "data_report.json"),
        })

    def _mixed_block(self, strategy: str) -> dict[str, Any]:
        spec = self.cfg["mixed"]
        return _merge(
            {k: spec[k] for k in ("trainer", "model", "data", "checkpoint") if spec.get(k)},
            (spec.get("per_strategy") or {}).get(strategy),
        )

    def mixed_config(self, strategy: str, root: Path, data, tok, codes) -> dict[str, Any]:
        """The `lm-latent mixed fit` config of one strategy of this experiment, for a stage folder ``root``."""
        during_fit = self.cfg["evaluation"].get("during_fit") or {}
        config = _merge(
            self._mixed_block(strategy),
            {
                "seed_everything": self.cfg["seed"],
                "trainer": self._trainer_paths(root, f"mixed_{strategy}"),
                "data": {
                    "dataset": data["dataset"],
                    "train_file": data["files"]["train"],
                    "val_file": data["files"].get("val"),
                    "tokenizer_dir": tok["dir"],
                    "codes_file": codes["files"]["train"],
                    "val_codes_file": codes["files"].get("val"),
                    "strategy": strategy,
                },
            },
        )
        if during_fit:
            # Accuracy on the validation sets while training, so TensorBoard shows it per epoch.
            config["trainer"]["callbacks"] = list(config["trainer"].get("callbacks") or []) + [
                self._accuracy_callback(name, dict(s, subset=during_fit.get("subset", s.get("subset"))), data, stage="val")
                for name, s in self.sets_of(strategy).items()
                if name in during_fit.get("sets", [])
            ]
        model = config.setdefault("model", {})
        if model.get("new_token_init") == "codebook" and not model.get("codebook_vectors"):
            # Latent-token rows start from this run's own codebook (a fixed projection of its vectors).
            model["codebook_vectors"] = codes["codebook_checkpoint"]
        return _seed_stage(config, self.cfg["seed"], ("data", "seed"), ("model", "init_seed"))

    # -- evaluation ------------------------------------------------------------------------------
    def sets_of(self, strategy: str) -> dict[str, dict]:
        """The evaluation sets ``strategy`` is evaluated on: all but those whose ``strategies`` leave it
        out (an m-forced set, for instance, means something only for a strategy with latent tokens)."""
        sets = self.cfg["evaluation"]["sets"]
        chosen = {name: s for name, s in sets.items() if not s.get("strategies") or strategy in s["strategies"]}
        if not MixingStrategy(strategy).needs_codes:
            # A text-only baseline shares the vocabulary's K latent rows but never trains them; greedy
            # decoding could still pick one, which no model without latent tokens can do. m = 0 rules
            # them out (ForceLatentCount), so the baseline decodes text only, like the paper's.
            chosen = {name: dict(s, callback_args={"force_latent": 0, **(s.get("callback_args") or {})})
                      for name, s in chosen.items()}
        return chosen

    def evaluate(self, strategy: str, run: dict[str, Any], data: dict[str, Any], tok: dict[str, Any]) -> dict[str, Any]:
        """Test-time accuracy of one fine-tuned strategy on each of its eval sets."""
        # The stage's inputs hold this strategy's sets only: a set added for another strategy
        # leaves its finished evaluation valid.
        spec = dict(self.cfg["evaluation"], sets=self.sets_of(strategy))
        sets = {name: dict(s, file=_resolve_file(s["file"], data)) for name, s in spec["sets"].items()}
        st = self.stage(
            f"eval/{strategy}",
            {"run": run["checkpoint_digest"], "evaluation": spec, "files": {n: file_digest(s["file"]) for n, s in sets.items()}},
        )
        if st.is_done():
            # The marker's JSON has sorted keys; keep the configured order so tables read the same on reruns.
            return {name: st.outputs[name] for name in sets}
        st.begin()
        shutil.rmtree(self.tb_dir / f"eval_{strategy}", ignore_errors=True)  # no curves of other inputs
        callbacks = [
            self._accuracy_callback(name, s, data, stage="test", results_file=st.dir / f"{name}.json")
            for name, s in sets.items()
        ]
        config = _load_yaml(run["config"])
        config["trainer"] = {
            **config["trainer"],
            "default_root_dir": str(st.dir),
            "logger": self._logger(f"eval_{strategy}"),
            "callbacks": callbacks,  # evaluation callbacks only
        }
        save_yaml(config, st.dir / "config.yaml")
        _cli("mixed", "test", "--config", st.dir / "config.yaml", "--ckpt_path", run["checkpoint"], threads=self.threads_per_run)
        rows = {}
        for name in sets:
            r = json.loads((st.dir / f"{name}.json").read_text())
            rows[name] = {
                "accuracy": r["accuracy"],
                "mean_generated_tokens": r["mean_tokens"],
                "mean_latent_tokens": r["mean_latent_tokens"],
                "n": r["n"],
                "seconds_per_example": r["seconds_per_example"],
                "task": sets[name]["task"],  # its chance level in the plot
                # What always giving the set's most common answer scores: the plot's second floor.
                "constant_answer": constant_answer_rate([x["gold"] for x in r["results"]],
                                                        [x["question"] for x in r["results"]]),
                # Task-specific figures beside the accuracy (mazes: greedy feasibility and optimality).
                **{k: r[k] for k in EXTRA_RESULT_FIELDS if k in r},
            }
        return st.finish(rows)

    def _start_training(self, st: Stage, log_name: str) -> bool:
        """Begin a training stage; True when it resumes an interrupted attempt at the same inputs.

        A fresh start first removes checkpoints and TensorBoard logs left by an attempt at *other*
        inputs: otherwise an attempt interrupted before its first checkpoint would later "resume"
        from the old configuration's weights, and old curves would mix with the new ones."""
        resume = st.can_resume() and (st.dir / "checkpoints" / "last.ckpt").is_file()
        st.begin()
        if not resume:
            shutil.rmtree(st.dir / "checkpoints", ignore_errors=True)
            shutil.rmtree(self.tb_dir / log_name, ignore_errors=True)
        st.mark_started()
        return resume

    def _trainer_paths(self, root: Path, log_name: str) -> dict[str, Any]:
        return {"default_root_dir": str(root), "logger": self._logger(log_name)}

    def _logger(self, name: str) -> dict[str, Any]:
        """Every stage logs into one TensorBoard folder per run, one sub-folder per stage."""
        return {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": str(self.tb_dir), "name": name, "version": ""},
        }

    def _accuracy_callback(self, name: str, spec: dict, data: dict, stage: str, **extra: Any) -> dict[str, Any]:
        """The evaluation callback of one set: its task's callback class (CALLBACK_OF_TASK), built with
        the evaluation section's limits and the set's own ``callback_args`` (e.g. a maze's num_plans)."""
        from lm_latent.evaluation import CALLBACK_OF_TASK, resolve_task

        ev = self.cfg["evaluation"]
        return {
            "class_path": CALLBACK_OF_TASK.get(resolve_task(spec["task"]), "lm_latent.evaluation.callbacks.AccuracyCallback"),
            "init_args": {
                "task": spec["task"],
                "name": name,
                "dataset": spec.get("dataset", data["dataset"]),
                "file": _resolve_file(spec["file"], data),
                "subset": spec.get("subset"),
                "max_new_tokens": ev.get("max_new_tokens", 128),
                "batch_size": ev.get("batch_size", 32),
                "stages": [stage],
                "seed": self.cfg["seed"],  # of sampled decoding (greedy, the default, draws nothing)
                "codebook_checkpoint": ev.get("codebook_checkpoint"),
                **(spec.get("callback_args") or {}),
                **{k: str(v) if isinstance(v, Path) else v for k, v in extra.items()},
            },
        }


def _seed_stage(config: dict, seed: int, *keys: tuple[str, str]) -> dict:
    """Give the stage's own seeds (``(section, key)`` of its config) the experiment's ``seed`` unless
    the experiment file sets them: one top-level ``seed`` then changes every random choice of a run
    (generated data, initialisation, shuffling, chunk replacement draws), and a rerun repeats them."""
    for section, key in keys:
        config.setdefault(section, {}).setdefault(key, seed)
    return config


def _last_scalars(logdir: Path) -> dict[str, float]:
    """The last value of every scalar tag a stage wrote to TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, float] = {}
    for events in sorted(logdir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out[tag] = float(acc.Scalars(tag)[-1].value)
    return out




def _resolve_file(file: str, data: dict[str, Any]) -> str:
    """`@train`/`@val`/`@test` name the data stage's splits; anything else is a path."""
    if file.startswith("@"):
        split = file[1:]
        if split not in data["files"]:
            raise KeyError(f"evaluation file '{file}': the data stage has no '{split}' split")
        return data["files"][split]
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise FileNotFoundError(f"evaluation file not found: {path}")
    return str(path.resolve())


def _load_yaml(path: str | Path) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)


def run_experiment(cfg: DictConfig, out: str | Path, force: bool = False) -> dict[str, Any]:
    """Run every stage (skipping finished ones) and write results.json / results.md / the plot."""
    from lm_latent.pipeline.report import codebook_summary, write_results

    p = Pipeline(cfg, out, force)
    data, tok, cb, codes = p.prepare()
    if p.cfg["evaluation"].get("decode_latents", True):
        p.cfg["evaluation"]["codebook_checkpoint"] = cb["checkpoint"]
    def fine_tune_and_evaluate(strategy: str) -> dict[str, Any]:
        return p.evaluate(strategy, p.mixed(strategy, data, tok, codes), data, tok)

    strategies = p.cfg["mixed"]["strategies"]
    if p.parallel == 1:
        runs = {s: fine_tune_and_evaluate(s) for s in strategies}
    else:
        from concurrent.futures import ThreadPoolExecutor

        # Each strategy is its own child process; the threads here only wait on them.
        with ThreadPoolExecutor(p.parallel) as pool:
            futures = {s: pool.submit(fine_tune_and_evaluate, s) for s in strategies}
            runs = {s: f.result() for s, f in futures.items()}
    return write_results(
        p.out, p.cfg["name"], codebook_summary(cb["metrics"]), runs,
        extra={"tensorboard": str(p.tb_dir), "seed": p.cfg["seed"], "truncated_examples": _truncated(p.out, runs)},
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _truncated(out: Path, strategies) -> dict[str, dict[str, int]]:
    """Per strategy and split, how many examples max_length cut (from each fine-tune's data report)."""
    return {
        s: {split: r["truncated"] for split, r in _read_json(out / "mixed" / s / "data_report.json").get("truncation", {}).items()}
        for s in strategies
    }
