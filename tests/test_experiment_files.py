"""Every YAML under experiments/ parses and instantiates, so shipped configs cannot rot.

Experiment files (``lm-latent run`` inputs) go through the real pipeline with a stand-in launcher:
the data and tokenizer stages run for real on tiny inputs (generated or hand-written, files that are
missing here, e.g. MetaMathQA, replaced), and where the pipeline would start a Lightning stage, the
config file it wrote is instead parsed and instantiated in this process by that stage's own
LightningCLI, with the trainer moved to one CPU. The trainer block as written (GPUs, DDP/FSDP
strategy, bf16, nodes) is validated separately against the Trainer's signature and its strategy
instantiated. Language models are built on the meta device with their real architectures
(pretrained directories replaced by stand-ins holding the public config of the named model), so
GPT-2 small and Llama 1B/3B/8B are checked without their weights. Evaluation sets are instantiated
as the evaluation stage's callbacks and read from ../shared/data.

Stage configs (experiments/codebook, experiments/mixed) get the same instantiation with their data
paths replaced; files under a ``base/`` folder are composition bases and must be used by an
experiment. The launch helpers in experiments/launch are tested at the end; the slow tests run the
torchrun and SLURM scripts end to end with two CPU processes (`pytest -m slow`).
"""

from __future__ import annotations

import importlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
LAUNCH = EXPERIMENTS / "launch"

# Stages are instantiated from argument lists inside pytest, whose own argv Lightning notices.
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter:UserWarning")

ALL_YAML = sorted(p for p in EXPERIMENTS.rglob("*") if p.suffix in (".yaml", ".yml"))


def _kind(path: Path) -> str:
    rel = path.relative_to(EXPERIMENTS)
    if rel.parts[0] in ("codebook", "mixed") and len(rel.parts) == 2:
        return rel.parts[0]  # a single stage's LightningCLI config
    if "base" in rel.parts[:-1]:
        return "base"
    return "experiment"


def _files(kind: str) -> list[Path]:
    return [p for p in ALL_YAML if _kind(p) == kind]


def _id(path: Path) -> str:
    return str(path.relative_to(EXPERIMENTS))


# Public architectures of the models the paper files name, keyed by the default directory's name.
# Stand-in "pretrained" directories hold these configs (no weights): the model is built on the meta
# device at its real size, so vocabulary extension, tied/untied heads and FSDP wrap classes are checked.
PUBLIC_ARCHITECTURES = {
    "gpt2": {"model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "n_positions": 1024,
             "vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256},
    "Llama-3.2-1B": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256,
                     "max_position_embeddings": 131072, "rope_theta": 500000.0, "tie_word_embeddings": True},
    "Llama-3.2-3B": {"model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28,
                     "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                     "max_position_embeddings": 131072, "rope_theta": 500000.0, "tie_word_embeddings": True},
    "Llama-3.1-8B": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256,
                     "max_position_embeddings": 131072, "rope_theta": 500000.0, "tie_word_embeddings": False},
    # experiments/results/prontoqa_warm.yaml's and prosqa_warm.yaml's warm start: the curriculum probe's small Llama
    # (experiments/probes/logic_learning.py's defaults, the word vocabulary of the official shape).
    "curriculum_llama": {"model_type": "llama", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4,
                         "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 183,
                         "max_position_embeddings": 512, "tie_word_embeddings": True},
}

WORD_TOKENIZED = {"curriculum_llama"}

# A Lightning stage runs here on one CPU process, loading data in it, whatever the file asks for;
# the file's own trainer block is validated on its own (see _check_trainer_block).
CPU_TRAINER = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.num_nodes", "1",
               "--trainer.strategy", "auto", "--data.num_workers", "0"]

METAMATHQA_ROWS = [
    {"query": f"Tom has {a} apples and buys {b} more. How many apples does he have now?",
     "response": f"Tom starts with {a} apples.\nHe buys {b} more, so he has {a} + {b} = {a + b} apples.\n"
                 f"#### {a + b}\nThe answer is: {a + b}",
     "type": "GSM_Rephrased", "original_question": "stand-in"}
    for a, b in [(3, 4), (12, 30), (7, 8), (41, 2), (5, 55), (9, 90), (16, 17), (23, 1)]
]


