"""One `seed` drives every random choice of an `lm-latent run`: the generated problems, and every
stage's own seeds in the configs the pipeline writes (seed_everything, the codebook's and the
fine-tune's data order, the replacement draws, the new-token initialisation, sampled decoding). A
stage that sets its own seed keeps it. Checked on the written stage configs and the generated data,
without training anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "experiments" / "default.yaml"
SMALL = ["data.generate.train=12", "data.generate.val=6", "data.generate.test=null"]
SEED_KEYS = ("seed", "seed_everything", "init_seed")


def _seeds(config, path: str = "") -> dict[str, object]:
    """Every seed-like key of a written config, by its path (``trainer.callbacks.0.init_args.seed``)."""
    found: dict[str, object] = {}
    items = config.items() if isinstance(config, dict) else enumerate(config) if isinstance(config, list) else ()
    for k, v in items:
        key = f"{path}.{k}" if path else str(k)
        if k in SEED_KEYS and not isinstance(v, (dict, list)):
            found[key] = v
        found.update(_seeds(v, key))
    return found


def _written(out: Path, seed: int, *overrides: str) -> dict:
    """The generated data and every stage config the default experiment writes for ``seed``."""
    from lm_latent.config import load_experiment
    from lm_latent.pipeline.run import Pipeline

    p = Pipeline(load_experiment(EXPERIMENT, [*SMALL, f"seed={seed}", *overrides]), out)
    data = p.data()
    tok = {"dir": "TOKENIZER", "digest": "-"}
    codes = {"files": {"train": "CODES", "val": "VAL_CODES"}, "digests": {}, "codebook_checkpoint": "CODEBOOK"}
    configs = {"codebook": p.codebook_config(out / "codebook", data, tok)}
    for strategy in p.cfg["mixed"]["strategies"]:
        configs[f"mixed/{strategy}"] = p.mixed_config(strategy, out / "mixed" / strategy, data, tok, codes)
    # Paths name the run folder: compare the runs' contents, not where they live.
    configs = json.loads(json.dumps(configs).replace(str(out), "RUN"))
    return {"data": {split: Path(f).read_bytes() for split, f in data["files"].items()}, "configs": configs}


@pytest.fixture
def at_repo(shared_data, monkeypatch):
    monkeypatch.chdir(REPO)  # the experiment's evaluation files are relative to the repository root


def test_one_seed_reproduces_and_two_seeds_differ_in_every_random_choice(at_repo, tmp_path):
    a, again, b = _written(tmp_path / "a", 1), _written(tmp_path / "again", 1), _written(tmp_path / "b", 2)
    assert a == again

    assert set(a["data"]) == {"train", "val"}
    for split in a["data"]:
        assert a["data"][split] != b["data"][split], f"generated {split} problems do not depend on the seed"
    for stage, config in a["configs"].items():
        seeds_a, seeds_b = _seeds(config), _seeds(b["configs"][stage])
        assert set(seeds_a) == set(seeds_b)
        assert {"seed_everything", "data.seed"} <= set(seeds_a), stage
        if stage.startswith("mixed/"):
            assert {"model.init_seed", "trainer.callbacks.0.init_args.seed"} <= set(seeds_a), stage
        assert all(v == 1 for v in seeds_a.values()), (stage, seeds_a)
        assert all(v == 2 for v in seeds_b.values()), (stage, seeds_b)


def test_a_stage_that_sets_its_own_seed_keeps_it(at_repo, tmp_path):
    w = _written(tmp_path, 3, "codebook.data.seed=11", "mixed.per_strategy.cot.data.seed=12")["configs"]
    assert (w["codebook"]["seed_everything"], w["codebook"]["data"]["seed"]) == (3, 11)
    assert w["mixed/cot"]["data"]["seed"] == 12 and w["mixed/latent_ar"]["data"]["seed"] == 3


def test_a_new_seed_reruns_the_stages_even_on_given_data_files(tmp_path, monkeypatch):
    """With data files given (nothing generated), the seed alone must still change the stages' inputs."""
    from lm_latent.config import load_experiment
    from lm_latent.data.generators import GENERATORS, write_json
    from lm_latent.pipeline import run as run_mod

    options, generate = GENERATORS["prontoqa"]
    write_json(generate(12, 0, options()), tmp_path / "train.json")
    launched = []

    def fake_fit(*args):  # stands in for `lm-latent codebook fit`: leaves the checkpoint it would
        launched.append(args[:2])
        config = Path(str(args[args.index("--config") + 1]))
        (config.parent / "checkpoints").mkdir(exist_ok=True)
        (config.parent / "checkpoints" / "last.ckpt").write_text(config.read_text())

    monkeypatch.setattr(run_mod, "_cli", fake_fit)
    tok = {"dir": "TOKENIZER", "digest": "-"}
    for seed in (0, 0, 1):
        cfg = load_experiment(EXPERIMENT, [f"seed={seed}", f"data.train_file={tmp_path / 'train.json'}", "data.generate=null"])
        p = run_mod.Pipeline(cfg, tmp_path / "run")
        p.codebook(p.data(), tok)
    assert launched == [("codebook", "fit"), ("codebook", "fit")]  # seed 0, skipped on rerun, seed 1
