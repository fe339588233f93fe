"""`lm-latent run`: one tiny experiment end to end, its artifacts, reruns, interruption, DDP, bad input.

The run itself (:mod:`pipeline_fixtures`) happens once per session; tests that change a run copy it.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

from lm_latent.config import load_experiment, to_plain
from pipeline_fixtures import (
    CODEBOOK_SIZE,
    EVAL_SETS,
    EXPERIMENT,
    REPO,
    SHARED_DATA,
    STAGES,
    STEPS_PER_EPOCH,
    STRATEGIES,
    TINY_OVERRIDES,
    TRAIN_EXAMPLES,
    TinyRun,
    child_env,
    copy_run,
    read_json,
    run_command,
    run_pipeline,
    stage_markers,
    tiny_run,  # noqa: F401 - the shared session fixture
)

RUN_FIELDS = {"accuracy": float, "mean_generated_tokens": float, "mean_latent_tokens": float, "n": int,
              "seconds_per_example": float}
MAX_NEW_TOKENS = 40  # TINY_OVERRIDES: evaluation.max_new_tokens


# ----------------------------------------------------------------------------------------- helpers

def _scalars_of(events: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar tag in one TensorBoard event file."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) of every scalar tag in every event file under ``logdir``, files in time order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(logdir.rglob("events.out.tfevents.*")):
        for tag, values in _scalars_of(events).items():
            out.setdefault(tag, []).extend(values)
    return out


def _step_of(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"])


def _stage_commands(log: str) -> list[str]:
    """The stage commands a pipeline run launched, as logged (`$ lm-latent ...`)."""
    return [line.split("$ lm-latent ", 1)[1] for line in log.splitlines() if "$ lm-latent " in line]


def _run_until(out: Path, extra: tuple[str, ...], experiment: Path, ready: Callable[[], bool], log: Path,
               limit_s: float = 600) -> None:
    """Start the tiny run into ``out`` in its own process group and SIGKILL the whole group (the
    pipeline and its stage command) as soon as ``ready()`` holds."""
    with open(log, "w") as f:
        proc = subprocess.Popen(run_command(out, *extra, experiment=experiment), cwd=REPO, env=child_env(), stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + limit_s
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"the run ended (exit {proc.returncode}) before the point to interrupt it:\n"
                            f"{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the point to interrupt the run was not reached:\n{log.read_text()[-4000:]}")
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ----------------------------------------------------------------------------------- the tiny run

def test_results_json_follows_the_schema(tiny_run: TinyRun):
    results = read_json(tiny_run.dir / "results.json")
    assert results["experiment"] == "default"
    cb = results["codebook"]
    greedy = ("greedy_exact_chunk_accuracy", "greedy_token_accuracy", "greedy_exact_chunk_accuracy_random_codes",
              "greedy_token_accuracy_random_codes")
    for key in ("token_accuracy", "usage", "perplexity", *greedy):
        assert isinstance(cb[key], float), key
    for key in ("token_accuracy", "token_accuracy_random_codes", "exact_chunk_accuracy", *greedy):
        assert 0.0 <= cb[key] <= 1.0, key
    assert 0.0 < cb["usage"] <= 1.0  # at least one code is used
    assert 1.0 <= cb["perplexity"] <= CODEBOOK_SIZE * (1 + 1e-6)
    # The codebook row is the stage's last held-out values as logged to TensorBoard.
    logged = _scalars(tiny_run.dir / "tensorboard" / "codebook")
    assert cb["usage"] == pytest.approx(logged["val/code_usage"][-1][1])
    assert cb["token_accuracy"] == pytest.approx(logged["val/token_acc"][-1][1])
    assert cb["greedy_exact_chunk_accuracy"] == pytest.approx(logged["val/greedy_exact"][-1][1])
    assert cb["greedy_token_accuracy_random_codes"] == pytest.approx(logged["val/greedy_token_acc_random"][-1][1])

    # How max_length (512 here) cut each fine-tune's training and validation data: not at all.
    assert results["truncated_examples"] == {s: {"train": 0, "val": 0} for s in STRATEGIES}
    assert set(results["runs"]) == set(STRATEGIES)
    for strategy in STRATEGIES:
        assert set(results["runs"][strategy]) == set(EVAL_SETS)
        for name, n in EVAL_SETS.items():
            row = results["runs"][strategy][name]
            for field, kind in RUN_FIELDS.items():
                assert type(row[field]) is kind, (strategy, name, field, row[field])
            assert row["n"] == n
            assert 0.0 <= row["accuracy"] <= 1.0
            assert 0.0 < row["mean_generated_tokens"] <= MAX_NEW_TOKENS
            assert 0.0 <= row["mean_latent_tokens"] <= row["mean_generated_tokens"]
            assert row["seconds_per_example"] > 0


def test_results_agree_with_the_per_example_files(tiny_run: TinyRun):
    results = read_json(tiny_run.dir / "results.json")
    for strategy in STRATEGIES:
        for name, n in EVAL_SETS.items():
            per_example = read_json(tiny_run.dir / "eval" / strategy / f"{name}.json")
            rows = per_example["results"]
            assert [r["index"] for r in rows] == list(range(n))  # every example once, in order
            assert per_example["stage"] == "test" and per_example["max_new_tokens"] == MAX_NEW_TOKENS
            summary = results["runs"][strategy][name]
            assert summary["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / n)
            assert summary["mean_generated_tokens"] == pytest.approx(sum(r["num_tokens"] for r in rows) / n)
            assert summary["mean_latent_tokens"] == pytest.approx(sum(r["num_latent"] for r in rows) / n)
            golds = [r["gold"] for r in rows]
            assert summary["constant_answer"] == pytest.approx(max(map(golds.count, golds)) / n)
            for r in rows:
                assert r["num_tokens"] == r["num_latent"] + r["num_delimiter"] + r["num_text"] <= MAX_NEW_TOKENS
                assert len(r["codes"]) == r["num_latent"]


def test_results_table_and_plot(tiny_run: TinyRun):
    results = read_json(tiny_run.dir / "results.json")
    table = (tiny_run.dir / "results.md").read_text()
    lines = table.splitlines()
    runs_table = lines[lines.index("| strategy | task | accuracy | mean generated tokens | mean latent tokens | n | s / example |"):]
    rows = [line for line in runs_table[2:] if line.startswith("| ")]
    assert len(rows) == len(STRATEGIES) * len(EVAL_SETS)
    for strategy in STRATEGIES:
        for name in EVAL_SETS:
            r = results["runs"][strategy][name]
            expected = f"| {strategy} | {name} | {r['accuracy']:.1%} | {r['mean_generated_tokens']:.1f} | "
            assert sum(line.startswith(expected) for line in rows) == 1, expected
    assert f"usage {results['codebook']['usage']:.1%} of K" in table
    cb = results["codebook"]
    assert (f"| token accuracy | {cb['token_accuracy']:.1%} | {cb['token_accuracy_random_codes']:.1%} | "
            f"{cb['greedy_token_accuracy']:.1%} | {cb['greedy_token_accuracy_random_codes']:.1%} |") in lines
    assert table in tiny_run.log  # the command prints the table

    import matplotlib.image

    image = matplotlib.image.imread(tiny_run.dir / "accuracy_vs_tokens.png")
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 * len(EVAL_SETS)


def test_one_tensorboard_directory_with_every_stage(tiny_run: TinyRun):
    tb = tiny_run.dir / "tensorboard"
    expected = {"codebook", *(f"{kind}_{s}" for s in STRATEGIES for kind in ("mixed", "eval"))}
    assert {p.name for p in tb.iterdir() if p.is_dir()} == expected
    assert read_json(tiny_run.dir / "results.json")["tensorboard"] == str(tb)
    codebook = _scalars(tb / "codebook")
    assert {"train/loss_step", "val/token_acc", "val/code_usage", "val/code_perplexity"} <= set(codebook)
    results = read_json(tiny_run.dir / "results.json")
    for strategy in STRATEGIES:
        train = _scalars(tb / f"mixed_{strategy}")
        assert [step for step, _ in train["train/loss"]] == list(range(STEPS_PER_EPOCH))  # logged every step
        assert all(math.isfinite(v) for _, v in train["train/loss"])
        test = _scalars(tb / f"eval_{strategy}")
        for name in EVAL_SETS:
            assert test[f"test/{name}/accuracy"][-1][1] == pytest.approx(results["runs"][strategy][name]["accuracy"])


def test_resolved_configs_are_saved(tiny_run: TinyRun):
    saved = yaml.safe_load((tiny_run.dir / "config.yaml").read_text())
    assert saved == to_plain(load_experiment(tiny_run.experiment, list(TINY_OVERRIDES)))
    assert saved["mixed"]["strategies"] == list(STRATEGIES) and saved["mixed"]["model"]["lm"]["hidden_size"] == 64

    data = read_json(tiny_run.dir / "data" / "stage.json")["outputs"]
    from lm_latent.codebook.codes_file import load_codes

    for split in ("train", "val"):  # each codes file records the split and the data it was encoded from
        table = load_codes(tiny_run.dir / "codes" / f"{split}.json")
        assert (table.split, table.data_sha256, table.data_file) == (split, data["digests"][split], data["files"][split])
    codebook = yaml.safe_load((tiny_run.dir / "codebook" / "config.yaml").read_text())
    assert codebook["trainer"]["max_steps"] == 20
    assert codebook["checkpoint"]["every_n_train_steps"] == 10
    assert codebook["data"]["train_file"] == data["files"]["train"]
    for strategy in STRATEGIES:
        mixed = yaml.safe_load((tiny_run.dir / "mixed" / strategy / "config.yaml").read_text())
        assert mixed["data"]["strategy"] == strategy
        assert mixed["model"]["lm"]["num_hidden_layers"] == 2 and mixed["trainer"]["max_epochs"] == 1
        assert mixed["data"]["codes_file"] == str(tiny_run.dir / "codes" / "train.json")
        report = read_json(tiny_run.dir / "mixed" / strategy / "stage.json")["outputs"]["data_report"]
        assert report["max_length"] == 512 and report["truncation"]["train"]["examples"] == TRAIN_EXAMPLES
        assert report["truncation"]["train"]["truncated"] == 0 and report["truncation"]["train"]["longest"] <= 512
        # One epoch over 200 examples at a global batch of 32.
        assert _step_of(tiny_run.dir / "mixed" / strategy / "checkpoints" / "last.ckpt") == STEPS_PER_EPOCH
        evaluation = yaml.safe_load((tiny_run.dir / "eval" / strategy / "config.yaml").read_text())
        callbacks = {c["init_args"]["name"]: c["init_args"] for c in evaluation["trainer"]["callbacks"]}
        assert {name: c["subset"] for name, c in callbacks.items()} == EVAL_SETS
        for name, c in callbacks.items():
            assert c["results_file"] == str(tiny_run.dir / "eval" / strategy / f"{name}.json")
            assert c["max_new_tokens"] == MAX_NEW_TOKENS
            # The text-only baselines never decode the latent rows they share but do not train.
            assert c.get("force_latent") == (0 if strategy in ("cot", "sol_only") else None)
    assert set(stage_markers(tiny_run.dir)) == set(STAGES)


# -------------------------------------------------------------------------------------- reruns

def test_rerun_skips_every_stage(tiny_run: TinyRun, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    before = stage_markers(run)
    res = run_pipeline(run, experiment=tiny_run.experiment)
    assert res.returncode == 0, res.stdout[-4000:]
    assert _stage_commands(res.stdout) == []  # no stage command was launched
    assert stage_markers(run) == before  # markers neither rewritten nor touched
    assert read_json(run / "results.json")["runs"] == read_json(tiny_run.dir / "results.json")["runs"]
    assert (tiny_run.dir / "results.md").read_text() in res.stdout


def test_force_redoes_finished_stages(tiny_run: TinyRun, tmp_path):
    """`--force` redoes from the first stage on; generation and tokenizer training are deterministic,
    so the redone stages produce the same files. Stopped once the codebook fit has started again."""
    run = copy_run(tiny_run, tmp_path / "run")
    before = stage_markers(run)
    started = run / "codebook" / "started.json"
    old_started = started.stat().st_mtime_ns
    _run_until(run, ("--force",), tiny_run.experiment, lambda: started.is_file() and started.stat().st_mtime_ns != old_started,
               tmp_path / "force.log")
    after = stage_markers(run)
    for stage, same in (("data", "digests"), ("tokenizer", "digest")):
        assert after[stage][0] != before[stage][0], f"{stage} was not redone"
        redone, original = (json.loads(m[1])["outputs"] for m in (after[stage], before[stage]))
        assert redone[same] == original[same]  # same bytes, now written in this folder
        assert str(run) in json.dumps(redone) and str(tiny_run.dir) not in json.dumps(redone)
    assert "codebook" not in after  # its marker is dropped while it is redone
    assert not (run / "codebook" / "checkpoints" / "last.ckpt").exists() or \
        (run / "codebook" / "checkpoints" / "last.ckpt").stat().st_mtime_ns > old_started  # no resume from the old fit


def test_a_set_for_latent_ar_alone_reruns_its_evaluation_only(tiny_run: TinyRun, tmp_path):
    """An m-forced set restricted to latent_ar (`strategies`, `callback_args: {force_latent: 1}`)
    reruns latent_ar's evaluation only, writes exactly one code per problem there, and the
    code-prediction probe compares those codes with the codebook's."""
    run = copy_run(tiny_run, tmp_path / "run")
    before = stage_markers(run)
    forced = "evaluation.sets.forced_m1={task: prontoqa, dataset: prontoqa, file: '@test', subset: 8, " \
             "strategies: [latent_ar], callback_args: {force_latent: 1}}"
    res = run_pipeline(run, forced, experiment=tiny_run.experiment)
    assert res.returncode == 0, res.stdout[-4000:]
    after = stage_markers(run)
    assert {s for s in STAGES if after[s] != before[s]} == {"eval/latent_ar"}
    results = read_json(run / "results.json")["runs"]
    assert "forced_m1" in results["latent_ar"] and "forced_m1" not in results["cot"]
    rows = read_json(run / "eval" / "latent_ar" / "forced_m1.json")
    assert rows["force_latent"] == 1 and [len(r["codes"]) for r in rows["results"]] == [1] * 8

    probe = subprocess.run([sys.executable, str(REPO / "experiments" / "probes" / "code_prediction.py"), str(run)],
                           cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    gold = read_json(run / "probes" / "test_codes.json")["codes"]
    right = sum(r["codes"][0] == gold[r["id"]][0] for r in rows["results"])
    assert f"forced_m1: m=1, 8 problems; code right at position 1..m: {100 * right / 8:.1f}%" in probe.stdout


def test_a_renamed_prosqa_set_is_read_and_scored_renamed(tiny_run: TinyRun, tmp_path):
    """An evaluation set read as ``prosqa_queried_tom`` (the official ProsQA file, queried person
    renamed "Tom") goes through the pipeline like any other: scored with the ProsQA checker, written
    under its own name, its problems and gold answers renamed."""
    run = copy_run(tiny_run, tmp_path / "run")
    before = stage_markers(run)
    extra = f"evaluation.sets.prosqa_tom={{task: prosqa, dataset: prosqa_queried_tom, " \
            f"file: '{SHARED_DATA / 'prosqa' / 'valid.json'}', subset: 6, strategies: [cot]}}"
    res = run_pipeline(run, extra, experiment=tiny_run.experiment)
    assert res.returncode == 0, res.stdout[-4000:]
    after = stage_markers(run)
    assert {s for s in STAGES if after[s] != before[s]} == {"eval/cot"}
    assert read_json(run / "results.json")["runs"]["cot"]["prosqa_tom"]["n"] == 6
    rows = read_json(run / "eval" / "cot" / "prosqa_tom.json")
    assert rows["dataset"] == "prosqa_queried_tom" and rows["task"] == "prosqa"
    assert all(re.search(r"Is Tom a \w+ or \w+\?$", r["question"]) and r["gold"].startswith("Tom is a ")
               for r in rows["results"])


def test_changed_evaluation_reruns_only_the_evaluation(tiny_run: TinyRun, tmp_path):
    run = copy_run(tiny_run, tmp_path / "run")
    before = stage_markers(run)
    res = run_pipeline(run, "evaluation.max_new_tokens=24", experiment=tiny_run.experiment)
    assert res.returncode == 0, res.stdout[-4000:]
    after = stage_markers(run)
    redone = {s for s in STAGES if after[s] != before[s]}
    assert redone == {f"eval/{s}" for s in STRATEGIES}
    # The strategies' stages run side by side (mixed.parallel), so their commands come in either order.
    assert sorted(_stage_commands(res.stdout)) == sorted(
        f"mixed test --config {run}/eval/{s}/config.yaml --ckpt_path {tiny_run.dir}/mixed/{s}/checkpoints/last.ckpt"
        for s in STRATEGIES
    )
    results = read_json(run / "results.json")
    for strategy in STRATEGIES:
        for name in EVAL_SETS:
            assert results["runs"][strategy][name]["mean_generated_tokens"] <= 24
            assert read_json(run / "eval" / strategy / f"{name}.json")["max_new_tokens"] == 24


# Acceptance of the main job: a killed run resumes (~20-40 s on two quiet cores, in the default run).
def test_kill_during_mixed_fit_then_resume(tiny_run: TinyRun, tmp_path):
    """Kill the run inside a mixed fine-tune after its first checkpoint; the same command then
    finishes, keeps every finished stage and continues the interrupted fit from its checkpoint.
    The changed override concerns `latent_ar` only, so nothing upstream and nothing of `cot` reruns."""
    epochs = 4
    extra = (f"mixed.per_strategy.latent_ar.trainer.max_epochs={epochs}",)
    run = copy_run(tiny_run, tmp_path / "run")
    before = stage_markers(run)
    stage_dir = run / "mixed" / "latent_ar"
    started, last = stage_dir / "started.json", stage_dir / "checkpoints" / "last.ckpt"
    old_started = started.read_text()

    def first_checkpoint_written() -> bool:
        if not started.is_file() or started.read_text() == old_started or not last.is_file():
            return False
        try:
            _step_of(last)  # complete and loadable
        except Exception:  # noqa: BLE001 - being written
            return False
        return True

    _run_until(run, extra, tiny_run.experiment, first_checkpoint_written, tmp_path / "killed.log")
    killed_step = _step_of(last)
    assert 0 < killed_step < epochs * STEPS_PER_EPOCH
    assert not (stage_dir / "stage.json").exists()
    tb = run / "tensorboard" / "mixed_latent_ar"
    killed_events = set(tb.glob("events.out.tfevents.*"))
    assert min(step for step, _ in _scalars(tb)["train/loss"]) == 0  # the killed attempt began afresh

    res = run_pipeline(run, *extra, experiment=tiny_run.experiment)
    assert res.returncode == 0, res.stdout[-4000:]
    after = stage_markers(run)
    unchanged = ("data", "tokenizer", "codebook", "codes", "mixed/cot", "eval/cot")
    assert {s: after[s] for s in unchanged} == {s: before[s] for s in unchanged}
    assert _stage_commands(res.stdout)[0] == f"mixed fit --config {stage_dir}/config.yaml --ckpt_path last"
    assert "Restoring states from the checkpoint path" in res.stdout
    assert _step_of(last) == epochs * STEPS_PER_EPOCH
    # The resumed process logged only steps after the checkpoint: it did not start over.
    resumed_events = set(tb.glob("events.out.tfevents.*")) - killed_events
    assert len(resumed_events) == 1
    resumed_steps = [step for step, _ in _scalars_of(resumed_events.pop())["train/loss"]]
    assert resumed_steps and min(resumed_steps) >= killed_step
    results = read_json(run / "results.json")
    assert results["runs"]["cot"] == read_json(tiny_run.dir / "results.json")["runs"]["cot"]
    assert set(results["runs"]["latent_ar"]) == set(EVAL_SETS)


# -------------------------------------------------------------------------------------------- DDP

# Two processes per Lightning stage (~55 s on two quiet cores; in the default run: it is an acceptance point).
def test_two_cpu_processes_under_ddp(tmp_path):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"staged data not found at {SHARED_DATA}: the default experiment evaluates on it")
    run = tmp_path / "run"
    ddp = ("codebook.trainer.devices=2", "codebook.trainer.strategy=ddp",
           "mixed.trainer.devices=2", "mixed.trainer.strategy=ddp")
    res = run_pipeline(run, *ddp)
    assert res.returncode == 0, res.stdout[-6000:]
    # Every Lightning stage (codebook fit, a fit and a test per strategy) ran on two ranks.
    assert res.stdout.count("MEMBER: 2/2") == 1 + 2 * len(STRATEGIES)
    results = read_json(run / "results.json")
    for strategy in STRATEGIES:
        for name, n in EVAL_SETS.items():
            row = results["runs"][strategy][name]
            assert row["n"] == n and 0.0 <= row["accuracy"] <= 1.0  # padded duplicates not counted
            assert [r["index"] for r in read_json(run / "eval" / strategy / f"{name}.json")["results"]] == list(range(n))
        # The global batch is the configured one on any number of processes: same optimizer steps.
        assert _step_of(run / "mixed" / strategy / "checkpoints" / "last.ckpt") == STEPS_PER_EPOCH
    assert 0.0 < results["codebook"]["usage"] <= 1.0


