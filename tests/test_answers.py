"""Answer checking on realistic completions: right, wrong, missing and malformed answers."""

import json
import threading
from pathlib import Path

import pytest

from lm_latent.evaluation import TASK_OF_DATASET, is_correct
from lm_latent.evaluation.answers import extract_gsm8k, extract_math, last_boxed, math_verify_equal

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def math_rows():
    path = DATA / "math" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"staged MATH test set not found at {path} (see ../shared/data/README.md)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- GSM8K


@pytest.mark.parametrize(
    "completion, gold",
    [
        ("Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips.\n### 72", "72"),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", "72"),
        ("He pays 10 * 100 = 1000 dollars.\n### 1,000", "1,000"),
        ("### $1,000", "1000"),
        ("### 18 dollars.", "18"),
        ("The total is 5 + 13 = 18. The answer is 18.", "18"),
        ("The answer is: $18.00", "18"),
        ("So she has 3 apples and then 5 more, 8 apples in all", "8"),
        ("The temperature fell to -4 degrees.\n### -4", "-4"),
        ("<boLatent><latent_3><latent_12><eoLatent>48+24 = 72\n### 72<|endoftext|>", "72"),
        ("### 0.5", "0.50"),
    ],
)
def test_gsm8k_right(completion, gold):
    assert is_correct("gsm8k", completion, gold)


@pytest.mark.parametrize(
    "completion, gold",
    [
        ("48+24 = 72\n### 73", "72"),
        ("### 1,001", "1,000"),
        ("The answer is 17.", "18"),
        ("", "18"),
        ("no numbers at all here ###", "18"),
        ("### <latent_12>", "12"),  # a latent token is not a number
        ("<boLatent><latent_18><eoLatent>", "18"),  # nor is it an answer without a marker
        ("### 72", "not a number"),
    ],
)
def test_gsm8k_wrong(completion, gold):
    assert not is_correct("gsm8k", completion, gold)


def test_gsm8k_reads_the_gold_solution_format():
    assert extract_gsm8k("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n#### 10") == 10
    assert is_correct("gsm8k", "blah\n### 10", "Weng earns 0.2 per minute.\n#### 10")


# ---------------------------------------------------------------- MATH and co


