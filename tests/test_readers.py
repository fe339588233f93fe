"""Dataset readers: every staged file, the per-source decisions, and bad input located precisely."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from lm_latent.data.errors import DataError
from lm_latent.data.example import Example
from lm_latent.data.readers import (
    DATASETS,
    last_boxed,
    read_dataset,
    read_examples,
    split_steps,
    strip_calculator,
    write_canonical,
)

# (dataset, file, rows in the data README, records skipped on purpose, examples have steps)
STAGED = [
    ("gsm8k", "gsm8k/train.jsonl", 7473, 0, True),
    ("gsm8k", "gsm8k/test.jsonl", 1319, 0, True),
    ("math", "math/test.jsonl", 5000, 0, True),
    ("math500", "math500/test.jsonl", 500, 0, True),
    ("prosqa", "prosqa/valid.json", 300, 0, True),
    ("prontoqa", "prontoqa/valid.json", 200, 0, True),
    ("prontoqa", "prontoqa/test.json", 800, 0, True),
    ("fresh_gaokao_math_2023", "fresh_gaokao_math_2023/test.jsonl", 30, 0, False),
    ("gaokao2023en", "gaokao2023en/test.jsonl", 385, 2, False),  # two rows have an empty answer
    ("college_math", "college_math/test.jsonl", 2818, 0, False),
    ("deepmind_mathematics", "deepmind_mathematics/test.json", 1000, 0, False),
    ("olympiadbench_math", "olympiadbench_math/test.json", 675, 0, True),
    ("theoremqa", "theoremqa/test.json", 800, 53, False),
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return path


# -- every staged file ---------------------------------------------------------------------------


@pytest.mark.parametrize("name,rel,rows,skips,has_steps", STAGED, ids=[s[1] for s in STAGED])
def test_staged_file_reads_every_row(shared_data, name, rel, rows, skips, has_steps):
    result = read_dataset(name, shared_data / rel)
    assert len(result.examples) + result.num_skipped == rows
    assert result.num_skipped == skips
    assert all(ex.has_steps == has_steps for ex in result.examples)
    assert all(ex.source == name for ex in result.examples)
    assert all(ex.question.strip() and ex.answer.strip() for ex in result.examples)
    assert all(all(s.strip() == s and s for s in ex.steps) for ex in result.examples)
    ids = [ex.id for ex in result.examples]
    assert len(set(ids)) == len(ids)
    # Ids are stable: a second read gives the same ones.
    assert [ex.id for ex in read_dataset(name, shared_data / rel).examples] == ids


def test_gaokao2023en_skips_the_rows_without_an_answer(shared_data):
    result = read_dataset("gaokao2023en", shared_data / "gaokao2023en/test.jsonl")
    assert result.skipped == {"empty answer": 2}
    assert {"gaokao2023en:167", "gaokao2023en:192"}.isdisjoint(ex.id for ex in result.examples)


def test_theoremqa_skips_only_rows_with_pictures(shared_data):
    result = read_dataset("theoremqa", shared_data / "theoremqa/test.json")
    assert result.skipped == {"needs an image": 53}
    assert len(result.examples) == 747
    by_id = {ex.id: ex for ex in result.examples}
    assert by_id["theoremqa:jianyu_xu/Lah_number_6.json"].answer == "11760"


def test_gsm8k_steps_answer_and_calculator(shared_data):
    path = shared_data / "gsm8k/train.jsonl"
    first = read_dataset("gsm8k", path).examples[0]
    assert first.id == "gsm8k:0"
    assert first.steps == (
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
    )
    assert first.answer == "72"
    kept = read_dataset("gsm8k", path, strip_calculator=False).examples
    assert kept[0].steps[0] == "Natalia sold 48/2 = <<48/2=24>>24 clips in May."
    stripped = read_dataset("gsm8k", path).examples
    assert not any("<<" in s or ">>" in s for ex in stripped for s in ex.steps)
    # Answers are kept as written, thousands separators included.
    assert any("," in ex.answer for ex in stripped)
    assert not any(ex.answer.startswith("#") for ex in stripped)


def test_math_boxed_answers_agree_with_math500_answer_field(shared_data):
    full = {ex.question: ex for ex in read_dataset("math", shared_data / "math/test.jsonl").examples}
    m500 = read_dataset("math500", shared_data / "math500/test.jsonl").examples
    assert len(m500) == 500
    assert all(full[ex.question].answer == ex.answer for ex in m500)
    assert full[next(iter(full))].answer == "2"
    assert m500[0].id == "math500:test/precalculus/807.json"


def test_olympiadbench_answer_and_steps_from_first_solution(shared_data):
    path = shared_data / "olympiadbench_math/test.json"
    raw = json.loads(path.read_text())
    examples = read_dataset("olympiadbench_math", path).examples
    for rec, ex in zip(raw, examples):
        assert ex.id == f"olympiadbench_math:{rec['id']}"
        assert ex.answer == ", ".join(rec["final_answer"])
        assert "".join("".join(ex.steps).split()) == "".join(rec["solution"][0].split())


# -- text helpers --------------------------------------------------------------------------------


def test_last_boxed_balances_nested_and_escaped_braces():
    assert last_boxed(r"so $\boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert last_boxed(r"\boxed{1} then \boxed{\{a, b\}}") == r"\{a, b\}"
    assert last_boxed(r"\fbox{x^{2^{3}}} done") == "x^{2^{3}}"
    assert last_boxed(r"the answer is $\boxed 5$") == "5"
    assert last_boxed(r"\boxed{unclosed") is None
    assert last_boxed("no box here") is None


def test_split_steps_never_cuts_through_math():
    text = (
        "We have $x = 3. Y$ here. Then\n\\[a. B. c.\\]Hence $y=2.$ So done! "
        "Also e.g. This stays. The [asy]\ndraw(a). Fill(b).\n[/asy] ends."
    )
    assert split_steps(text) == [
        "We have $x = 3. Y$ here.",
        "Then",
        "\\[a. B. c.\\]",
        "Hence $y=2.$",
        "So done!",
        "Also e.g. This stays.",
        "The [asy]\ndraw(a). Fill(b).\n[/asy] ends.",
    ]
    # A lone currency sign does not open math across lines; an escaped dollar is literal.
    assert split_steps("It costs $5.\nShe pays \\$3. Then she leaves.") == [
        "It costs $5.",
        "She pays \\$3.",
        "Then she leaves.",
    ]
    assert split_steps("lower. case stays together.") == ["lower. case stays together."]


def test_strip_calculator():
    assert strip_calculator("48/2 = <<48/2=24>>24 and <<1+1=2>>2") == "48/2 = 24 and 2"


# -- small files of every kind -------------------------------------------------------------------


def test_theoremqa_answers_are_written_as_python_values(tmp_path):
    rows = [
        {"Question": "q0", "Answer": True, "Picture": None, "id": "a"},
        {"Question": "q1", "Answer": [0, 5], "Picture": None, "id": "b"},
        {"Question": "q2", "Answer": 1.5, "Picture": "img.png", "id": "c"},
        {"Question": "q3", "Answer": "(a)", "Picture": None, "id": "d"},
    ]
    result = read_dataset("theoremqa", write_json(tmp_path / "t.json", rows))
    assert [ex.answer for ex in result.examples] == ["True", "[0, 5]", "(a)"]
    assert [ex.id for ex in result.examples] == ["theoremqa:a", "theoremqa:b", "theoremqa:d"]
    assert result.skipped == {"needs an image": 1}


def test_read_examples_logs_skips(tmp_path, caplog):
    rows = [{"Question": "q", "Answer": 1, "Picture": "x.png", "id": "a"}, {"Question": "q", "Answer": 2, "id": "b"}]
    path = write_json(tmp_path / "t.json", rows)
    with caplog.at_level(logging.WARNING):
        examples = read_examples("theoremqa", path)
    assert [ex.answer for ex in examples] == ["2"]
    assert "skipped 1 theoremqa record(s): needs an image" in caplog.text


def test_source_ids_fall_back_to_index_when_not_unique(tmp_path):
    rows = [{"question": f"q{i}", "answer": "1", "question_number": "same"} for i in range(3)]
    # fresh_gaokao ids come from question_number when unique; here they repeat.
    examples = read_dataset("fresh_gaokao_math_2023", write_jsonl(tmp_path / "f.jsonl", rows)).examples
    assert [ex.id for ex in examples] == [f"fresh_gaokao_math_2023:{i}" for i in range(3)]
    assert examples[0].meta == {"question_number": "same"}


@pytest.mark.parametrize("as_array", [False, True])
def test_metamathqa_jsonl_and_array(tmp_path, as_array):
    rows = [
        {
            "query": "Natalia sold 48 clips in April and half as many in May. How many in total?",
            "response": "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n#### 72\n"
            "The answer is: 72",
            "type": "GSM_Rephrased",
            "original_question": "...",
        },
        {
            "query": "What is $\\frac{1}{2}+\\frac{1}{2}$?",
            "response": "We add $\\frac{1}{2}+\\frac{1}{2} = 1.$ So the sum is $\\boxed{1}$. The answer is: 1",
            "type": "MATH_AnsAug",
        },
    ]
    path = (write_json if as_array else write_jsonl)(tmp_path / ("m.json" if as_array else "m.jsonl"), rows)
    examples = read_dataset("metamathqa", path).examples
    assert examples[0].steps == ("Natalia sold 48/2 = 24 clips in May.", "Natalia sold 48+24 = 72 clips.")
    assert examples[0].answer == "72"
    assert examples[0].meta["type"] == "GSM_Rephrased"
    assert examples[1].steps == ("We add $\\frac{1}{2}+\\frac{1}{2} = 1.$", "So the sum is $\\boxed{1}$.")
    assert examples[1].answer == "1"
    assert [ex.id for ex in examples] == ["metamathqa:0", "metamathqa:1"]


def test_canonical_round_trip(tmp_path):
    examples = [
        Example("Is Tom a wumpus?", ("Tom is a yumpus.", "Every yumpus is a wumpus."), "Yes", "p:0", "prosqa",
                meta={"root": 0, "edges": [[0, 1]]}),
        Example("What is 2+2?", (), "4", "g:7", "gsm8k"),
    ]
    path = write_canonical(examples, tmp_path / "sub" / "c.jsonl")
    back = read_dataset("canonical", path).examples
    assert back == examples
    assert [ex.meta for ex in back] == [ex.meta for ex in examples]
    # A canonical file of a staged set reads back identically too.
    assert read_dataset("canonical", write_canonical(back, tmp_path / "again.jsonl")).examples == examples


# -- bad input -----------------------------------------------------------------------------------

GOOD = {"question": "q", "answer": "step\n#### 1"}


def _error(name: str, path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_dataset(name, path)
    return str(info.value)


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n{\"question\": \"q\", \"answ\n")
    msg = _error("gsm8k", path)
    assert "broken.jsonl" in msg and "line 3" in msg and "malformed JSON" in msg


def test_missing_field_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "missing.jsonl", [GOOD, {"answer": "x\n#### 2"}])
    msg = _error("gsm8k", path)
    assert "missing.jsonl" in msg and "line 2" in msg and "'question'" in msg and "missing field" in msg


def test_mistyped_steps_in_array_names_record_and_field(tmp_path):
    rows = [{"question": "q", "steps": ["a"], "answer": "b"}, {"question": "q", "steps": ["a", 3], "answer": "b"}]
    msg = _error("prosqa", write_json(tmp_path / "typed.json", rows))
    assert "typed.json" in msg and "record 1" in msg and "'steps'" in msg and "list of str" in msg
    rows[1]["steps"] = "a"
    msg = _error("prosqa", write_json(tmp_path / "typed.json", rows))
    assert "record 1" in msg and "'steps'" in msg and "expected list" in msg


def test_mistyped_scalar_field_names_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "num.jsonl", [GOOD, GOOD, {"question": 7, "answer": "x\n#### 2"}])
    msg = _error("gsm8k", path)
    assert "num.jsonl" in msg and "line 3" in msg and "'question'" in msg and "expected str, got int" in msg


def test_unextractable_answers_are_errors_not_silent_drops(tmp_path):
    msg = _error("gsm8k", write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "no mark"}]))
    assert "line 1" in msg and "'answer'" in msg and "####" in msg
    msg = _error("math", write_jsonl(tmp_path / "m.jsonl", [{"problem": "p", "solution": "no box"}]))
    assert "line 1" in msg and "'solution'" in msg and "boxed" in msg
    msg = _error("metamathqa", write_jsonl(tmp_path / "mm.jsonl", [{"query": "q", "response": "r"}]))
    assert "line 1" in msg and "'response'" in msg and "The answer is:" in msg


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "empty.jsonl").write_text("  \n\n")
    assert "empty.jsonl" in _error("gsm8k", tmp_path / "empty.jsonl")
    assert "empty" in _error("gsm8k", tmp_path / "empty.jsonl")
    (tmp_path / "none.json").write_text("[]")
    assert "no records" in _error("deepmind_mathematics", tmp_path / "none.json")
    msg = _error("gsm8k", tmp_path / "nope.jsonl")
    assert "nope.jsonl" in msg and "not found" in msg


def test_non_object_record_and_duplicate_canonical_id(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text(json.dumps(GOOD) + "\n[1, 2]\n")
    assert "line 2" in _error("gsm8k", path)
    ex = Example("q", ("s",), "a", "same", "x")
    dup = write_canonical([ex, ex], tmp_path / "dup.jsonl")
    msg = _error("canonical", dup)
    assert "line 2" in msg and "'id'" in msg and "duplicate" in msg


def test_unknown_dataset_lists_known_names(tmp_path):
    with pytest.raises(ValueError) as info:
        read_dataset("gsm9k", tmp_path / "x.jsonl")
    assert "gsm9k" in str(info.value)
    assert all(name in str(info.value) for name in DATASETS)
    assert len(DATASETS) == 15


# -- ProsQA with the queried person renamed ------------------------------------------------------


def test_prosqa_queried_tom_renames_the_queried_person_everywhere(shared_data):
    path = shared_data / "prosqa/valid.json"
    plain = read_dataset("prosqa", path).examples
    renamed = read_dataset("prosqa_queried_tom", path).examples
    assert len(renamed) == len(plain) == 300
    assert "prosqa_queried_tom" in DATASETS
    moved = 0
    for p, r in zip(plain, renamed):
        name = p.question.rsplit("Is ", 1)[1].split(" ")[0]
        assert r.question.rsplit("Is ", 1)[1].startswith("Tom a ")
        assert r.answer == p.answer.replace(name, "Tom", 1) and r.answer.startswith("Tom is a ")
        assert r.steps[0].startswith("Tom is a ")
        assert r.id.split(":")[1] == p.id.split(":")[1] and r.source == "prosqa_queried_tom"
        # Swapping back (Tom <-> the original name) restores the original text and graph exactly.
        back = {name: "Tom", "Tom": name}
        assert re.sub(rf"\b({name}|Tom)\b", lambda m: back[m.group(1)], r.question) == p.question
        assert r.meta["idx_to_symbol"][p.meta["root"]] == "Tom" and p.meta["idx_to_symbol"][p.meta["root"]] == name
        assert [back.get(s, s) for s in r.meta["idx_to_symbol"]] == p.meta["idx_to_symbol"]
        moved += name != "Tom"
    assert moved > 250  # most official questions ask about someone other than Tom


def test_prosqa_queried_tom_needs_the_closing_question(tmp_path):
    rows = [{"question": "Tom is a impus. Is Tom a impus or yimpus?", "steps": ["Tom is a impus."], "answer": "Tom is a impus."},
            {"question": "Tom is a impus. Which is Tom?", "steps": ["Tom is a impus."], "answer": "Tom is a impus."}]
    msg = _error("prosqa_queried_tom", write_json(tmp_path / "odd.json", rows))
    assert "odd.json" in msg and "record 1" in msg and "'question'" in msg and "Is <name> a" in msg