# -------------------------------------------------------------------------------------- bad input

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lm_latent.cli", "run", *args], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.devices=2", "no key 'trainer.devices'"),  # the stage blocks live under codebook/mixed
        ("evaluation.max_new_token=3", "no key 'evaluation.max_new_token'"),
        ("mixed.trainer.max_epochs", "is not of the form key.sub=value"),
    ],
)
def test_bad_override_exits_2_with_a_clear_message(tmp_path, override, message):
    res = _cli(str(EXPERIMENT), "--out", str(tmp_path / "run"), override)
    assert res.returncode == 2
    assert message in res.stderr and res.stderr.startswith("error: ")
    assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "run").exists()  # nothing started


def test_missing_experiment_file_exits_2(tmp_path):
    res = _cli(str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run"))
    assert res.returncode == 2
    assert f"experiment file not found: {tmp_path / 'nope.yaml'}" in res.stderr
    assert "Traceback" not in res.stderr + res.stdout


def test_failing_stage_command_exits_with_its_status_and_no_traceback(tiny_run: TinyRun, tmp_path):
    """Input that only the stage can judge (a max_length that would cut training answers; a misspelt
    key never gets this far, see test_experiment_validation): the stage command's own error, then
    which stage stopped."""
    run = copy_run(tiny_run, tmp_path / "run")
    res = run_pipeline(run, "mixed.data.max_length=24", "mixed.parallel=1", experiment=tiny_run.experiment)
    assert res.returncode == 2
    assert "longer than data.max_length=24" in res.stdout and "data.allow_answer_truncation" in res.stdout
    assert f"error: stage command failed with exit status 2: lm-latent mixed fit --config {run}/mixed/latent_ar/config.yaml" in res.stdout
    assert "Traceback" not in res.stdout


def test_a_fresh_run_with_the_same_seed_reproduces_every_number(tiny_run: TinyRun, tmp_path):
    """Same machine, same experiment and seed, a new run folder: every accuracy, token count, codebook
    figure and generated text is identical (only wall-clock timings differ). This is what the README's
    reproducibility statement promises; the tiny run trains two strategies side by side (one thread
    each), so the side-by-side path is covered too."""
    res = run_pipeline(tmp_path / "again", experiment=tiny_run.experiment)
    assert res.returncode == 0, res.stdout[-4000:]
    timing = ("seconds_per_example",)

    def numbers(run_dir: Path) -> dict:
        results = read_json(run_dir / "results.json")
        runs = {s: {n: {k: v for k, v in row.items() if k not in timing} for n, row in sets.items()}
                for s, sets in results["runs"].items()}
        texts = {(s, n): [{k: v for k, v in r.items() if "second" not in k}
                          for r in read_json(run_dir / "eval" / s / f"{n}.json")["results"]]
                 for s in STRATEGIES for n in EVAL_SETS}
        return {"codebook": results["codebook"], "runs": runs, "texts": texts}

    assert numbers(tmp_path / "again") == numbers(tiny_run.dir)


def test_the_default_run_exports_a_plain_hf_model(tiny_run: TinyRun, tmp_path):
    """The default experiment's word tokenizer and latent vocabulary survive `lm-latent mixed export`:
    plain transformers reloads the fine-tuned latent_ar model, its tokenizer reads a generated problem
    back losslessly, and greedy decoding gives the module's tokens."""
    from lm_latent.data.tokenization import prompt_text
    from lm_latent.finetune.export import load_exported
    from lm_latent.finetune.module import MixedTokenLM

    ckpt = tiny_run.dir / "mixed" / "latent_ar" / "checkpoints" / "last.ckpt"
    out = tmp_path / "hf"
    res = subprocess.run([sys.executable, "-m", "lm_latent.cli", "mixed", "export", "--checkpoint", str(ckpt),
                          "--out", str(out)], capture_output=True, text=True, cwd=REPO, env=child_env())
    assert res.returncode == 0, res.stderr[-3000:]
    model, tok, vocab = load_exported(out)
    problems = read_json(tiny_run.dir / "data" / "test.json")[:3]
    prompts = [prompt_text(p["question"]) for p in problems]
    for p in prompts:
        assert tok.decode(tok(p, add_special_tokens=False)["input_ids"]) == p  # word tokens, lossless
    module = MixedTokenLM.load_from_checkpoint(str(ckpt), map_location="cpu")
    ours = [g.token_ids for g in module.generate(prompts[:1], max_new_tokens=12)]
    enc = tok(prompts[:1], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        theirs = model.eval().generate(**enc, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
    assert theirs[0, enc["input_ids"].shape[1]:].tolist()[: len(ours[0])] == ours[0]
    assert vocab.num_codes == CODEBOOK_SIZE
