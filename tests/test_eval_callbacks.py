"""Accuracy callbacks end to end with a real (tiny) Llama: metric de-duplication, one- vs two-process
DDP equality on an odd-sized set, TensorBoard tags after a short fit, best accuracy across resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader

from lm_latent.data.example import Example
from lm_latent.data.tokenization import load_tokenizer, prompt_text, train_tokenizer
from lm_latent.evaluation import is_correct
from lm_latent.evaluation.callbacks import (
    AccuracyCallback,
    GSM8KAccuracy,
    MATHAccuracy,
    ProsQAAccuracy,
    _cell,
    is_sharded_strategy,
)
from lm_latent.evaluation.metrics import GenerationAccuracy, shard_indices
from lm_latent.mixing.tokens import add_latent_tokens, latent_vocab_of

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
NUM_CODES = 16
EVAL_SIZE = 37  # odd, and not a multiple of the per-device batch sizes used below


# ---------------------------------------------------------------- a tiny model that half-learns sums


def toy_example(a: int, b: int) -> Example:
    # Some samples think in latent codes, some in text, as a mixed-token model does.
    steps = () if (a * b) % 3 == 0 else (f"{a} + {b} = {a + b}",)
    return Example(question=f"What is {a} + {b}?", steps=steps, answer=str(a + b), id=f"toy:{a}:{b}", source="toy")


def toy_train_text(ex: Example) -> str:
    a, b = (int(x) for x in ex.id.split(":")[1:])
    mid = "".join(s + "\n" for s in ex.steps) or f"<boLatent><latent_{a}><latent_{b}><eoLatent>"
    return prompt_text(ex.question) + mid + "### " + ex.answer


def toy_loader(model_dir: str | Path, batch_size: int = 16) -> DataLoader:
    tok = load_tokenizer(model_dir)
    texts = [toy_train_text(toy_example(a, b)) for a in range(10) for b in range(10)]
    enc = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]

    def collate(rows):
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = labels[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return DataLoader(enc, batch_size=batch_size, shuffle=False, collate_fn=collate)


class ToyLM(LightningModule):
    """A thin LightningModule over a Hugging Face causal LM, with what the callbacks read:
    ``.model``, ``.tokenizer``, ``.latent_vocab``."""

    def __init__(self, model_dir: str, lr: float = 1e-3) -> None:
        super().__init__()
        from transformers import LlamaForCausalLM

        self.tokenizer = load_tokenizer(model_dir)
        self.latent_vocab = latent_vocab_of(self.tokenizer, NUM_CODES)
        self.model = LlamaForCausalLM.from_pretrained(model_dir).train()  # from_pretrained returns eval mode
        self.lr = lr

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.model(**batch).loss)

    def test_step(self, batch, batch_idx):
        self.log("test/loss", self.model(**batch).loss)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr)


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory) -> Path:
    """A 2-layer, d-64 Llama trained for a few seconds on sums of digits, saved with its tokenizer,
    plus an odd-sized evaluation file (held-out and seen sums) in the canonical format."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lm_latent.data.readers import write_canonical

    out = tmp_path_factory.mktemp("toy_lm")
    examples = [toy_example(a, b) for a in range(10) for b in range(10)]
    filler = ["Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or zumpus?\n### Tom is a yumpus."] * 20
    train_tokenizer([toy_train_text(e) for e in examples] * 3 + filler, out, vocab_size=320, min_frequency=1)
    tok = load_tokenizer(out)
    add_latent_tokens(tok, NUM_CODES)
    tok.save_pretrained(str(out))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: a second thread only contends with other processes
    try:
        torch.manual_seed(0)
        config = LlamaConfig(
            vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
        )
        model = LlamaForCausalLM(config)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        batch = next(iter(toy_loader(out, batch_size=100)))
        for _ in range(150):
            loss = model(**batch).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.save_pretrained(str(out))
    finally:
        torch.set_num_threads(threads)

    eval_set = [examples[(7 * i) % 100] for i in range(EVAL_SIZE)]
    write_canonical(eval_set, out / "eval.jsonl")
    return out


def _trainer(tmp_path, callbacks, **kw) -> Trainer:
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    defaults.update(kw)
    return Trainer(callbacks=callbacks, **defaults)


# ---------------------------------------------------------------- sharding and the metric


