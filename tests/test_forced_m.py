"""Accuracy with m forced: an evaluation set with ``callback_args: {force_latent: m}`` and
``strategies: [latent_ar]`` runs for the latent strategy only, and its callback decodes with exactly m
codes (tests/test_finetune_generation.py checks the decoding itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "default.yaml"
FORCED = [
    "data.generate.train=12", "data.generate.val=6", "data.generate.test=6",
    "evaluation.sets.m1={task: prontoqa, file: '@val', strategies: [latent_ar], callback_args: {force_latent: 1}}",
    "evaluation.during_fit.sets=[generated_valid, m1]",
]


@pytest.fixture
def at_repo(shared_data, monkeypatch):
    monkeypatch.chdir(REPO)  # the experiment's evaluation files are relative to the repository root


def test_a_set_restricted_to_a_strategy_is_evaluated_for_it_alone(at_repo, tmp_path):
    from lm_latent.config import load_experiment
    from lm_latent.pipeline.run import Pipeline
    from lm_latent.pipeline.validate import validate_experiment

    cfg = load_experiment(EXPERIMENT, FORCED)
    validate_experiment(cfg)
    p = Pipeline(cfg, tmp_path / "run")
    assert "m1" in p.sets_of("latent_ar") and "m1" not in p.sets_of("cot")
    assert set(p.sets_of("cot")) == set(p.cfg["evaluation"]["sets"]) - {"m1"}

    data = p.data()
    tok = {"dir": "TOKENIZER", "digest": "-"}
    codes = {"files": {"train": "CODES", "val": "VAL_CODES"}, "digests": {}, "codebook_checkpoint": "CODEBOOK"}

    def during_fit(strategy: str) -> dict[str, dict]:
        config = p.mixed_config(strategy, tmp_path / strategy, data, tok, codes)
        return {cb["init_args"]["name"]: cb["init_args"] for cb in config["trainer"]["callbacks"] if "name" in cb.get("init_args", {})}

    latent, cot = during_fit("latent_ar"), during_fit("cot")
    assert latent["m1"]["force_latent"] == 1 and "force_latent" not in latent["generated_valid"]
    assert set(cot) == {"generated_valid"}
    # The text-only baseline never decodes the latent rows it shares but does not train.
    assert cot["generated_valid"]["force_latent"] == 0
    assert all(s["callback_args"]["force_latent"] == 0 for s in p.sets_of("cot").values())


def test_the_callback_decodes_with_m_codes(tiny_tokenizer):
    import torch

    from lm_latent.data.example import Example
    from lm_latent.data.tokenization import load_tokenizer
    from lm_latent.evaluation.callbacks import AccuracyCallback
    from lm_latent.finetune.model import build_model
    from lm_latent.finetune.vocab import extend_vocabulary

    torch.manual_seed(0)
    tok = load_tokenizer(tiny_tokenizer)
    model = build_model({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256}, tok)
    vocab = extend_vocabulary(model, tok, 4)

    class Module:  # what the callback reads from a MixedTokenLM
        pass

    module = Module()
    module.model, module.tokenizer, module.latent_vocab = model, tok, vocab
    examples = [Example(question=f"Is Tom a wumpus number {i}?", steps=(), answer="True", id=str(i), source="test") for i in range(3)]
    for m in (0, 2):
        cb = AccuracyCallback("prontoqa", examples=examples, max_new_tokens=6, num_samples=0, force_latent=m)
        rows = cb._score_shard(module, [0, 1, 2], synced=False)
        assert [r["num_latent"] for r in rows] == [m] * 3
        assert [r["num_delimiter"] for r in rows] == [2 * (m > 0)] * 3
    with pytest.raises(ValueError, match="force_latent"):
        AccuracyCallback("prontoqa", examples=examples, force_latent=-1)


def test_a_text_only_strategy_decodes_with_m_zero_unless_told_otherwise():
    """Without ``force_latent`` the callback rules latent codes out for a model whose datamodule mixes
    without codes (CoT, Sol-Only: its latent rows were never trained), and leaves m to a latent model."""
    from types import SimpleNamespace

    from lm_latent.data.example import Example
    from lm_latent.evaluation.callbacks import AccuracyCallback
    from lm_latent.mixing.strategies import MixingStrategy

    examples = [Example(question="Is Tom a wumpus?", steps=(), answer="True", id="0", source="test")]

    def trainer_of(strategy):
        return SimpleNamespace(datamodule=SimpleNamespace(strategy=MixingStrategy(strategy)))

    free = AccuracyCallback("prontoqa", examples=examples)
    assert [free.forced_m(trainer_of(s)) for s in ("cot", "sol_only", "latent_ar")] == [0, 0, None]
    assert free.forced_m(SimpleNamespace(datamodule=None)) is None  # no datamodule: the model decides
    forced = AccuracyCallback("prontoqa", examples=examples, force_latent=2)
    assert forced.forced_m(trainer_of("cot")) == 2
