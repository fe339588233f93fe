"""Keys-Finding Maze: the generator, A* against breadth-first search, the plan checker, the symbolic
tokenizer and the 1-Feasible-k evaluation."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch

from lm_latent.data.example import Example
from lm_latent.data.generators import GENERATORS, MazeOptions
from lm_latent.data.generators.maze import generate, generate_counted, split_of
from lm_latent.data.maze import Maze, astar, check_plan, parse_plan, parse_prompt, plan_text, shortest_plan_length
from lm_latent.data.maze.layout import draw_maze
from lm_latent.data.maze.world import PromptError
from lm_latent.evaluation import is_correct

# A hand-made maze (row 0 on top): the way from S to E goes through the red door R, whose key r lies
# in the other corner. Optimal: down to the key, back up through the door, 8 moves.
#   S.#.E
#   ..R..
#   r.#..
HAND = Maze(5, 3, frozenset({(2, 0), (2, 2)}), {(2, 1): 0}, {(0, 2): 0}, (0, 0), (4, 0))
HAND_OPTIMAL = [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (2, 1), (3, 1), (4, 1), (4, 0)]


@pytest.fixture(scope="module")
def train_records() -> list[dict]:
    return generate(120, seed=0)


# ------------------------------------------------------------------------------------- the world


def test_hand_maze_prompt_round_trips_and_draws():
    prompt = HAND.prompt()
    assert prompt == "size 5 3 start 0 0 goal 4 0 wall 2 0 wall 2 2 key red 0 2 door red 2 1"
    assert parse_prompt(prompt) == HAND
    assert HAND.draw(HAND_OPTIMAL) == "S.#.E\n++R++\nr+#.."
    for bad in ("", "size 5 3 start 0 0", "size 5 3 start 0 0 goal 9 0", "size 5 3 start 0 0 goal 1 x",
                "size 5 3 start 0 0 goal 1 0 key pink 1 1", "size 5 3 start 0 0 goal 1 0 tree 1 1"):
        with pytest.raises(PromptError):
            parse_prompt(bad)


def test_astar_on_the_hand_maze_fetches_the_key_and_writes_its_trace():
    result = astar(HAND)
    assert result.plan_length == 8 == shortest_plan_length(HAND)
    assert check_plan(HAND, result.plan, 8).optimal
    assert shortest_plan_length(HAND, use_doors=False) is None  # the key is needed
    lines = [e.text() for e in result.trace]
    assert lines[:2] == ["create 0 0 none c0 c4", "close 0 0 none c0 c4"]
    assert "pickup 0 2 red c2 c6" in lines
    assert any(line.startswith("open 2 1 red ") for line in lines)
    assert lines[-1] == "close 4 0 red c8 c0"
    assert all(len(line.split()) == 6 for line in lines)  # verb x y KEYS cG cH


@pytest.mark.parametrize("seed", range(6))
def test_astar_plan_length_equals_breadth_first_search_over_position_and_keys(seed):
    rng = random.Random(seed)
    solved = 0
    for _ in range(60):
        side = rng.randint(5, 7)
        maze = draw_maze(rng, side, side, rooms=4, colours=rng.randint(1, 2), wall_density=0.25)
        if maze is None:
            continue
        result = astar(maze)
        assert result.plan_length == shortest_plan_length(maze)
        if result.plan is not None:
            solved += 1
            assert check_plan(maze, result.plan, result.plan_length).optimal
            closed = [e for e in result.trace if e.verb == "close"]
            assert len(set((e.cell, e.held) for e in closed)) == len(closed)  # no state closed twice
    assert solved > 5


# ------------------------------------------------------------------------------------- the checker


def test_checker_accepts_optimal_and_longer_plans_and_says_which():
    assert check_plan(HAND, plan_text(HAND_OPTIMAL), 8) == check_plan(HAND, HAND_OPTIMAL, 8)
    verdict = check_plan(HAND, plan_text(HAND_OPTIMAL), 8)
    assert verdict.feasible and verdict.optimal and verdict.moves == 8 and verdict.reason == ""
    detour = HAND_OPTIMAL[:2] + [(1, 1), (0, 1)] + HAND_OPTIMAL[2:]
    verdict = check_plan(HAND, detour, 8)
    assert verdict.feasible and not verdict.optimal and verdict.moves == 10


@pytest.mark.parametrize(
    "cells, reason",
    [
        ([(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)], "into a wall"),
        ([(0, 0), (1, 0), (1, 1), (2, 1), (3, 1), (3, 0), (4, 0)], "through a door without its key"),
        (HAND_OPTIMAL[:-2] + [(4, 1), (5, 1), (5, 0), (4, 0)], "off the grid"),
        (HAND_OPTIMAL[:-1], "not at the goal"),
        (HAND_OPTIMAL[1:], "not at the start"),
        ([(0, 0), (0, 2)] + HAND_OPTIMAL[3:], "not to a neighbouring cell"),
    ],
)
def test_checker_rejects_illegal_plans(cells, reason):
    verdict = check_plan(HAND, plan_text(cells), 8)
    assert not verdict.feasible and not verdict.optimal
    assert reason in verdict.reason


@pytest.mark.parametrize("text", [None, "", "plan", "plan 0", "plan 0 0 1", "plan a b", "plan -1 0",
                                  "route 0 0 0 1", "plan 0 0 <latent_3> 1", "plan 0 0 0 1 0 2 9999999999 0"])
def test_malformed_plans_are_infeasible_not_errors(text):
    verdict = check_plan(HAND, text, 8)
    assert not verdict.feasible and not verdict.optimal


def test_is_correct_for_mazes_checks_feasibility_against_the_question():
    question, gold = HAND.prompt(), plan_text(HAND_OPTIMAL)
    detour = HAND_OPTIMAL[:2] + [(1, 1), (0, 1)] + HAND_OPTIMAL[2:]
    assert is_correct("maze", "create 0 0 none c0 c4\n### " + gold, gold, question=question)
    assert is_correct("maze", "### " + plan_text(detour), gold, question=question)  # feasible is right
    assert not is_correct("maze", "### " + plan_text(HAND_OPTIMAL[:-1]), gold, question=question)
    assert not is_correct("maze", gold, gold, question=question)  # no answer marker: no answer
    assert not is_correct("maze", "### plan 0 0 <latent_4> 0 1", gold, question=question)
    assert not is_correct("maze", "### " + gold, gold, question="size 5 3 garbage")
    with pytest.raises(ValueError, match="question"):
        is_correct("maze", "### " + gold, gold)


# ------------------------------------------------------------------------------------- the generator


def test_generator_is_deterministic_and_registered():
    assert GENERATORS["maze"] == (MazeOptions, generate)
    assert generate(20, seed=3) == generate(20, seed=3)
    assert generate(20, seed=3) != generate(20, seed=4)


def test_every_generated_maze_follows_the_rules(train_records):
    opts = MazeOptions()
    assert len(train_records) == 120
    for r in train_records:
        maze = parse_prompt(r["question"])
        assert opts.min_size <= maze.width == maze.height <= opts.max_size
        assert maze.draw() == r["grid"]
        optimal = shortest_plan_length(maze)
        assert r["optimal_moves"] == optimal >= maze.width  # plan at least as long as the grid side
        assert check_plan(maze, r["answer"], optimal).optimal
        assert shortest_plan_length(maze, use_doors=False) is None  # needs a key
        assert 2 <= len(r["steps"]) <= opts.max_trace_events
        assert r["steps"] == [e.text() for e in astar(maze).trace]
        assert maze.layout_hash() == r["layout_hash"] and split_of(r["layout_hash"], opts.held_out) == "train"
        costs = [int(w[1:]) for step in r["steps"] for w in step.split()[4:]]
        assert max(costs) <= maze.width * maze.height
    assert len({r["layout_hash"] for r in train_records}) == len(train_records)


def test_splits_are_disjoint_by_layout_whatever_the_seeds(train_records):
    train = {r["layout_hash"] for r in train_records}
    val = {r["layout_hash"] for r in generate(40, seed=0, options=MazeOptions(split="val"))}
    test = {r["layout_hash"] for r in generate(40, seed=0, options=MazeOptions(split="test"))}
    assert len(val) == len(test) == 40
    assert not (train & val) and not (train & test) and not (val & test)


def test_rejections_are_counted_and_bounded_traces_respected():
    records, rejected = generate_counted(30, seed=1, options=MazeOptions(max_trace_events=40))
    assert all(len(r["steps"]) <= 40 for r in records)
    assert rejected["trace too long"] > 0 and rejected["no key needed"] > 0
    with pytest.raises(ValueError, match="no maze kept"):
        generate(1, seed=0, options=MazeOptions(max_trace_events=2, max_tries=50))
    with pytest.raises(ValueError, match="rooms"):
        MazeOptions(rooms=2, colours=2)


# ------------------------------------------------------------------------------------- the tokenizer


def test_maze_tokenizer_round_trips_one_token_per_word(train_records, tmp_path):
    from lm_latent.data.maze.tokenizer import maze_vocabulary, train_maze_tokenizer
    from lm_latent.data.tokenization import EOS_TOKEN, PAD_TOKEN, full_text, load_tokenizer, tokenize_examples

    examples = [Example(r["question"], tuple(r["steps"]), r["answer"], f"maze:{i}", "maze")
                for i, r in enumerate(train_records[:40])]
    train_maze_tokenizer([full_text(e) for e in examples], tmp_path / "tok", (EOS_TOKEN, PAD_TOKEN))
    tok = load_tokenizer(tmp_path / "tok")  # AutoTokenizer, as every stage loads it
    assert len(tok) == 3 + len(maze_vocabulary(8, 2))  # eos, pad, unk + 8x8 with two colours
    tokenized, mismatches = tokenize_examples(tok, examples, check_roundtrip=True)
    assert mismatches == 0
    for ex, t in zip(examples, tokenized):
        text = full_text(ex)
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        assert len(ids) == len(text.split()) + text.count("\n")  # every word and newline one token
        assert tok.decode(ids) == text
        assert tok.decode(list(t.answer_ids), skip_special_tokens=True) == "### " + ex.answer
        assert len(t.step_ids[0]) == 7  # verb x y KEYS cG cH "\n"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        train_maze_tokenizer(["size 5 5 start 0 0 goal 4 4\n### plan 0 0 c99"], tmp_path / "bad", (EOS_TOKEN, PAD_TOKEN))


# ------------------------------------------------------------------------------------- evaluation


def test_feasible_at_k_counts_each_maze_once():
    from lm_latent.evaluation.maze import COUNTS, MazeScores

    metric = MazeScores()
    rows = {  # maze key -> (greedy feasible, greedy optimal, feasible samples, optimal samples)
        0: (1, 1, 10, 7), 1: (0, 0, 0, 0), 2: (0, 0, 1, 0), 3: (1, 0, 3, 0),
    }
    keys = [0, 1, 2, 3, 2]  # maze 2 twice, as a padded shard would send it
    counts = {name: [] for name in COUNTS}
    for key in keys:
        gf, go, sf, so = rows[key]
        for name, value in zip(COUNTS, (gf, go, 20, 2, 10, sf, so, 10 * (30 + key), 10 * 2, 10 * (28 + key))):
            counts[name].append(value)
    metric.update(keys, **counts)
    out = {k: float(v) for k, v in metric.compute().items()}
    assert out["n"] == 4
    assert out["feasible_at_k"] == out["accuracy"] == pytest.approx(3 / 4)
    assert out["optimal_at_k"] == pytest.approx(1 / 4)
    assert out["sample_feasible"] == pytest.approx(14 / 40)
    assert (out["greedy_feasible"], out["greedy_optimal"]) == (pytest.approx(0.5), pytest.approx(0.25))
    assert out["mean_tokens"] == pytest.approx(31.5) and out["mean_latent_tokens"] == pytest.approx(2.0)
    assert out["mean_text_tokens"] == pytest.approx(29.5) and out["greedy_mean_tokens"] == 20


def _generation(written: str, num_latent: int = 0):
    from lm_latent.finetune.generation import Generation

    text = " ".join(w for w in written.split(" ") if not w.startswith("<"))
    n = len(written.split())
    return Generation(text=text, token_ids=[], codes=[0] * num_latent, num_latent=num_latent,
                      num_delimiter=0, num_text=n - num_latent, written=written)


def test_callback_reports_one_feasible_of_ten_greedy_and_draws_the_mazes():
    from lm_latent.evaluation.maze import MazeAccuracy

    gold = plan_text(HAND_OPTIMAL)
    detour = plan_text(HAND_OPTIMAL[:2] + [(1, 1), (0, 1)] + HAND_OPTIMAL[2:])
    wall = plan_text([(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)])
    examples = [Example(HAND.prompt(), (), gold, f"maze:{i}", "maze", meta={"optimal_moves": 8}) for i in range(3)]
    # Maze 0: greedy optimal, one sample of ten feasible (a detour). Maze 1: nothing feasible.
    # Maze 2: greedy infeasible, every sample optimal.
    script = {
        (0, False): ["### " + gold], (1, False): ["### " + wall], (2, False): ["### " + wall],
        (0, True): ["### " + detour] + ["### " + wall] * 9, (1, True): ["### " + wall] * 10,
        (2, True): ["### " + gold] * 10,
    }
    seen: dict[bool, int] = {}

    class Module:
        device = torch.device("cpu")
        logged: dict[str, float] = {}

        def generate(self, prompts, do_sample, top_k, **kwargs):
            assert (top_k == 10) if do_sample else (top_k is None)
            outs = []
            k = 10 if do_sample else 1
            assert len(prompts) == 3 * k
            for j in range(len(prompts)):
                outs.append(_generation(script[(j // k, do_sample)][j % k]))
            seen[do_sample] = len(prompts)
            return outs

        def log(self, name, value, **kwargs):
            self.logged[name] = value

    trainer = SimpleNamespace(strategy=object(), global_rank=0, world_size=1, is_global_zero=True, loggers=[],
                              sanity_checking=False)
    callback = MazeAccuracy(examples=examples, name="maze_test", num_samples=2)
    module = Module()
    values = callback.evaluate(trainer, module, "test")
    assert seen == {False: 3, True: 30}
    assert values["feasible_at_k"] == values["accuracy"] == pytest.approx(2 / 3)
    assert values["optimal_at_k"] == pytest.approx(1 / 3)
    assert values["greedy_feasible"] == values["greedy_optimal"] == pytest.approx(1 / 3)
    assert values["sample_feasible"] == pytest.approx(11 / 30)
    assert module.logged["test/maze_test/feasible_at_k"] == pytest.approx(2 / 3)
    assert [r["correct"] for r in callback.last_results] == [True, False, True]
    table = callback.samples_markdown(callback.last_results[:2])
    assert "S.#.E\n++R++\nr+#.." in table  # maze 0 with its greedy plan
    assert "infeasible (move 2 (1, 0) -> (2, 0): into a wall)" in table
    with pytest.raises(ValueError, match="decoding"):
        MazeAccuracy(examples=examples, decoding="greedy")


def test_command_line_generates_splits_and_builds_the_tokenizer(tmp_path, capsys):
    import json

    from lm_latent.data.cli import main
    from lm_latent.data.readers import read_dataset
    from lm_latent.data.tokenization import load_tokenizer

    train, test = tmp_path / "train.json", tmp_path / "test.json"
    assert main(["generate", "maze", "--num", "6", "--seed", "0", "--out", str(train), "--max-size", "7"]) == 0
    assert main(["generate", "maze", "--num", "4", "--seed", "0", "--out", str(test), "--split", "test"]) == 0
    capsys.readouterr()
    train_ex, test_ex = (read_dataset("maze", p).examples for p in (train, test))
    assert (len(train_ex), len(test_ex)) == (6, 4)
    assert {e.meta["layout_hash"] for e in train_ex}.isdisjoint(e.meta["layout_hash"] for e in test_ex)
    assert main(["tokenizer", "--dataset", "maze", "--path", str(train), "--out", str(tmp_path / "tok"), "--kind", "maze"]) == 0
    assert json.loads(capsys.readouterr().out)["vocab_size"] == len(load_tokenizer(tmp_path / "tok"))


def test_readme_example_is_what_the_generator_writes():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Keys-Finding Maze", 1)[1]
    lines = section.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    record = generate(1, seed=0)[0]
    head, _, tail = lines[0].partition(" ... ")
    assert record["question"].startswith(head) and record["question"].endswith(tail)
    assert lines[1:3] == record["steps"][:2]
    assert lines[-1] == "### " + record["answer"]