def test_strided_shards_cover_once_and_padded_shards_are_equal():
    for n in (0, 1, 5, 37):
        for world in (1, 2, 3, 8):
            shards = [shard_indices(n, r, world) for r in range(world)]
            assert sorted(i for s in shards for i in s) == list(range(n))
            padded = [shard_indices(n, r, world, pad=True) for r in range(world)]
            assert {len(s) for s in padded} == ({-(-n // world)} if n else {0})
            assert set(i for s in padded for i in s) == set(range(n))
    assert shard_indices(5, 1, 2) == [1, 3]
    assert shard_indices(5, 1, 2, pad=True) == [1, 3, 1]
    with pytest.raises(ValueError):
        shard_indices(5, 2, 2)


def test_metric_counts_each_key_once():
    m = GenerationAccuracy()
    m.update([0, 1, 2], [1, 0, 1], [10, 20, 30], [2, 0, 4])
    m.update([2, 3, 0], [1, 1, 1], [30, 5, 10], [4, 1, 2])  # 2 and 0 again, as padding would add them
    out = m.compute()
    assert int(out["n"]) == 4
    assert float(out["accuracy"]) == pytest.approx(3 / 4)
    assert float(out["mean_tokens"]) == pytest.approx((10 + 20 + 30 + 5) / 4)
    assert float(out["mean_latent_tokens"]) == pytest.approx((2 + 0 + 4 + 1) / 4)
    empty = GenerationAccuracy()
    empty.update([], [], [], [])
    assert int(empty.compute()["n"]) == 0
    with pytest.raises(ValueError, match="differ in length"):
        m.update([1, 2], [1], [1], [1])


def test_sharded_strategies_are_recognised():
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, SingleDeviceStrategy

    assert is_sharded_strategy(FSDPStrategy())
    assert not is_sharded_strategy(DDPStrategy())
    assert not is_sharded_strategy(SingleDeviceStrategy(device="cpu"))


def test_callbacks_check_their_arguments(tmp_path):
    with pytest.raises(ValueError, match="file"):
        GSM8KAccuracy()
    with pytest.raises(ValueError, match="checked as math"):
        GSM8KAccuracy(file=tmp_path / "x.jsonl", dataset="math500")
    with pytest.raises(ValueError, match="decoding"):
        ProsQAAccuracy(file=tmp_path / "x.json", decoding="beam")
    with pytest.raises(ValueError, match="stages"):
        ProsQAAccuracy(file=tmp_path / "x.json", stages=("train",))
    cb = MATHAccuracy(file=tmp_path / "t.jsonl", dataset="math500", subset=10)
    assert (cb.task, cb.dataset, cb.name) == ("math", "math500", "math500")
    assert AccuracyCallback(task="prontoqa", file=tmp_path / "p.json").name == "prontoqa"


# ---------------------------------------------------------------- one process


def test_callback_scores_what_the_model_generates(toy_dir, tmp_path):
    from lm_latent.data.readers import read_examples
    from lm_latent.finetune.generation import generate

    cb = GSM8KAccuracy(file=toy_dir / "eval.jsonl", dataset="canonical", name="toy", max_new_tokens=12,
                       batch_size=8, stages=("val",), results_file=tmp_path / "out" / "toy.json")
    module = ToyLM(str(toy_dir))
    trainer = _trainer(tmp_path, [cb])
    logged = trainer.validate(module, dataloaders=toy_loader(toy_dir), verbose=False)[0]

    examples = read_examples("canonical", toy_dir / "eval.jsonl")
    gens = generate(module.model, module.tokenizer, [prompt_text(e.question) for e in examples],
                    module.latent_vocab, max_new_tokens=12)
    right = [is_correct("gsm8k", g.written, e.answer) for g, e in zip(gens, examples)]
    assert 0 < sum(right) < len(right), "the toy model should get some sums right and some wrong"
    assert logged["val/toy/n"] == EVAL_SIZE
    assert logged["val/toy/accuracy"] == pytest.approx(sum(right) / EVAL_SIZE)
    assert logged["val/toy/mean_tokens"] == pytest.approx(sum(g.num_tokens for g in gens) / EVAL_SIZE)
    assert logged["val/toy/mean_latent_tokens"] == pytest.approx(sum(g.num_latent for g in gens) / EVAL_SIZE)
    assert logged["val/toy/mean_latent_tokens"] > 0
    assert [r["correct"] for r in cb.last_results] == right
    assert [r["id"] for r in cb.last_results] == [e.id for e in examples]
    assert cb.best == {"val/toy": pytest.approx(sum(right) / EVAL_SIZE)}

    written = json.loads((tmp_path / "out" / "toy.json").read_text())
    assert (written["n"], written["stage"], written["task"]) == (EVAL_SIZE, "val", "gsm8k")
    assert written["accuracy"] == pytest.approx(sum(right) / EVAL_SIZE)
    assert written["seconds_per_example"] > 0
    assert [r["text"] for r in written["results"]] == [g.text for g in gens]

    # The test stage is off for this callback; a test-only callback logs under test/.
    assert "test/toy/accuracy" not in trainer.test(module, dataloaders=toy_loader(toy_dir), verbose=False)[0]
    test_cb = GSM8KAccuracy(file=toy_dir / "eval.jsonl", dataset="canonical", name="toy", subset=5,
                            max_new_tokens=12, stages="test")
    logged = _trainer(tmp_path, [test_cb]).test(module, dataloaders=toy_loader(toy_dir), verbose=False)[0]
    assert logged["test/toy/n"] == 5
    assert logged["test/toy/accuracy"] == pytest.approx(sum(right[:5]) / 5)


class ScriptedLM(LightningModule):
    """A module whose ``generate`` returns fixed token ids per prompt (what a model might emit)."""

    def __init__(self, tokenizer_dir: Path, script: dict[str, list[int]]) -> None:
        super().__init__()
        self.tokenizer = load_tokenizer(tokenizer_dir)
        self.latent_vocab = add_latent_tokens(self.tokenizer, NUM_CODES)
        self.script = script

    def generate(self, prompts, **kwargs):
        from lm_latent.finetune.generation import split_generated

        return [split_generated(self.script[p], self.tokenizer, self.latent_vocab) for p in prompts]

    def validation_step(self, batch, batch_idx):
        pass


def test_callback_scores_latent_tokens_inside_the_answer_as_wrong(tiny_tokenizer, tmp_path):
    module = ScriptedLM(tiny_tokenizer, {})
    tok, vocab = module.tokenizer, module.latent_vocab

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    latent = [vocab.bo_id, vocab.code_to_id(5), vocab.eo_id]
    outputs = [
        latent + ids("Tom is a yumpus.\n### True"),      # latent thinking, then a text answer: right
        ids("### ") + latent + ids("True"),                # latents where the answer should be: wrong
        ids("### True") + latent,                          # latents after the answer: wrong
        ids("Tom is a yumpus.\n### False"),               # a wrong answer in text
    ]
    examples = [Example(question=f"Is Tom a yumpus {i}? True or false: Tom is a yumpus.", steps=(), answer="True",
                        id=f"q{i}", source="toy") for i in range(len(outputs))]
    module.script = {prompt_text(e.question): out + [tok.eos_token_id] for e, out in zip(examples, outputs)}
    cb = AccuracyCallback(task="prontoqa", examples=examples, stages=("val",), num_samples=0,
                          results_file=tmp_path / "r.json")
    logged = _trainer(tmp_path, [cb]).validate(module, dataloaders=DataLoader([0]), verbose=False)[0]
    assert [r["correct"] for r in cb.last_results] == [True, False, False, False]
    assert logged["val/prontoqa/accuracy"] == pytest.approx(1 / 4)
    rows = json.loads((tmp_path / "r.json").read_text())["results"]
    assert rows[1]["text"].replace(" ", "") == "###True"  # the text alone reads as a right answer
    assert rows[1]["written"].replace(" ", "") == "###<boLatent><latent_5><eoLatent>True"


# ---------------------------------------------------------------- two processes (DDP) == one process

_WORKER = """
import json, sys
sys.path.insert(0, {tests!r})
from lightning.pytorch import Trainer
from test_eval_callbacks import ToyLM, toy_loader
from lm_latent.evaluation.callbacks import GSM8KAccuracy

model_dir, devices, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
common = dict(file=model_dir + "/eval.jsonl", dataset="canonical", max_new_tokens=12, num_samples=0)
callbacks = [
    GSM8KAccuracy(name="plain", batch_size=8, **common),
    # padded shards + synced_gpus, as under FSDP/DeepSpeed
    GSM8KAccuracy(name="synced", batch_size=5, synced_generation=True, **common),
]
trainer = Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", callbacks=callbacks, logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
logged = trainer.validate(ToyLM(model_dir), dataloaders=toy_loader(model_dir), verbose=False)[0]
if trainer.is_global_zero:
    with open(out, "w") as f:
        json.dump({{"logged": {{k: float(v) for k, v in logged.items() if "loss" not in k}},
                   "results": {{cb.name: cb.last_results for cb in callbacks}},
                   "world_size": trainer.world_size}}, f)
from lm_latent.lightning_cli import leave_process_group
leave_process_group()  # gloo's threads alive at exit can abort a finished run (SIGABRT)
"""


def _run_worker(toy_dir: Path, tmp_path: Path, devices: int) -> dict:
    script = tmp_path / "eval_worker.py"
    script.write_text(_WORKER.format(tests=str(Path(__file__).resolve().parent)))
    out = tmp_path / f"result_{devices}.json"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("MASTER_PORT", None)
    proc = subprocess.run([sys.executable, str(script), str(toy_dir), str(devices), str(out)], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def test_two_process_ddp_evaluation_equals_one_process(toy_dir, tmp_path):
    one = _run_worker(toy_dir, tmp_path, devices=1)
    two = _run_worker(toy_dir, tmp_path, devices=2)
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for name in ("plain", "synced"):
        assert two["logged"][f"val/{name}/n"] == EVAL_SIZE
        for key in ("accuracy", "mean_tokens", "mean_latent_tokens", "n"):
            assert two["logged"][f"val/{name}/{key}"] == one["logged"][f"val/{name}/{key}"], (name, key)
        assert two["results"][name] == one["results"][name]
    assert 0 < one["logged"]["val/plain/accuracy"] < 1


# ---------------------------------------------------------------- TensorBoard and resume


def test_short_fit_writes_accuracy_token_and_sample_tags(toy_dir, tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    callbacks = [GSM8KAccuracy(file=toy_dir / "eval.jsonl", dataset="canonical", name="toy", subset=9,
                               max_new_tokens=12, num_samples=4)]
    prosqa = DATA / "prosqa" / "valid.json"
    if prosqa.exists():  # the real file through the real reader, when the staged data is there
        callbacks.append(ProsQAAccuracy(file=prosqa, subset=3, max_new_tokens=6, num_samples=3))
    logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    trainer = _trainer(tmp_path, callbacks, logger=logger, max_epochs=2, limit_train_batches=2,
                       limit_val_batches=1, log_every_n_steps=1)
    trainer.fit(ToyLM(str(toy_dir)), train_dataloaders=toy_loader(toy_dir), val_dataloaders=toy_loader(toy_dir))

    acc = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    scalars, tensors = set(acc.Tags()["scalars"]), set(acc.Tags()["tensors"])
    for cb in callbacks:
        for key in ("accuracy", "mean_tokens", "mean_latent_tokens", "n", "accuracy_best"):
            assert f"val/{cb.name}/{key}" in scalars
        assert len(acc.Scalars(f"val/{cb.name}/accuracy")) == 2  # one per epoch
        assert [e.value for e in acc.Scalars(f"val/{cb.name}/n")] == [cb.subset] * 2
        text_tag = f"val/{cb.name}/samples/text_summary"
        assert text_tag in tensors
        table = acc.Tensors(text_tag)[-1].tensor_proto.string_val[0].decode()
        assert table.startswith("| # | question | latent codes | model output | gold | correct |")
        assert table.count("\n") == 1 + cb.num_samples
        assert cb.examples[0].question[:30].replace("|", "\\|") in table


def test_best_accuracy_survives_checkpoint_resume(toy_dir, tmp_path):
    def make():
        return GSM8KAccuracy(file=toy_dir / "eval.jsonl", dataset="canonical", name="toy", subset=7,
                             max_new_tokens=12, num_samples=0)

    cb = make()
    trainer = _trainer(tmp_path, [cb], max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(ToyLM(str(toy_dir)), train_dataloaders=toy_loader(toy_dir), val_dataloaders=toy_loader(toy_dir))
    cb.best["val/toy"] = 0.875  # a better epoch than this one, as if seen earlier
    ckpt = tmp_path / "last.ckpt"
    trainer.save_checkpoint(str(ckpt))
    saved = torch.load(str(ckpt), weights_only=True)["callbacks"]
    assert saved[cb.state_key] == {"best": {"val/toy": 0.875}}

    # A second instance with another name keeps its own state.
    resumed, other = make(), GSM8KAccuracy(file=toy_dir / "eval.jsonl", dataset="canonical", name="other")
    assert resumed.state_key == cb.state_key != other.state_key
    trainer2 = _trainer(tmp_path, [resumed, other], max_epochs=2, limit_train_batches=1, limit_val_batches=1)
    trainer2.fit(ToyLM(str(toy_dir)), train_dataloaders=toy_loader(toy_dir), val_dataloaders=toy_loader(toy_dir),
                 ckpt_path=str(ckpt))
    assert resumed.best["val/toy"] == 0.875  # epoch 2 was evaluated, and did not beat the restored best
    assert trainer2.callback_metrics["val/toy/accuracy_best"] == pytest.approx(0.875)
    assert trainer2.callback_metrics["val/toy/accuracy"] < 0.875


def test_callback_drives_the_stage2_module(toy_dir, tmp_path):
    """With the real MixedTokenLM (its own .generate), the same weights give the same numbers."""
    from transformers import LlamaForCausalLM

    from lm_latent.finetune.module import MixedTokenLM

    mixed = MixedTokenLM({"pretrained": str(toy_dir)}, num_codes=NUM_CODES)
    mixed.configure_model()
    # Extending the vocabulary re-initialises the latent rows; put the trained ones back.
    mixed.model.load_state_dict(LlamaForCausalLM.from_pretrained(str(toy_dir)).state_dict())
    runs = {}
    for name, module in (("mixed", mixed), ("stand_in", ToyLM(str(toy_dir)))):
        cb = GSM8KAccuracy(file=toy_dir / "eval.jsonl", dataset="canonical", name="toy", subset=11,
                           max_new_tokens=12, num_samples=0)
        logged = _trainer(tmp_path, [cb]).validate(module, dataloaders=toy_loader(toy_dir), verbose=False)[0]
        runs[name] = ({k: v for k, v in logged.items() if k.startswith("val/toy/")}, cb.last_results)
    assert runs["mixed"] == runs["stand_in"]
    assert runs["mixed"][0]["val/toy/n"] == 11


def test_sample_table_shows_codes_decoded_by_the_codebook(toy_dir, tmp_path):
    from lm_latent.codebook.decode import decode_codes
    from lm_latent.codebook.module import CodebookAutoencoder

    torch.manual_seed(0)
    codebook = CodebookAutoencoder(str(toy_dir), chunk_size=4, codebook_size=NUM_CODES, code_dim=16, d_model=32,
                                   n_heads=2, encoder_layers=1, prompt_layers=1, decoder_layers=1, kmeans_init=False)
    holder = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=str(tmp_path))
    holder.strategy.connect(codebook)
    holder.save_checkpoint(str(tmp_path / "codebook.ckpt"))

    cb = GSM8KAccuracy(file=toy_dir / "eval.jsonl", dataset="canonical", name="toy", subset=12,
                       max_new_tokens=12, codebook_checkpoint=tmp_path / "codebook.ckpt")
    module = ToyLM(str(toy_dir))
    _trainer(tmp_path, [cb]).validate(module, dataloaders=toy_loader(toy_dir), verbose=False)
    with_codes = [r for r in cb.last_results if r["codes"]]
    assert with_codes, "the toy model answers some sums in latent codes"
    table = cb.samples_markdown(with_codes, module)
    row = table.splitlines()[2]
    r = with_codes[0]
    prompt_ids = module.tokenizer(prompt_text(r["question"]), add_special_tokens=False)["input_ids"]
    decoded = decode_codes(codebook.eval(), module.tokenizer, prompt_ids, r["codes"])
    assert " ".join(map(str, r["codes"])) + "<br>*" in row
    assert decoded and _cell(decoded, 600) in row
    assert cb.codebook_checkpoint is not None  # decoding worked: no fallback to code ids only
