"""accuracy_vs_tokens.png: a fixed 0-100% accuracy axis, each set's chance level and constant-answer
score, error bars over seeds; drawn by `lm-latent run` (one run) and `lm-latent summarize --plot`
(several seeds)."""

from __future__ import annotations

import json

import pytest

from test_summarize import write_run


def test_chance_levels_are_one_table_over_every_task():
    from lm_latent.evaluation import TASKS
    from lm_latent.evaluation.chance import CHANCE, chance_level

    assert set(CHANCE) == set(TASKS)  # a new task must say what guessing scores
    assert (chance_level("prontoqa"), chance_level("prosqa")) == (0.5, 0.5)
    assert chance_level("gsm8k") == chance_level("math500") == chance_level("theoremqa") == 0.0  # datasets too
    assert chance_level("no_such_task") is None and chance_level(None) is None


ROWS = {  # one generation per task, as the evaluation stage records it
    "prontoqa": {"question": "Wumpuses are happy. Alex is a wumpus. True or false: Alex is happy.", "gold": "True",
                 "text": "Alex is a wumpus. Wumpuses are happy.\nAlex is happy.\n### True"},
    "prosqa": {"question": "Every terpus is a lempus. Tom is a terpus. Is Tom a lempus or scrompus?", "gold": "Tom is a lempus.",
               "text": "Tom is a terpus.\nEvery terpus is a lempus.\n### Tom is a lempus."},
}


def _with_eval_files(d, task: str):
    """Per-example files as the evaluation stage writes them (runs whose rows predate `task`)."""
    for strategy in ("latent_ar", "cot"):
        (d / "eval" / strategy).mkdir(parents=True)
        (d / "eval" / strategy / "valid.json").write_text(json.dumps({"task": task, "results": [ROWS[task]]}))
    return d


def test_summary_points_are_means_with_std_error_bars_and_the_chance_level(tmp_path):
    from lm_latent.pipeline.seeds import load_runs, summarize, summary_panels

    dirs = [_with_eval_files(write_run(tmp_path / f"s{s}", s, acc, tok), "prosqa")
            for s, acc, tok in [(0, 0.5, 10.0), (1, 0.6, 14.0), (2, 0.7, 12.0)]]
    panels, chance, constant, note = summary_panels(summarize(load_runs(dirs)))
    assert chance == {"valid": 0.5} and constant == {"valid": 1.0}  # one example: its answer is the constant
    latent = next(p for p in panels["valid"] if p.strategy == "latent_ar")
    assert (latent.accuracy, latent.tokens) == (pytest.approx(0.6), pytest.approx(12.0))
    assert (latent.accuracy_err, latent.tokens_err) == (pytest.approx(0.1), pytest.approx(2.0))  # sample std
    assert "error bars: one sample standard deviation" in note


def test_one_run_has_no_error_bars_and_its_rows_name_the_task(tmp_path):
    from lm_latent.pipeline.report import plot, run_panels

    results = json.loads((write_run(tmp_path / "r", 0, 0.49, 20.0) / "results.json").read_text())
    for sets in results["runs"].values():
        sets["valid"]["task"] = "gsm8k"
    panels, chance, constant, _ = run_panels(results)
    assert chance == {"valid": 0.0} and constant == {"valid": None}  # no row or file says it
    assert all(p.accuracy_err == p.tokens_err == 0.0 for p in panels["valid"])
    plot(results, tmp_path / "accuracy_vs_tokens.png")
    assert [p.name for p in tmp_path.glob("*.png")] == ["accuracy_vs_tokens.png"]


