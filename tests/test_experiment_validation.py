"""`lm-latent run` checks the whole experiment file before any stage: one `error: <key path>: ...`
line, exit status 2, nothing written to --out (lm_latent/pipeline/validate.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_experiment_files import (  # noqa: F401 (standins is a fixture)
    EXPERIMENTS, REPO, _clear_placeholder_env, _files, _id, standin_overrides, standins,
)

DEFAULT = EXPERIMENTS / "default.yaml"


@pytest.fixture
def at_repo(shared_data, monkeypatch):
    """Run from the repository root (the default's evaluation files are relative to it); a stage that
    starts anyway fails the test instead of training."""
    from lm_latent.pipeline import run as run_mod

    monkeypatch.chdir(REPO)

    def no_stage(*args, **kwargs):
        raise AssertionError("a stage started although the experiment file is invalid")

    monkeypatch.setattr(run_mod, "run_experiment", no_stage)
    monkeypatch.setattr(run_mod, "_cli", no_stage)


def _run(capsys, tmp_path: Path, experiment: Path, *overrides: str) -> tuple[int, str]:
    from lm_latent.pipeline.cli import main

    out = tmp_path / "out"
    status = main([str(experiment), "--out", str(out), *overrides])
    err = capsys.readouterr().err
    assert not out.exists(), "an invalid experiment wrote into --out"
    return status, err


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(text.replace("DEFAULT", str(DEFAULT)))
    return path


def test_a_misspelt_key_in_the_data_block(at_repo, capsys, tmp_path):
    status, err = _run(capsys, tmp_path, _write(tmp_path, "base: DEFAULT\ndata: {datset: prontoqa}\n"))
    assert status == 2
    assert _error_line(err).startswith("error: data.datset: unknown key (did you mean 'dataset'?)")


def test_a_file_without_a_data_block(at_repo, capsys, tmp_path):
    from omegaconf import OmegaConf

    text = OmegaConf.to_yaml(OmegaConf.load(DEFAULT))
    without = re.sub(r"^data:\n(  .*\n)+", "", text, flags=re.M)
    assert not re.search(r"^data:", without, flags=re.M) and "generate:" not in without
    status, err = _run(capsys, tmp_path, _write(tmp_path, without))
    assert (status, _error_line(err)) == (2, "error: data: missing (required)")


def test_a_misspelt_key_in_a_stage_block_stops_before_the_data_stage(at_repo, capsys, tmp_path):
    status, err = _run(capsys, tmp_path, DEFAULT, "codebook.model.codebok_size=32")
    assert status == 2
    assert _error_line(err).startswith("error: codebook.model.codebok_size: unknown key (did you mean 'codebook_size'?)")


@pytest.mark.parametrize("override, expected", [
    ("data.datset=prontoqa", "error: override 'data.datset=prontoqa': no key 'data.datset' in "),
    ("seed=-1", "error: seed: must be >= 0, got -1"),
    ("seed=true", "error: seed: expected an integer, got True"),
    ("data.generate.train=0", "error: data.generate.train: must be >= 1, got 0"),
    ("data.generate.options.hopz=3", "error: data.generate.options.hopz: unknown option of ProntoQAOptions (did you mean 'hops'?)"),
    ("tokenizer.kind=wrd", "error: tokenizer.kind: unknown value 'wrd' (did you mean 'word'?)"),
    ("mixed.strategies=[latent_ar,cott]", "error: mixed.strategies: item 1: unknown value 'cott' (did you mean 'cot'?)"),
    ("mixed.per_strategy.coot.data.seed=1", "error: mixed.per_strategy.coot: not one of mixed.strategies"),
    ("mixed.per_strategy.cot.data.max_lenght=3", "error: mixed.per_strategy.cot.data.max_lenght: unknown key (did you mean 'max_length'?)"),
    ("mixed.model.lr=fast", "error: mixed.model.lr: expected float, got fast"),
    ("codebook.model.chunk_size=8", "error: codebook.model.chunk_size: unknown key (it is set under codebook.data.chunk_size)"),
    ("codebook.data.context=neither", "error: codebook.data.context: expected ['chunk', 'previous_text'], got neither"),
    ("codebook.trainer.precision=31-true", "error: codebook.trainer.precision: invalid value 31-true"),
    ("codebook.data.train_file=x.json", "error: codebook.data.train_file: is set by the pipeline"),
    ("evaluation.during_fit.sets=[prontoqa_vlid]", "error: evaluation.during_fit.sets.0: 'prontoqa_vlid' (did you mean 'prontoqa_valid'?)"),
    ("evaluation.sets.prontoqa_valid.file=missing.json", "error: evaluation.sets.prontoqa_valid.file: file not found: missing.json"),
    ("evaluation.sets.x={task: prontoqa, file: '@dev'}", "error: evaluation.sets.x.file: '@dev' names no split the data stage makes"),
    ("evaluation.sets.x.file=@val", "error: override 'evaluation.sets.x.file=@val': not a YAML value"),
    ("evaluation.sets.prontoqa_valid.strategies=[latent_ar,cott]",
     "error: evaluation.sets.prontoqa_valid.strategies.1: 'cott' is not one of mixed.strategies"),
])
def test_bad_values_name_their_key(at_repo, capsys, tmp_path, override, expected):
    status, err = _run(capsys, tmp_path, DEFAULT, override)
    assert status == 2
    assert _error_line(err).startswith(expected), err


@pytest.mark.parametrize("override", ["tokenizer.kind=word", "data.generate.test=10", "evaluation.sets.prontoqa_valid.subset=5",
                                      "mixed.per_strategy.cot.data.seed=3", "codebook.trainer.callbacks=[]",
                                      "evaluation.sets.prontoqa_valid.strategies=[latent_ar]"])
def test_keys_the_schema_knows_may_be_added_by_override(at_repo, override):
    from lm_latent.config import load_experiment
    from lm_latent.pipeline.validate import validate_experiment

    validate_experiment(load_experiment(DEFAULT, [override]))


@pytest.mark.parametrize("path", _files("experiment"), ids=_id)
def test_every_shipped_experiment_file_validates(path, shared_data, standins, monkeypatch):  # noqa: F811
    """As written, with stand-ins only for what this machine lacks (model weights, MetaMathQA)."""
    from lm_latent.config import load_experiment
    from lm_latent.pipeline.validate import validate_experiment

    monkeypatch.chdir(REPO)
    _clear_placeholder_env(monkeypatch)
    validate_experiment(load_experiment(path, standin_overrides(load_experiment(path), standins)))


def test_replace_swaps_a_base_mapping_instead_of_merging_into_it(tmp_path):
    """`_replace: true` is how a child file drops keys of its base (a pretrained `lm` block in place
    of the default's architecture); without it the base's keys would stay and the merge is refused."""
    from lm_latent.config import load_experiment, to_plain

    child = _write(tmp_path, "base: DEFAULT\nmixed: {model: {lm: {_replace: true, pretrained: some/dir}, lr: 0.5}}\n")
    cfg = to_plain(load_experiment(child))
    assert cfg["mixed"]["model"]["lm"] == {"pretrained": "some/dir"}
    assert cfg["mixed"]["model"]["lr"] == 0.5
    assert cfg["mixed"]["model"]["new_token_init"] == to_plain(load_experiment(DEFAULT))["mixed"]["model"]["new_token_init"]
    merged = to_plain(load_experiment(_write(tmp_path, "base: DEFAULT\nmixed: {model: {lm: {pretrained: some/dir}}}\n")))
    assert merged["mixed"]["model"]["lm"]["pretrained"] == "some/dir" and "hidden_size" in merged["mixed"]["model"]["lm"]
    with pytest.raises(ValueError, match="mixed.model.lm._replace: only `true`"):
        load_experiment(_write(tmp_path, "base: DEFAULT\nmixed: {model: {lm: {_replace: false}}}\n"))
