"""Chain checks of ProsQA/ProntoQA generations: what a chain got right besides the answer."""

from __future__ import annotations

import json

import pytest

from lm_latent.evaluation.chains import chain_rates, check_chain

PRONTOQA_Q = ("Tumpuses are gorpuses. Gorpuses are wumpuses. Wumpuses are happy. Every lorpus is not happy. "
              "Alex is a tumpus. True or false: Alex is not happy.")
PROSQA_Q = "Every terpus is a brimpus. Every brimpus is a lempus. Tom is a terpus. Is Tom a lempus or scrompus?"


@pytest.mark.parametrize("task", ["prontoqa", "prosqa"])
def test_gold_chains_pass_every_check(task, shared_data):
    examples = json.loads((shared_data / task / "valid.json").read_text())
    rows = [{"question": e["question"], "text": "\n".join(e["steps"]) + "\n### " + e["answer"]} for e in examples]
    assert chain_rates(task, rows) == pytest.approx({name: 1.0 for name in chain_rates(task, rows)})


def test_prontoqa_checks():
    gold = "Alex is a tumpus. Tumpuses are gorpuses.\nAlex is a gorpus. Gorpuses are wumpuses.\nAlex is a wumpus. Wumpuses are happy.\nAlex is happy.\n### False"
    assert check_chain("prontoqa", PRONTOQA_Q, gold) == {"rules_in_question": 1.0, "ends_at_query": 1.0, "answer_follows_chain": 1.0}
    # One of three rules invented; the chain ends at the query but the answer contradicts it.
    invented = gold.replace("Gorpuses are wumpuses.", "Gorpuses are vumpuses.").replace("### False", "### True")
    assert check_chain("prontoqa", PRONTOQA_Q, invented) == {
        "rules_in_question": pytest.approx(2 / 3), "ends_at_query": 1.0, "answer_follows_chain": 0.0}
    # Ends at another property: neither ends_at_query nor answer_follows_chain, whatever the answer.
    elsewhere = "Alex is a tumpus. Tumpuses are gorpuses.\nAlex is bright.\n### False"
    assert check_chain("prontoqa", PRONTOQA_Q, elsewhere) == {"rules_in_question": 1.0, "ends_at_query": 0.0, "answer_follows_chain": 0.0}


def test_a_latent_models_leading_fragment_is_not_a_sentence():
    # The latent tokens replaced "Alex is a tumpus. Tumpuses are gorpuses.\nAlex is": the text starts mid-sentence.
    text = " a gorpus. Gorpuses are wumpuses.\nAlex is a wumpus. Wumpuses are happy.\nAlex is happy.\n### False"
    assert check_chain("prontoqa", PRONTOQA_Q, text)["rules_in_question"] == 1.0
    # No rule sentence at all: not counted (None), so it does not drag the rate either way.
    assert check_chain("prontoqa", PRONTOQA_Q, "Alex is happy.\n### False")["rules_in_question"] is None
    rows = [{"question": PRONTOQA_Q, "text": "Alex is happy.\n### False"}, {"question": PRONTOQA_Q, "text": text}]
    assert chain_rates("prontoqa", rows)["rules_in_question"] == 1.0
    # Chains that are only the conclusion (every chunk before it written as codes): no rule to rate,
    # so the check is left out instead of NaN, which the seed summary could not average.
    conclusion_only = [{"question": PRONTOQA_Q, "text": "Alex is happy.\n### False"}]
    assert chain_rates("prontoqa", conclusion_only) == {"ends_at_query": 1.0, "answer_follows_chain": 1.0}


def test_answer_only_generations_keep_only_the_answer_checks():
    rows = [{"question": PROSQA_Q, "text": "### Tom is a lempus."}, {"question": PROSQA_Q, "text": "### Sam is a scrompus."}]
    assert chain_rates("prosqa", rows) == {"answer_names_entity": 0.5, "answer_is_an_option": 0.5}
    assert chain_rates("prontoqa", [{"question": PRONTOQA_Q, "text": "### True"}]) == {}


def test_prosqa_checks():
    chain = "Tom is a terpus.\nEvery terpus is a brimpus.\nEvery brimpus is a lempus.\n"
    assert check_chain("prosqa", PROSQA_Q, chain + "### Tom is a lempus.") == {"rules_in_question": 1.0, "answer_names_entity": 1.0, "answer_is_an_option": 1.0}
    # The other option: wrong, but a well-formed choice between the two.
    assert check_chain("prosqa", PROSQA_Q, chain + "### Tom is a scrompus.")["answer_is_an_option"] == 1.0
    bad = "Tom is a terpus.\nEvery terpus is a lempus.\n### Sam is a lempus."
    assert check_chain("prosqa", PROSQA_Q, bad) == {"rules_in_question": 0.0, "answer_names_entity": 0.0, "answer_is_an_option": 0.0}
    # The right entity, a concept that is not an option.
    assert check_chain("prosqa", PROSQA_Q, "### Tom is a brimpus.")["answer_names_entity"] == 1.0
    assert check_chain("prosqa", PROSQA_Q, "### Tom is a brimpus.")["answer_is_an_option"] == 0.0
    assert check_chain("prosqa", PROSQA_Q, "Tom is a terpus.")["answer_is_an_option"] == 0.0  # no answer


def test_unknown_task_and_unparsable_question_are_errors():
    with pytest.raises(ValueError, match="not 'gsm8k'"):
        check_chain("gsm8k", "q", "a")
    with pytest.raises(ValueError, match="does not end with its query"):
        check_chain("prosqa", "Every terpus is a brimpus.", "### Tom is a lempus.")