# ---------------------------------------------------------------------------------- stand-ins


class StandIns:
    """Tiny replacements for the inputs an experiment names but this machine lacks."""

    def __init__(self, root: Path, tokenizer_dir: Path):
        self.root = root
        self.tokenizer_dir = tokenizer_dir
        self._data: dict[str, Path] = {}
        self._pretrained: dict[str, Path] = {}

    def data_file(self, reader: str) -> Path:
        """A small file the ``reader`` reads: generated where a generator exists, else hand-written."""
        if reader not in self._data:
            from lm_latent.data.generators import GENERATORS, write_json

            path = self.root / f"{reader}_standin.json"
            if reader in GENERATORS:
                options_cls, generate = GENERATORS[reader]
                write_json(generate(8, 123, options_cls()), path)
            elif reader == "metamathqa":
                path.write_text(json.dumps(METAMATHQA_ROWS))
            else:
                pytest.fail(f"no stand-in data for reader '{reader}': add one to tests/test_experiment_files.py")
            self._data[reader] = path
        return self._data[reader]

    def head(self, path: Path, n: int = 16) -> Path:
        """The first ``n`` records of a staged JSON array or JSON Lines file (big training files are
        only read for their format here)."""
        out = self.root / "heads" / path.parent.name / path.name
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text(encoding="utf-8")
            if text.lstrip().startswith("["):
                out.write_text(json.dumps(json.loads(text)[:n]))
            else:
                out.write_text("".join(line + "\n" for line in text.splitlines()[:n]))
        return out

    def pretrained_dir(self, name: str) -> Path:
        """The stand-in tokenizer plus the public config.json of model ``name`` (no weights)."""
        if name not in PUBLIC_ARCHITECTURES:
            pytest.fail(f"pretrained model '{name}' has no public architecture in this test's PUBLIC_ARCHITECTURES")
        if name not in self._pretrained:
            from transformers import AutoConfig

            out = self.root / "pretrained" / name
            out.mkdir(parents=True)
            spec = dict(PUBLIC_ARCHITECTURES[name])
            if name in WORD_TOKENIZED:  # a word vocabulary, as the model was trained with (BPE makes it too long)
                from lm_latent.data.readers import read_examples
                from lm_latent.data.tokenization import full_text, load_tokenizer, train_tokenizer

                # The words of both logic tasks (prontoqa_warm.yaml and prosqa_warm.yaml share the name).
                texts = [full_text(e) for task in ("prontoqa", "prosqa") for e in read_examples(task, self.data_file(task))]
                train_tokenizer(texts, out, kind="word")
                spec["vocab_size"] = max(spec["vocab_size"], len(load_tokenizer(out)))
            else:
                for f in self.tokenizer_dir.iterdir():
                    (out / f.name).write_bytes(f.read_bytes())
            AutoConfig.for_model(spec.pop("model_type"), **spec).save_pretrained(out)
            self._pretrained[name] = out
        return self._pretrained[name]


@pytest.fixture(scope="session")
def standins(tmp_path_factory, tiny_tokenizer) -> StandIns:
    return StandIns(tmp_path_factory.mktemp("standins"), tiny_tokenizer)


def write_standin_codes(out: Path, dataset: str, data_file: str, tokenizer_dir: str, num_codes: int, chunk_size: int) -> None:
    """A code table in the real format: one code per CoT chunk of every example (values arbitrary)."""
    from lm_latent.codebook.codes_file import CodeTable, save_codes
    from lm_latent.data.readers import read_examples
    from lm_latent.data.tokenization import load_tokenizer, tokenize_examples

    tokenized, _ = tokenize_examples(load_tokenizer(tokenizer_dir), read_examples(dataset, data_file))
    codes = {t.id: [(i + j) % num_codes for j in range(math.ceil(len(t.cot_ids) / chunk_size))]
             for i, t in enumerate(tokenized)}
    save_codes(out, CodeTable(num_codes, chunk_size, codes))


# ---------------------------------------------------------------------------------- stage checks