@pytest.mark.parametrize(
    "completion, gold",
    [
        ("So the probability is 1/2.\n### \\frac{1}{2}", "\\frac{1}{2}"),
        ("### 0.5", "\\frac{1}{2}"),
        ("### \\dfrac{3}{4}", "\\frac{3}{4}"),
        ("### \\tfrac34", "\\frac{3}{4}"),
        ("### x = 3", "3"),
        ("### 3", "x=3"),
        ("### [2, 5)", "[2,5)"),
        ("### (-\\infty, 3]", "(-\\infty,3]"),
        ("### (3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("### 30^\\circ", "30^\\circ"),
        ("### 30", "30^\\circ"),
        ("### \\text{(C)}", "\\text{(C)}"),
        ("### C", "\\text{(C)}"),
        ("### 5\\text{ cm}", "5"),
        ("### 2\\sqrt{2}", "\\sqrt{8}"),
        ("### 10\\%", "10\\%"),
        ("We find $x = 7$. Hence the answer is $\\boxed{7}$.", "7"),
        ("Thus $\\boxed{\\frac{a}{b}}$ ... finally $\\boxed{\\frac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt3}{2}"),
        ("The answer is: 42", "42"),
        ("The answer is: $\\frac{7}{2}$.", "3.5"),
        ("### \\boxed{12}", "12"),
        ("### 2x+1", "1+2x"),
        ("<boLatent><latent_0><eoLatent>so 6*7 = 42\n### 42</s>", "42"),
        ("### \\{x|-2\\leq x<1\\}", "\\( \\{x | -2 \\leq x < 1\\} \\)"),  # Gaokao gold in \( \)
        ("### 10-4n", "$10-4 n$"),  # College-Math gold in $ $
    ],
)
def test_math_equivalent_forms_are_right(completion, gold):
    assert is_correct("math", completion, gold)


@pytest.mark.parametrize(
    "completion, gold",
    [
        ("### \\frac{1}{3}", "\\frac{1}{2}"),
        ("### 0.51", "\\frac{1}{2}"),
        ("### x = 4", "3"),
        ("### [2, 5]", "[2,5)"),
        ("### (2, 5)", "[2,5)"),
        ("### (1, 2, 3)", "(1, 3, 2)"),
        ("### 2x-1", "2x+1"),
        ("### \\text{(B)}", "\\text{(C)}"),
        ("### 60^\\circ", "30^\\circ"),
        ("I do not know.", "7"),  # no answer at all
        ("", "7"),
        ("### ", "7"),
        ("### \\frac{1}{", "\\frac{1}{2}"),  # malformed LaTeX
        ("### \\boxed{", "1"),
        ("### }}}{{{\\\\\\frac", "1"),
        ("### <latent_7>", "7"),  # leftover latent code where the answer should be
        ("### <boLatent><latent_2><latent_9>", "2"),
        ("$\\boxed{7}$ then more text <latent_3>", "3"),  # the boxed answer is 7, not the latent 3
        ("### " + "1+" * 2000 + "1", "2001"),  # runaway generation
    ],
)
def test_math_wrong_missing_malformed(completion, gold):
    assert not is_correct("math", completion, gold)


def test_last_boxed_handles_nesting_and_unbraced():
    assert last_boxed("a $\\boxed{1}$ b $\\boxed{\\frac{1}{\\sqrt{2}}}$") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("so $\\boxed 5$.") == "5"
    assert last_boxed("\\fbox{3}") == "3"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{1} and \\boxed{unclosed") == "1"
    # One implementation, the readers': escaped braces do not count.
    from lm_latent.data.readers import last_boxed as readers_last_boxed

    assert last_boxed is readers_last_boxed
    assert last_boxed("\\boxed{a\\}b}") == "a\\}b"


def test_math_answer_marker_wins_over_earlier_box():
    # The CoT of a MATH sample can contain the solution's box; "###" is where the model answers.
    assert extract_math("so $\\boxed{5}$.\n### 6") == "6"
    assert not is_correct("math", "so $\\boxed{5}$.\n### 6", "5")


def test_every_staged_math_dataset_goes_through_math():
    for name in ("math", "math500", "fresh_gaokao_math_2023", "gaokao2023en", "college_math",
                 "deepmind_mathematics", "olympiadbench_math", "theoremqa"):
        assert TASK_OF_DATASET[name] == "math"
    assert is_correct("math500", "### \\frac12", "0.5")
    with pytest.raises(ValueError, match="unknown task"):
        is_correct("nope", "### 1", "1")


def test_math_check_works_off_the_main_thread():
    # math-verify's default signal-based timeouts raise outside the main thread.
    results = []
    t = threading.Thread(target=lambda: results.append(is_correct("math", "### 0.5", "\\frac{1}{2}")))
    t.start()
    t.join()
    assert results == [True]


def test_every_math_test_gold_is_right_against_its_own_solution(math_rows):
    """All 5,000 MATH test answers: the gold (last box of the solution) is judged right against the
    solution text, both by is_correct and by math-verify alone (no exact-string shortcut). ~10 s."""
    assert len(math_rows) == 5000
    not_right, not_verified = [], []
    for row in math_rows:
        gold = last_boxed(row["solution"])
        assert gold, f"row idx={row['idx']}: no boxed answer"
        if not is_correct("math", row["solution"], gold):
            not_right.append(row["idx"])
        if not math_verify_equal(extract_math(row["solution"]), gold):
            not_verified.append(row["idx"])
    assert not_right == []
    assert not_verified == []


def test_math_golds_against_a_different_problem_mostly_wrong(math_rows):
    """Answers of neighbouring problems are rarely equal: a checker that says yes too easily fails."""
    golds = [last_boxed(r["solution"]) for r in math_rows[:300]]
    same = sum(is_correct("math", "### " + a, b) for a, b in zip(golds, golds[1:]))
    exact = sum(" ".join(a.split()) == " ".join(b.split()) for a, b in zip(golds, golds[1:]))
    assert same - exact <= 3


# ---------------------------------------------------------------- ProsQA / ProntoQA


@pytest.mark.parametrize(
    "task, completion, gold, right",
    [
        ("prosqa", "Tom is a wumpus.\nEvery wumpus is a lempus.\n### Tom is a lempus.", "Tom is a lempus.", True),
        ("prosqa", "<boLatent><latent_4><eoLatent>Every wumpus is a lempus.\n### Tom is a lempus.", "Tom is a lempus.", True),
        ("prosqa", "###   Tom  is a\nlempus.  <|endoftext|>", "Tom is a lempus.", True),
        ("prosqa", "### Tom is a zumpus.", "Tom is a lempus.", False),
        ("prosqa", "### Tom is a lempus", "Tom is a lempus.", False),  # exact match, as Coconut
        ("prosqa", "Tom is a lempus.", "Tom is a lempus.", False),  # no answer marker
        ("prosqa", "### <latent_3>", "Tom is a lempus.", False),
        ("prosqa", "", "Tom is a lempus.", False),
        ("prontoqa", "Stella is a zumpus.\n### True", "True", True),
        ("prontoqa", "### False", "True", False),
        ("prontoqa", "### true", "True", False),
        ("prontoqa", "### True\n", "True", True),
    ],
)
def test_coconut_exact_match(task, completion, gold, right):
    assert is_correct(task, completion, gold) is right