def test_the_figure_has_a_fixed_axis_the_chance_line_and_error_bars():
    from matplotlib.container import ErrorbarContainer

    from lm_latent.pipeline.plot import Point, figure

    panels = {"valid": [Point("latent_ar", 24.0, 0.49, 2.0, 0.01), Point("cot", 61.0, 0.545, 2.5, 0.015)],
              "other": [Point("cot", 5.0, 0.481)]}
    fig = figure(panels, {"valid": 0.5, "other": None})
    valid, other = fig.axes
    # Autoscaling put 48-50.4% over the whole height; the axis is 0-100% whatever the points.
    assert valid.get_ylim() == other.get_ylim() == (0.0, 100.0)
    chance_lines = [line for line in valid.get_lines() if line.get_label().startswith("chance")]
    assert [(line.get_label(), list(line.get_ydata())) for line in chance_lines] == [("chance (50%)", [50.0, 50.0])]
    assert not [line for line in other.get_lines() if line.get_label().startswith("chance")]
    bars = [c for c in valid.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and not [c for c in other.containers if isinstance(c, ErrorbarContainer)]


def test_summarize_draws_the_plot(tmp_path, capsys):
    import matplotlib.image

    from lm_latent.cli import main

    dirs = [str(_with_eval_files(write_run(tmp_path / f"s{s}", s, 0.5 + s / 10, 10.0), "prontoqa")) for s in range(2)]
    assert main(["summarize", *dirs, "--plot", str(tmp_path / "accuracy_vs_tokens.png")]) == 0
    image = matplotlib.image.imread(tmp_path / "accuracy_vs_tokens.png")
    assert image.ndim == 3 and image.shape[0] > 100


def test_a_constant_answer_is_the_share_of_the_most_common_gold():
    from lm_latent.evaluation.chance import constant_answer_rate

    assert constant_answer_rate(["False", "True", "False ", "False"]) == 0.75  # compared stripped
    assert constant_answer_rate(["7", "12", "3"]) == pytest.approx(1 / 3)
    assert constant_answer_rate([]) is None


def test_a_constant_prosqa_answer_is_always_the_same_option(shared_data):
    """ProsQA's answers name the person, so as text they are all different; a constant policy picks
    the first (or the second) option of "Is Tom a A or B?", and the floor counts that."""
    from lm_latent.data.readers import read_examples
    from lm_latent.evaluation.chance import constant_answer_rate

    questions = ["Tom is a b. Is Tom a b or c?", "Ann is a c. Is Ann a b or c?", "Bo is a d. Is Bo a d or e?"]
    assert constant_answer_rate(["Tom is a b.", "Ann is a c.", "Bo is a d."], questions) == pytest.approx(2 / 3)
    assert constant_answer_rate(["Tom is a b.", "Ann is a c.", "Bo is a d."]) == pytest.approx(1 / 3)
    # Questions without two options keep the plain count (ProntoQA's True/False).
    assert constant_answer_rate(["True", "False", "True"], ["True or false: x.", "True or false: y.", "?"]) == \
        pytest.approx(2 / 3)
    official = read_examples("prosqa", shared_data / "prosqa" / "valid.json")
    golds, questions = [e.answer for e in official], [e.question for e in official]
    assert constant_answer_rate(golds, questions) == pytest.approx(156 / 300)  # the second option on 156 of 300
    with pytest.raises(ValueError):
        constant_answer_rate(golds, questions[:-1])


def test_rows_or_per_example_files_give_the_constant_answer(tmp_path):
    from lm_latent.pipeline.report import set_constant_answers

    d = _with_eval_files(tmp_path / "r", "prontoqa")
    golds = ["False"] * 111 + ["True"] * 89  # the official ProntoQA valid file's split
    (d / "eval" / "cot" / "valid.json").write_text(json.dumps({"task": "prontoqa", "results": [{"gold": g} for g in golds]}))
    runs = {"cot": {"valid": {"task": "prontoqa"}, "test": {"task": "prontoqa", "constant_answer": 0.504}}}
    assert set_constant_answers(runs, d) == {"valid": pytest.approx(0.555), "test": 0.504}
    assert set_constant_answers(runs) == {"valid": None, "test": 0.504}


def test_the_constant_answer_is_drawn_only_above_chance():
    from lm_latent.pipeline.plot import Point, figure

    panels = {"prontoqa": [Point("cot", 30.0, 0.54)], "prosqa": [Point("cot", 20.0, 0.5)], "gsm8k": [Point("cot", 90.0, 0.2)]}
    fig = figure(panels, {"prontoqa": 0.5, "prosqa": 0.5, "gsm8k": 0.0},
                 constant={"prontoqa": 0.555, "prosqa": 0.01, "gsm8k": 0.02})
    labels = [[line.get_label() for line in ax.get_lines() if line.get_linestyle() in ("--", ":")] for ax in fig.axes]
    assert labels == [["chance (50%)", "constant answer (55.5%)"], ["chance (50%)"], ["chance (0%)", "constant answer (2.0%)"]]
    dotted = next(line for line in fig.axes[0].get_lines() if line.get_linestyle() == ":")
    assert list(dotted.get_ydata()) == pytest.approx([55.5, 55.5])