def _opt(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _check_trainer_block(block: dict) -> None:
    """The trainer block as written: every key and type against Trainer's signature, the strategy built."""
    from typing import Union

    from jsonargparse import ArgumentParser
    from lightning.pytorch import Trainer
    from lightning.pytorch.cli import LightningArgumentParser
    from lightning.pytorch.strategies import Strategy

    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(Trainer, "trainer")
    parser.parse_object({"trainer": block})
    strategy = block.get("strategy")
    if isinstance(strategy, dict):
        sp = ArgumentParser(exit_on_error=False)
        sp.add_argument("--strategy", type=Union[str, Strategy])
        built = sp.instantiate(sp.parse_object({"strategy": strategy})).strategy
        assert isinstance(built, Strategy), built


def check_codebook_config(config: Path) -> tuple[int, int]:
    """Instantiate stage 1 from ``config`` (on CPU) and load one batch; returns (K, L)."""
    from lm_latent.codebook.cli import lightning_cli

    _check_trainer_block(OmegaConf.to_container(OmegaConf.load(config))["trainer"])
    cli = lightning_cli(["--config", str(config), *CPU_TRAINER], run=False)
    dm, model = cli.datamodule, cli.model
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert int(batch["chunk_ids"].max()) < model.hparams.vocab_size
    assert model.hparams.chunk_size == dm.hparams.chunk_size
    return int(model.hparams.codebook_size), int(model.hparams.chunk_size)


def check_mixed_config(config: Path) -> None:
    """Instantiate stage 2 from ``config`` (trainer on CPU), build the model on the meta device as an
    empty-init strategy would, and load one batch."""
    from lm_latent.training import plan_batches

    written = OmegaConf.to_container(OmegaConf.load(config))
    _check_trainer_block(written["trainer"])
    # The batch split must work on the devices the file asks for (`auto`: one GPU, or a node of 8).
    devices, nodes = written["trainer"].get("devices", 1), written["trainer"].get("num_nodes", 1)
    for world in [devices * nodes] if isinstance(devices, int) else [nodes, 8 * nodes]:
        plan_batches(written["data"].get("global_batch_size", 32), world, written["data"].get("micro_batch_size"))
    cli = _mixed_cli(config)
    dm, module = cli.datamodule, cli.model
    assert module.model is None  # instantiating reads the tokenizer only: the LM comes in configure_model
    with torch.device("meta"):
        module.configure_model()
    assert {p.device.type for p in module.model.parameters()} == {"meta"}
    strategy = written["trainer"].get("strategy")
    policies = (strategy.get("init_args") or {}) if isinstance(strategy, dict) else {}
    for key in ("auto_wrap_policy", "activation_checkpointing_policy"):
        for path in policies.get(key) or []:  # FSDP: the layer classes it wraps must be the model's
            module_name, _, name = path.rpartition(".")
            layer = getattr(importlib.import_module(module_name), name)
            assert any(isinstance(m, layer) for m in module.model.modules()), f"{key}: no {name} in the model"
    rows = module.model.get_input_embeddings().weight.shape[0]
    assert len(dm.tokenizer) == len(module.tokenizer) <= rows
    assert dm.latent_vocab == module.latent_vocab
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert int(batch["input_ids"].max()) < len(dm.tokenizer)


def _mixed_cli(config: Path):
    """The `lm-latent mixed` LightningCLI, parsed and instantiated without running a subcommand."""
    from lm_latent.finetune.cli import _cli_class
    from lm_latent.finetune.datamodule import MixedTokenDataModule
    from lm_latent.finetune.module import MixedTokenLM

    cli_class, checkpoint_class = _cli_class()
    return cli_class(
        MixedTokenLM, MixedTokenDataModule, args=["--config", str(config), *CPU_TRAINER], run=False,
        seed_everything_default=0, trainer_defaults={"callbacks": [checkpoint_class(save_last=True)]},
    )


_READ_EVAL_SETS: set[tuple] = set()


def check_eval_config(config: Path) -> None:
    """The evaluation stage's callbacks: each one built as the config says and its file read."""
    cfg = OmegaConf.to_container(OmegaConf.load(config))
    callbacks = cfg["trainer"]["callbacks"]
    assert callbacks, "the evaluation config has no evaluation callbacks"
    for spec in callbacks:
        module, _, name = spec["class_path"].rpartition(".")
        cb = getattr(importlib.import_module(module), name)(**spec["init_args"])
        key = (cb.dataset, str(cb.file), cb.subset)
        if key not in _READ_EVAL_SETS:  # several experiments share the same test files
            assert len(cb.examples) > 0
            _READ_EVAL_SETS.add(key)


class _EvaluationChecked(Exception):
    """Stops the pipeline's evaluation stage after its config was checked (nothing was evaluated)."""


def standin_launcher(*args, threads: int | None = None) -> None:
    """Replaces `lm_latent.pipeline.run._cli`: check each stage's config instead of running it."""
    args = [str(a) for a in args]
    if args[:2] == ["codebook", "fit"]:
        config = Path(_opt(args, "--config"))
        K, L = check_codebook_config(config)
        ckpt = config.parent / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        # Read back by "encode" below, and by new_token_init="codebook" (a codebook of K zero vectors).
        torch.save({"sizes": {"codebook_size": K, "chunk_size": L},
                    "state_dict": {"quantizer._codebook.embed": torch.zeros(1, K, 8)}}, ckpt)
    elif args[:2] == ["codebook", "encode"]:
        sizes = torch.load(Path(_opt(args, "--checkpoint")), weights_only=True)["sizes"]
        write_standin_codes(Path(_opt(args, "--out")), _opt(args, "--dataset"), _opt(args, "--data"),
                            _opt(args, "--tokenizer"), sizes["codebook_size"], sizes["chunk_size"])
    elif args[:2] == ["mixed", "fit"]:
        config = Path(_opt(args, "--config"))
        check_mixed_config(config)
        ckpt = config.parent / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_text("stand-in checkpoint")
    elif args[:2] == ["mixed", "test"]:
        check_eval_config(Path(_opt(args, "--config")))
        raise _EvaluationChecked
    else:
        pytest.fail(f"the pipeline launched an unexpected command: lm-latent {' '.join(args)}")


@pytest.fixture
def offline_stages(monkeypatch):
    """The pipeline's stage launcher replaced by :func:`standin_launcher` (whose meta-device model build
    reads only the stand-in pretrained directories' config.json: they hold no weights)."""
    from lm_latent.pipeline import run as run_mod

    monkeypatch.setattr(run_mod, "_cli", standin_launcher)


def _clear_placeholder_env(monkeypatch) -> None:
    """Unset the variables behind ``${oc.env:NAME,default}`` placeholders so their defaults apply."""
    for p in ALL_YAML:
        for name in re.findall(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)", p.read_text()):
            monkeypatch.delenv(name, raising=False)


def standin_overrides(cfg, standins: StandIns) -> list[str]:
    """Dotted overrides that swap what this machine lacks (big data, weights) for stand-ins."""
    from lm_latent.config import to_plain

    plain = to_plain(cfg)
    data, out = plain["data"], []
    gen = data.get("generate") or {}
    if gen.get("train"):
        out.append("data.generate.train=12")
        if gen.get("val"):
            out.append("data.generate.val=6")
    for split in ("train", "val", "test"):
        given = data.get(f"{split}_file")
        if given and not Path(given).is_file():
            out.append(f"data.{split}_file={standins.data_file(data['dataset'])}")
    lm = plain["mixed"]["model"]["lm"]
    for strategy, extra in (plain["mixed"].get("per_strategy") or {}).items():
        assert "lm" not in (extra or {}).get("model", {}), f"per_strategy.{strategy} changes the model: not covered here"
    tok = plain["tokenizer"].get("path")
    if "pretrained" in lm:
        stand_in = standins.pretrained_dir(Path(lm["pretrained"]).name)
        out.append(f"mixed.model.lm.pretrained={stand_in}")
        if tok == lm["pretrained"]:
            out.append(f"tokenizer.path={stand_in}")
            tok = None
    if tok:
        out.append(f"tokenizer.path={standins.tokenizer_dir}")
    return out


# ---------------------------------------------------------------------------------- experiment files


def test_experiment_files_are_found():
    kinds = {_kind(p) for p in ALL_YAML}
    assert {"experiment", "base", "codebook", "mixed"} <= kinds
    assert EXPERIMENTS / "default.yaml" in _files("experiment")


@pytest.mark.parametrize("path", _files("experiment"), ids=_id)
def test_experiment_file(path, shared_data, standins, offline_stages, monkeypatch, tmp_path):
    from lm_latent.config import load_experiment, to_plain
    from lm_latent.data.generators import GENERATORS
    from lm_latent.data.readers import DATASETS
    from lm_latent.evaluation.answers import resolve_task
    from lm_latent.mixing.strategies import STRATEGIES
    from lm_latent.pipeline.run import Pipeline

    monkeypatch.chdir(REPO)  # relative paths in experiment files are relative to the repository root
    _clear_placeholder_env(monkeypatch)
    cfg = load_experiment(path)
    plain = to_plain(cfg)  # every interpolation resolves, no mandatory value (???) left unset

    # Sections the pipeline reads directly (the stage blocks are checked by their own CLIs below).
    assert {"name", "seed", "data", "tokenizer", "codebook", "mixed", "evaluation"} <= set(plain)
    assert plain["data"]["dataset"] in DATASETS
    gen = plain["data"].get("generate") or {}
    if gen:
        options_cls, _ = GENERATORS[gen["generator"]]
        options_cls(**(gen.get("options") or {}))
    assert plain["data"].get("train_file") or gen.get("train"), "no training data"
    # A tokenizer directory, a BPE size, or a kind whose vocabulary the data fixes.
    assert plain["tokenizer"].get("path") or plain["tokenizer"].get("vocab_size") or plain["tokenizer"].get("kind") in ("word", "maze")
    strategies = plain["mixed"]["strategies"]
    assert strategies and set(strategies) <= set(STRATEGIES)
    assert set(plain["mixed"].get("per_strategy") or {}) <= set(strategies)
    sets = plain["evaluation"]["sets"]
    assert sets
    for name, s in sets.items():
        resolve_task(s["task"])
        assert s.get("dataset", plain["data"]["dataset"]) in DATASETS, name
        if not s["file"].startswith("@"):
            assert (REPO / s["file"]).resolve().is_file(), f"evaluation set {name}: {s['file']} not found"

    # The pipeline itself, with stand-in inputs and the stage launcher replaced by config checks.
    cfg = load_experiment(path, standin_overrides(cfg, standins))
    p = Pipeline(cfg, tmp_path / "run")
    data = p.data()
    tok = p.tokenizer(data)
    cb = p.codebook(data, tok)
    codes = p.encode(data, tok, cb)
    assert set(codes["files"]) == {split for split in ("train", "val") if split in data["files"]}
    p.cfg["evaluation"]["codebook_checkpoint"] = cb["checkpoint"]
    for strategy in strategies:
        run = p.mixed(strategy, data, tok, codes)
        with pytest.raises(_EvaluationChecked):
            p.evaluate(strategy, run, data, tok)


@pytest.mark.parametrize("path", _files("base"), ids=_id)
def test_base_file_is_used(path):
    """A base file is only checked through the experiments built on it, so one must exist."""
    users = []
    for exp in _files("experiment"):
        chain, current = [], exp
        while True:
            base = OmegaConf.load(current).get("base")
            if base is None:
                break
            current = (current.parent / str(base)).resolve()
            chain.append(current)
        if path.resolve() in chain:
            users.append(exp)
    assert users, f"{_id(path)} is the base of no experiment file"


# ---------------------------------------------------------------------------------- stage configs


def _stage_config_with_standins(path: Path, standins: StandIns, shared_data: Path, tmp_path: Path) -> Path:
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    data = cfg["data"]
    dataset = data["dataset"]
    for key in ("train_file", "val_file", "test_file"):
        if data.get(key) and not (REPO / data[key]).is_file():
            data[key] = str(standins.data_file(dataset))
        elif data.get(key):
            data[key] = str(standins.head((REPO / data[key]).resolve()))
    data["tokenizer_dir"] = str(standins.tokenizer_dir)
    for codes_key, data_key in (("codes_file", "train_file"), ("val_codes_file", "val_file"), ("test_codes_file", "test_file")):
        if data.get(codes_key):
            out = tmp_path / f"{codes_key}.json"
            write_standin_codes(out, dataset, data[data_key], str(standins.tokenizer_dir), 64, data.get("chunk_size") or 16)
            data[codes_key] = str(out)
    cfg["trainer"]["default_root_dir"] = str(tmp_path / "root")
    out = tmp_path / path.name
    out.write_text(OmegaConf.to_yaml(cfg))
    return out


@pytest.mark.parametrize("path", _files("codebook"), ids=_id)
def test_codebook_stage_config(path, shared_data, standins, tmp_path):
    K, L = check_codebook_config(_stage_config_with_standins(path, standins, shared_data, tmp_path))
    written = OmegaConf.load(path)
    assert (K, L) == (written.model.codebook_size, written.data.chunk_size)


@pytest.mark.parametrize("path", _files("mixed"), ids=_id)
def test_mixed_stage_config(path, shared_data, standins, tmp_path):
    check_mixed_config(_stage_config_with_standins(path, standins, shared_data, tmp_path))


# ---------------------------------------------------------------------------------- launch helpers


def _load_launch_module(name: str):
    spec = importlib.util.spec_from_file_location(f"launch_{name}", LAUNCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_run_stops_before_stage2_and_lm_latent_run_adopts_it(shared_data, standins, offline_stages, monkeypatch, tmp_path):
    """prepare_run.py runs stages 0-1 through the pipeline and leaves each stage-2 fit exactly as an
    interrupted `lm-latent run` would: config written, stage marked started, no result."""
    from lm_latent.pipeline import run as run_mod

    prepare_run = _load_launch_module("prepare_run")
    monkeypatch.chdir(REPO)
    overrides = ["data.generate.train=12", "data.generate.val=6", "mixed.strategies=[latent_ar,cot]"]
    launched = []

    def record(*args):
        launched.append([str(a) for a in args[:2]])
        standin_launcher(*args)

    monkeypatch.setattr(run_mod, "_cli", record)
    out = tmp_path / "run"
    rows = prepare_run.prepare(EXPERIMENTS / "default.yaml", out, overrides)
    assert [(s, st) for s, _, st in rows] == [("latent_ar", "todo"), ("cot", "todo")]
    assert ["mixed", "fit"] not in launched and ["codebook", "fit"] in launched
    plan = (out / prepare_run.PLAN_NAME).read_text().splitlines()
    assert [line.split("\t")[0] for line in plan] == ["latent_ar", "cot"]
    for strategy, config, _ in rows:
        assert config.is_file() and (config.parent / "started.json").is_file()
        assert not (config.parent / "stage.json").exists()
        check_mixed_config(config)  # what srun/torchrun will be given

    # A launched fit wrote latent_ar's checkpoint: a second prepare says resume, not todo ...
    (out / "mixed" / "latent_ar" / "checkpoints").mkdir(parents=True)
    (out / "mixed" / "latent_ar" / "checkpoints" / "last.ckpt").write_text("stand-in checkpoint")
    rows = prepare_run.prepare(EXPERIMENTS / "default.yaml", out, overrides)
    assert [(s, st) for s, _, st in rows] == [("latent_ar", "resume"), ("cot", "todo")]
    # ... and the pipeline itself adopts it: it resumes from that checkpoint instead of starting over.
    resumed = []
    monkeypatch.setattr(run_mod, "_cli", lambda *a, **kw: resumed.append([str(x) for x in a]))
    p = run_mod.Pipeline(OmegaConf.load(out / "config.yaml"), out)
    data = p.data()
    tok = p.tokenizer(data)
    p.mixed("latent_ar", data, tok, p.encode(data, tok, p.codebook(data, tok)))
    assert resumed == [["mixed", "fit", "--config", str(out / "mixed" / "latent_ar" / "config.yaml"), "--ckpt_path", "last"]]


def test_split_metamathqa(tmp_path):
    split_metamathqa = _load_launch_module("split_metamathqa")
    source = tmp_path / "MetaMathQA-395K.json"
    source.write_text(json.dumps(METAMATHQA_ROWS))
    assert split_metamathqa.main([str(source), "--out-dir", str(tmp_path / "a"), "--val", "3"]) == 0
    assert split_metamathqa.main([str(source), "--out-dir", str(tmp_path / "b"), "--val", "3"]) == 0
    train = json.loads((tmp_path / "a" / "metamathqa_train.json").read_text())
    val = json.loads((tmp_path / "a" / "metamathqa_val.json").read_text())
    assert (len(train), len(val)) == (5, 3)
    assert sorted(map(json.dumps, train + val)) == sorted(map(json.dumps, METAMATHQA_ROWS))  # a partition
    assert train == [r for r in METAMATHQA_ROWS if r in train]  # original order kept
    assert (tmp_path / "b" / "metamathqa_val.json").read_text() == (tmp_path / "a" / "metamathqa_val.json").read_text()

    from lm_latent.data.readers import read_examples

    assert len(read_examples("metamathqa", tmp_path / "a" / "metamathqa_val.json")) == 3

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(METAMATHQA_ROWS[0]) + "\n" + json.dumps({"query": "q"}) + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 2: .*'response'"):
        split_metamathqa.read_rows(bad)


@pytest.mark.parametrize("script", sorted(p.name for p in LAUNCH.iterdir() if p.suffix in (".sh", ".sbatch")))
def test_launch_script_syntax(script):
    result = subprocess.run(["bash", "-n", str(LAUNCH / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = (LAUNCH / script).read_text()
    assert "experiments/launch/prepare_run.py" in text and "lm_latent.cli run" in text


FAKE_SRUN = """#!/bin/bash
# srun on one machine: SLURM_NTASKS copies of the command with the task variables srun sets.
[ "$1" = "--kill-on-bad-exit=1" ] && shift
pids=()
for ((i = 0; i < SLURM_NTASKS; i++)); do
    SLURM_PROCID=$i SLURM_LOCALID=$i SLURM_NODEID=0 "$@" &
    pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc
"""

TINY_SETS = ("generated_valid", "generated_test", "prontoqa_valid", "prontoqa_test")
TINY_RUN = ["data.generate.train=64", "data.generate.val=16", "data.generate.test=16", "codebook.trainer.max_steps=4",
            "codebook.trainer.val_check_interval=2", "mixed.trainer.max_epochs=1", "mixed.strategies=[latent_ar]",
            "evaluation.max_new_tokens=16", *(f"evaluation.sets.{name}.subset=4" for name in TINY_SETS)]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["slurm_multinode.sbatch", "torchrun_node.sh"])
def test_launch_recipe_end_to_end_on_two_cpu_processes(launcher, shared_data, tmp_path):
    """The shipped script runs the default experiment with stage 2 on two CPU processes started by
    torchrun, or by srun (a stand-in that sets SLURM's task variables, so Lightning's SLURMEnvironment
    takes the ranks from it) inside a pretend two-task allocation; then `lm-latent run` finishes it."""
    import os

    env = dict(os.environ, PYTHON=sys.executable, RUN_DIR=str(tmp_path / "run"), NPROC_PER_NODE="2")
    if launcher.endswith(".sbatch"):
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "srun").write_text(FAKE_SRUN)
        (bin_dir / "srun").chmod(0o755)
        env.update(PATH=f"{bin_dir}:{env['PATH']}", SLURM_NNODES="1", SLURM_NTASKS_PER_NODE="2", SLURM_NTASKS="2",
                   SLURM_JOB_NAME="lm-latent", SLURM_NODELIST="localhost", SLURM_JOB_ID="4242",
                   SLURM_PROCID="0", SLURM_LOCALID="0", SLURM_NODEID="0")
    result = subprocess.run(["bash", str(LAUNCH / launcher), "experiments/default.yaml", *TINY_RUN],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "MEMBER: 2/2" in log  # stage 2 ran as two ranks
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {name: row["n"] for name, row in results["runs"]["latent_ar"].items()} == {name: 4 for name in TINY_SETS}
    plan = (tmp_path / "run" / "stage2_plan.tsv").read_text().split("\t")
    assert plan[0] == "latent_ar" and plan[2].strip() == "todo"
