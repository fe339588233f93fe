"""The word-level tokenizer for closed-vocabulary tasks: lossless on every staged ProsQA/ProntoQA
file, one id per concept in every surface form, a standard HF directory."""

import json

import pytest

from lm_latent.data.generators import GENERATORS
from lm_latent.data.readers import read_examples
from lm_latent.data.tokenization import full_text, load_tokenizer, tokenize_examples, train_tokenizer
from lm_latent.data.word_tokenizer import CAP, CONT, plan_vocabulary, round_trip_failures

STAGED = {"prosqa": ["prosqa/valid.json"], "prontoqa": ["prontoqa/valid.json", "prontoqa/test.json"]}


@pytest.fixture(scope="module", params=["prosqa", "prontoqa"])
def trained(request, tmp_path_factory):
    """A word tokenizer trained on 500 generated problems (as the pipeline does), loaded back."""
    task = request.param
    options_cls, generate = GENERATORS[task]
    tmp = tmp_path_factory.mktemp(f"word_{task}")
    (tmp / "train.json").write_text(json.dumps(generate(500, 0, options_cls())))
    texts = [full_text(e) for e in read_examples(task, tmp / "train.json")]
    train_tokenizer(texts, tmp / "tok", kind="word")
    return task, load_tokenizer(tmp / "tok")


def test_round_trips_every_staged_file(trained, shared_data):
    task, tok = trained
    for rel in STAGED[task]:
        examples = read_examples(task, shared_data / rel)
        texts = [full_text(e) for e in examples]
        assert round_trip_failures(tok, texts) == [], rel
        tokenized, mismatches = tokenize_examples(tok, examples, check_roundtrip=True)
        assert mismatches == 0, rel
        ids = [i for t in tokenized for i in t.prompt_ids + t.cot_ids + t.answer_ids]
        assert tok.unk_token_id not in ids, rel
        # Segments decode to their own text too (what TensorBoard samples and chain checks read).
        assert tok.decode(tokenized[0].prompt_ids) == examples[0].question + "\n"


def test_a_concept_is_one_id_in_every_form(trained):
    task, tok = trained
    name = "tumpus" if task == "prontoqa" else "wumpus"
    forms = {f"Every {name} is a {name}.": [name]}
    if task == "prontoqa":  # ProsQA never writes a plural or a capitalised concept
        forms[f"{name.capitalize()}es are {name}es."] = [CAP, name, CONT + "es"]
    for text, expected in forms.items():
        tokens = tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])
        assert tokens.count(name) == 2, tokens
        assert all(t in tokens for t in expected), tokens
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_forms_split_only_where_the_data_has_them():
    vocab, capitals = plan_vocabulary(["Every cat is a cat. Cats are animals. Alex is kind. An animal is a cat."])
    assert capitals == ["Cats"]  # "Every", "Alex" and "An" have no lower-case form in the text
    assert {"cat", "animal", CONT + "s", "Every", "Alex"} <= set(vocab)
    assert "Cats" not in vocab and "animals" not in vocab
    whole, no_caps = plan_vocabulary(["Cats are animals. The cat is an animal."], split_forms=False)
    assert no_caps == [] and {"Cats", "animals"} <= set(whole)


def test_unseen_words_fall_back_to_characters_losslessly(tmp_path):
    tok = train_tokenizer(["Every wumpus is a yumpus.\n### True"], tmp_path / "tok", kind="word")
    text = "Every wumpus is a sumpy.\n### Tru"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text


def test_unknown_kind_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tokenizer kind"):
        train_tokenizer(["a b"], tmp_path, kind="sentencepiece")
