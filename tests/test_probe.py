"""Smoke tests of the learning probe (experiments/probes/logic_learning.py) at its smallest sizes: it
runs as RESULTS.md runs it, a curriculum advances, a saved model is a Hugging Face directory that an
experiment can load, a continuation on a variant with other words carries the embedding rows over by
token string, and mazes are scored by the feasibility checker. Accuracies are not checked: two steps
learn nothing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PROBE = REPO / "experiments" / "probes" / "logic_learning.py"
TINY = ["--layers", "1", "--d", "32", "--heads", "2", "--n", "64", "--batch", "8", "--minutes", "5"]


def run_probe(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(PROBE), *TINY, *args], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"probe exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def probe_module():
    """The probe script as a module (it lives outside the package)."""
    sys.path.insert(0, str(PROBE.parent))
    try:
        import logic_learning
    finally:
        sys.path.pop(0)
    return logic_learning


def scores(line: str) -> dict[str, float]:
    return {k: float(v) for k, v in re.findall(r"(accuracy|chain|conclusion|consistent) ([0-9.]+)", line)}


def test_curriculum_advances_saves_and_continues_on_other_words(tmp_path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    easy = json.dumps({"hops": 1, "branches": 0, "entity_distractor": False, "templates": "every"})
    # --advance-at 0: the first evaluation moves on, so the run ends on the target variant.
    out = run_probe("--opts", easy, "--curriculum", '[{"hops": 2}]', "--advance-at", "0", "--max-steps", "4",
                    "--eval-every", "2", "--save", str(tmp_path / "m"))
    assert "-> stage 1 from step 2" in out
    final = [line for line in out.splitlines() if line.startswith("final step 4")]
    assert len(final) == 1 and 0.0 <= scores(final[0])["accuracy"] <= 1.0
    model = LlamaForCausalLM.from_pretrained(tmp_path / "m")
    assert model.get_input_embeddings().weight.shape[0] == len(AutoTokenizer.from_pretrained(tmp_path / "m"))

    # The official templates add words ("Each", "are"): rows of the words both vocabularies hold carry over.
    out = run_probe("--opts", "{}", "--init", str(tmp_path / "m"), "--max-steps", "2", "--eval-every", "2",
                    "--stop-at", "0.0", "--save", str(tmp_path / "m2"), "--total-steps", "0")  # cosine over --minutes
    carried, total = map(int, re.search(r"vocabulary: (\d+) of (\d+) token rows carried", out).groups())
    assert 0 < carried < total
    old_tok, new_tok = AutoTokenizer.from_pretrained(tmp_path / "m"), AutoTokenizer.from_pretrained(tmp_path / "m2")
    assert len(new_tok) == total and carried == len(set(old_tok.get_vocab()) & set(new_tok.get_vocab()))
    # --stop-at 0 ends the run at its first evaluation, which saved the model.
    assert re.search(r"^step 2 ", out, re.M) and "final step 2" in out


def test_lr_factor_warms_up_then_follows_the_cosine_to_a_tenth():
    lr_factor = probe_module().lr_factor
    assert lr_factor(0, 100, 0.0) == 0.01 and lr_factor(99, 100, 0.0) == 1.0
    assert abs(lr_factor(500, 100, 0.5) - 0.55) < 1e-9 and abs(lr_factor(500, 100, 1.0) - 0.1) < 1e-9


def test_an_unknown_probe_key_stops_the_probe_with_its_name():
    proc = subprocess.run(
        [sys.executable, str(PROBE), *TINY, "--task", "prosqa", "--curriculum", '[{"_adjacnt": true}]',
         "--max-steps", "1"],
        cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0 and "stage 0: unknown probe key(s) ['_adjacnt']" in proc.stderr


def test_row_edits_of_one_stage_compose():
    m = probe_module()
    row = {"question": "Polly is a impus. Gabriel is a yimpus. Is Polly a impus or yimpus?",
           "answer": "Polly is a impus.", "steps": ["Polly is a impus."]}
    edited = m.adjacent_facts(m.queried_person_only(row))
    assert list(m.ROW_EDITS) == ["_queried_person_only", "_adjacent", "_question_first", "_queried_as_tom"]
    assert edited["question"] == "Polly impus. Is Polly a impus or yimpus?"


def test_transplant_copies_rows_by_token_string():
    transplant_vocabulary = probe_module().transplant_vocabulary

    class Tok:
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

        def __len__(self):
            return len(self.vocab)

    class Model:
        def state_dict(self):
            return {"model.embed_tokens.weight": torch.zeros(3, 2)}

    old = {"model.embed_tokens.weight": torch.tensor([[1.0, 1.0], [2.0, 2.0]]), "lm_head.weight": torch.ones(2, 2)}
    state = transplant_vocabulary(old, Tok({"a": 0, "b": 1}), Tok({"b": 0, "new": 1, "a": 2}), Model())
    assert state["model.embed_tokens.weight"].tolist() == [[2.0, 2.0], [0.0, 0.0], [1.0, 1.0]]
    assert state["lm_head.weight"] is state["model.embed_tokens.weight"]  # tied: the head follows


def test_queried_person_only_drops_the_other_peoples_facts():
    queried_person_only = probe_module().queried_person_only
    row = {"question": "Polly is a impus. Gabriel is a yimpus. Every jelpus is a impus. Polly is a jelpus. "
                       "Is Polly a impus or yimpus?", "answer": "Polly is a impus.", "steps": ["Polly is a impus."]}
    edited = queried_person_only(row)
    assert edited["question"] == "Polly is a impus. Every jelpus is a impus. Polly is a jelpus. Is Polly a impus or yimpus?"
    assert (edited["answer"], edited["steps"]) == (row["answer"], row["steps"]) and "Gabriel" in row["question"]


def test_adjacent_facts_put_each_concept_right_after_its_key():
    adjacent_facts = probe_module().adjacent_facts
    row = {"question": "Polly is a impus. Every jelpus is a impus. Gabriel is a yimpus. Is Polly a impus or yimpus?",
           "answer": "Polly is a impus.", "steps": ["Polly is a impus."]}
    edited = adjacent_facts(row)
    assert edited["question"] == "Polly impus. Every jelpus impus. Gabriel yimpus. Is Polly a impus or yimpus?"
    assert (edited["steps"], edited["answer"]) == (["Polly impus."], "Polly impus.")


def test_question_first_writes_the_question_before_the_facts_too():
    question_first = probe_module().question_first
    row = {"question": "Polly is a impus. Every jelpus is a impus. Gabriel is a yimpus. Is Polly a impus or yimpus?",
           "answer": "Polly is a impus.", "steps": ["Polly is a impus."]}
    edited = question_first(row)
    assert edited["question"] == ("Is Polly a impus or yimpus? Polly is a impus. Every jelpus is a impus. "
                                  "Gabriel is a yimpus. Is Polly a impus or yimpus?")
    assert (edited["steps"], edited["answer"]) == (row["steps"], row["answer"])


def test_queried_as_tom_swaps_the_queried_name_with_tom():
    queried_as_tom = probe_module().queried_as_tom
    row = {"question": "Tom is a impus. Polly is a yimpus. Every jelpus is a impus. Is Polly a impus or yimpus?",
           "answer": "Polly is a yimpus.", "steps": ["Polly is a yimpus."]}
    edited = queried_as_tom(row)
    assert edited["question"] == "Polly is a impus. Tom is a yimpus. Every jelpus is a impus. Is Tom a impus or yimpus?"
    assert (edited["steps"], edited["answer"]) == (["Tom is a yimpus."], "Tom is a yimpus.")
    assert queried_as_tom(edited) == edited  # Tom queried already: nothing to swap


def test_opts_row_edits_reach_a_copy_of_the_official_file(tmp_path):
    m = probe_module()
    official = REPO.parent / "shared" / "data" / "prosqa" / "valid.json"
    rows = json.loads(official.read_text())
    edited = json.loads(m.edited_copy(official, m.queried_as_tom, tmp_path / "valid.json").read_text())
    assert len(edited) == len(rows) == 300
    assert all(e["question"].endswith(re.sub(r"^Is \w+ ", "Is Tom ", r["question"].rsplit(". ", 1)[1]))
               and e["answer"].startswith("Tom is a ") for e, r in zip(edited, rows))
    assert sum(r != e for r, e in zip(rows, edited)) > 250  # most official questions ask about someone else

    # In --opts, a probe key holds for every stage and for the --official file: the probe runs with both.
    out = run_probe("--task", "prosqa", "--opts", json.dumps({"min_nodes": 4, "max_nodes": 6, "min_steps": 1,
                    "max_steps": 1, "_queried_as_tom": True}), "--max-steps", "1", "--eval-every", "1",
                    "--max-new", "8", "--official", str(official))
    assert re.search(r"^final step 1 .* \| official accuracy", out, re.M)


def test_recall_rows_ask_which_option_is_stated_of_each_queried_person():
    recall_rows = probe_module().recall_rows
    rows = recall_rows(50, seed=3, people=5, queries=3, rules=2)
    assert rows == recall_rows(50, seed=3, people=5, queries=3, rules=2)
    assert rows != recall_rows(50, seed=4, people=5, queries=3, rules=2)
    for row in rows:
        facts = re.findall(r"(\w+) is a (\w+)\.", row["question"])
        owner = {concept: name for name, concept in facts}
        stated = {(name, concept) for name, concept in facts}
        asked = re.findall(r"Is (\w+) a (\w+) or (\w+)\?", row["question"])
        assert len(asked) == 3 and len({name for name, _, _ in asked}) == 3
        assert len({name for name, _ in facts if name[0].isupper()}) == 5
        assert row["question"].count("Every ") == 2 and row["answer"] == row["steps"][-1]
        for (name, a, b), step in zip(asked, row["steps"]):
            right = re.fullmatch(r"(\w+) is a (\w+)\.", step).groups()
            assert right[0] == name and right[1] in (a, b) and (name, right[1]) in stated
            wrong = b if right[1] == a else a
            assert owner[wrong] != name and owner[wrong][0].isupper()  # another person's concept


def test_recall_rows_draw_counts_per_problem_from_ranges():
    recall_rows = probe_module().recall_rows
    rows = recall_rows(300, seed=0, people=[2, 5], queries=[1, 4], rules=1)
    people = [len(set(re.findall(r"([A-Z]\w+) is a ", r["question"])) - {"Every"}) for r in rows]
    queries = [len(r["steps"]) for r in rows]
    assert set(people) == {2, 3, 4, 5} and set(queries) == {1, 2, 3, 4}
    assert all(q <= p for p, q in zip(people, queries))
    assert recall_rows(5, seed=2, people=4, queries=3) == recall_rows(5, seed=2, people=[4, 4], queries=[3, 3])


def test_recall_stage_runs_in_a_curriculum_and_the_look_up_is_classified(tmp_path):
    out = run_probe("--task", "prosqa", "--opts", '{"min_nodes":4,"max_nodes":6,"min_steps":1,"max_steps":1}',
                    "--curriculum", '[{"_recall":{"people":3,"queries":2}}]', "--max-steps", "2", "--eval-every", "1",
                    "--advance-at", "0.0", "--max-new", "12", "--save", str(tmp_path / "m"), "--loss-on-prompt")
    assert "curriculum stage 0" in out and "-> stage 1 from step 1" in out

    proc = subprocess.run(
        [sys.executable, str(PROBE.parent / "name_lookup.py"), str(tmp_path / "m"), "--people", "3", "--queries", "2",
         "--n", "4"], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {m[0]: m for m in re.findall(r"^(recall|one step)[^:]*: (\d+) questions; (.*)$", proc.stdout, re.M)}
    assert lines["recall"][1] == "8" and lines["one step"][1] == "4"  # 4 problems x 2 questions; 4 x 1
    for _, _, shares in lines.values():  # the four classes cover every question
        assert abs(sum(float(v) for v in re.findall(r"([0-9.]+)%", shares)) - 100.0) < 0.5


def test_maze_probe_scores_plans_with_the_checker(tmp_path):
    from transformers import LlamaForCausalLM

    opts = json.dumps({"min_size": 5, "max_size": 5, "rooms": 2, "colours": 1, "max_trace_events": 24})
    out = run_probe("--task", "maze", "--tokenizer", "maze", "--sol-only", "--max-new", "24", "--opts", opts,
                    "--max-steps", "2", "--eval-every", "2", "--head-dim", "24", "--save", str(tmp_path / "m"))
    # --head-dim: two heads of 24 on a residual stream of 32, the attention wider than the stream.
    attention = LlamaForCausalLM.from_pretrained(tmp_path / "m").model.layers[0].self_attn
    assert attention.q_proj.weight.shape == (48, 32) and attention.o_proj.weight.shape == (32, 48)
    final = [line for line in out.splitlines() if line.startswith("final step 2")]
    s = scores(final[0])
    # Optimal plans are feasible plans, which are well-formed plans.
    assert s["conclusion"] <= s["accuracy"] <= s["consistent"] <= 1.0


def test_loss_on_prompt_labels_the_question_too():
    from types import SimpleNamespace

    Probe = probe_module().Probe
    item = SimpleNamespace(prompt_ids=[5, 6, 7], cot_ids=[8, 9], answer_ids=[10])
    for on_prompt, first in ((False, 3), (True, 0)):
        args = SimpleNamespace(sol_only=False, loss_on_prompt=on_prompt)
        fake = SimpleNamespace(args=args, tok=SimpleNamespace(pad_token_id=0), device=torch.device("cpu"))
        ids, mask, labels = Probe.batch(fake, [item, SimpleNamespace(prompt_ids=[5], cot_ids=[], answer_ids=[10])])
        assert ids[0].tolist() == [5, 6, 7, 8, 9, 10] and mask[1].tolist() == [1, 1, 0, 0, 0, 0]
        assert labels[0].tolist() == [-100] * first + [5, 6, 7, 8, 9, 10][first:]
        assert labels[1].tolist() == ([5, 10] if on_prompt else [-100, 10]) + [-100] * 4
