"""Batched, left-padded, KV-cached generation over the extended vocabulary."""

from __future__ import annotations

import pytest
import torch

from lm_latent.data.tokenization import load_tokenizer, prompt_text
from lm_latent.finetune.generation import ForceLatentCount, Generation, generate, split_generated
from lm_latent.finetune.model import build_model
from lm_latent.finetune.vocab import extend_vocabulary
from lm_latent.mixing.tokens import LatentVocab

LLAMA = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
}

QUESTIONS = [
    "Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or zumpus?",
    "What is 3 + 5?",
    "Natalia sold 12 clips in April and 7 in May. How many clips did she sell?",
    "Is Sally a gerpus?",
    "Every rempus is a lempus. Every lempus is a sterpus. Alex is a rempus. Is Alex a sterpus or brimpus?",
]


def _model(tiny_tokenizer, num_codes=8):
    torch.manual_seed(0)
    tok = load_tokenizer(tiny_tokenizer)
    model = build_model(LLAMA, tok)
    vocab = extend_vocabulary(model, tok, num_codes)
    return model.eval(), tok, vocab


def test_split_generated_counts_codes_delimiters_and_text(tiny_tokenizer):
    _, tok, vocab = _model(tiny_tokenizer)
    text_ids = tok("### Tom is a yumpus.", add_special_tokens=False)["input_ids"]
    ids = [vocab.bo_id, vocab.code_to_id(3), vocab.code_to_id(7), vocab.eo_id, *text_ids, tok.eos_token_id, 5, 6]
    g = split_generated(ids, tok, vocab)
    assert g.token_ids == ids[: 4 + len(text_ids)]
    assert g.codes == [3, 7]
    assert (g.num_latent, g.num_delimiter, g.num_text) == (2, 2, len(text_ids))
    assert g.num_tokens == len(g.token_ids)
    assert g.text == "### Tom is a yumpus."
    assert g.written == "<boLatent><latent_3><latent_7><eoLatent>### Tom is a yumpus."
    # Without a latent vocabulary every token is text.
    plain = split_generated(text_ids, tok, None)
    assert (plain.codes, plain.num_latent, plain.num_text) == ([], 0, len(text_ids))


def test_latent_tokens_after_the_answer_marker_make_a_malformed_answer(tiny_tokenizer):
    """Answers are scored on what the model wrote: latent tokens before the answer marker are thinking,
    latent tokens (or delimiters) after it are not an answer."""
    from lm_latent.evaluation import is_correct

    _, tok, vocab = _model(tiny_tokenizer)

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    bo, eo, z5 = vocab.bo_id, vocab.eo_id, vocab.code_to_id(5)
    cases = {
        # latent thinking, then the answer in text: right
        "before": ([bo, z5, eo, *ids("### True")], True),
        # the example: latents between the marker and the answer
        "inside": ([*ids("### "), bo, z5, eo, *ids("True")], False),
        # latents after the answer
        "after": ([*ids("### True"), bo, z5, eo], False),
        # a delimiter alone after the marker
        "delimiter": ([*ids("### "), eo, *ids("True")], False),
        # a latent code alone after the marker
        "code": ([*ids("### "), z5, *ids("True")], False),
    }
    for name, (generated, right) in cases.items():
        g = split_generated(generated + [tok.eos_token_id], tok, vocab)
        assert g.text.replace(" ", "") == "###True", name  # the text alone hides where the latents were
        assert ("<latent_5>" in g.written) == (z5 in generated), name
        assert g.written.replace("<boLatent>", "").replace("<eoLatent>", "").replace("<latent_5>", "") == g.text, name
        for task in ("prontoqa", "prosqa"):
            assert is_correct(task, g.written, "True") is right, (name, task, g.written)
    g = split_generated([*ids("### "), bo, z5, eo, *ids("42")], tok, vocab)
    assert not is_correct("gsm8k", g.written, "42") and not is_correct("math", g.written, "42")
    assert is_correct("gsm8k", g.text, "42")  # what scoring the text alone (the old behaviour) said
    # Without latent tokens, written and text are the same string.
    plain = split_generated(ids("### True"), tok, vocab)
    assert plain.written == plain.text == "### True"


def test_batched_left_padded_generation_equals_one_at_a_time(tiny_tokenizer):
    model, tok, vocab = _model(tiny_tokenizer)
    prompts = [prompt_text(q) for q in QUESTIONS]
    batched = generate(model, tok, prompts, vocab, max_new_tokens=12, batch_size=4)
    single = generate(model, tok, prompts, vocab, max_new_tokens=12, batch_size=1)
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert all(isinstance(g, Generation) for g in batched)
    for g in batched:
        assert len(g.token_ids) <= 12
        assert g.num_latent + g.num_delimiter + g.num_text == len(g.token_ids)
        assert g.codes == [vocab.id_to_code(t) for t in g.token_ids if vocab.is_latent(t)]
        assert tok.eos_token_id not in g.token_ids


def test_greedy_matches_manual_argmax_decoding(tiny_tokenizer):
    model, tok, vocab = _model(tiny_tokenizer)
    prompt = prompt_text(QUESTIONS[0])
    (g,) = generate(model, tok, [prompt], vocab, max_new_tokens=6)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    with torch.no_grad():
        for _ in range(6):
            nxt = int(model(torch.tensor([ids + out])).logits[0, -1].argmax())
            if nxt in (tok.eos_token_id, tok.pad_token_id):
                break
            out.append(nxt)
    assert g.token_ids == out


def test_sampling_is_seeded_and_leaves_global_rng_alone(tiny_tokenizer):
    model, tok, vocab = _model(tiny_tokenizer)
    prompts = [prompt_text(q) for q in QUESTIONS[:3]]
    model.train()  # generation switches to eval mode and back
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = generate(model, tok, prompts, vocab, max_new_tokens=8, do_sample=True, top_k=10, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = generate(model, tok, prompts, vocab, max_new_tokens=8, do_sample=True, top_k=10, seed=7)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert model.training is True


def test_force_latent_opens_every_row_with_exactly_m_codes(tiny_tokenizer):
    """The m-forced diagnosis: <boLatent>, m codes the model picks, <eoLatent>, then text only, in every
    row of a left-padded batch (prompts of different lengths)."""
    model, tok, vocab = _model(tiny_tokenizer)
    prompts = [prompt_text(q) for q in QUESTIONS]
    for m in (1, 3):
        gens = generate(model, tok, prompts, vocab, max_new_tokens=m + 8, batch_size=4, force_latent=m)
        for g, prompt in zip(gens, prompts):
            head = g.token_ids[: m + 2]
            assert head[0] == vocab.bo_id and head[-1] == vocab.eo_id
            assert all(vocab.is_latent(t) for t in head[1:-1])
            assert not any(vocab.is_latent(t) or vocab.is_delimiter(t) for t in g.token_ids[m + 2 :])
            assert (g.num_latent, g.num_delimiter) == (m, 2)
            # Which codes is the model's greedy choice among the codes alone.
            ids = tok(prompt, add_special_tokens=False)["input_ids"] + [vocab.bo_id]
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0, -1]
            first = vocab.first_latent_id
            assert head[1] == first + int(logits[first : first + vocab.num_codes].argmax())
    with pytest.raises(ValueError, match="latent tokens"):
        generate(model, tok, prompts[:1], None, max_new_tokens=4, force_latent=1)


def test_force_latent_zero_decodes_text_only(tiny_tokenizer):
    """m = 0, how the text-only baselines are decoded: a model whose favourite token is a latent code
    writes text instead; without latent tokens m = 0 is plain decoding."""
    model, tok, vocab = _model(tiny_tokenizer)
    prompts = [prompt_text(q) for q in QUESTIONS]
    with torch.no_grad():  # tied embeddings: a huge code row makes that code every position's argmax
        model.get_output_embeddings().weight[vocab.code_to_id(2)] *= 1000.0
    free = generate(model, tok, prompts, vocab, max_new_tokens=4)
    assert all(vocab.code_to_id(2) in g.token_ids for g in free)
    for g in generate(model, tok, prompts, vocab, max_new_tokens=4, force_latent=0):
        assert (g.num_latent, g.num_delimiter) == (0, 0) and g.token_ids
    plain = generate(model, tok, prompts, None, max_new_tokens=4)
    assert [g.token_ids for g in generate(model, tok, prompts, None, max_new_tokens=4, force_latent=0)] == [g.token_ids for g in plain]


def test_force_latent_processor_masks_by_generated_position():
    vocab = LatentVocab(first_latent_id=10, num_codes=4, bo_id=14, eo_id=15)
    prompt = torch.zeros((2, 5), dtype=torch.long)
    scores = torch.zeros((2, 20))
    scores[:, 11] = 9.0  # a code is the model's favourite everywhere

    def allowed(processor, step: int) -> list[int]:
        out = processor(torch.cat([prompt, torch.ones((2, step), dtype=torch.long)], dim=1), scores)
        assert torch.equal(out[0], out[1])
        return torch.isfinite(out[0]).nonzero().flatten().tolist()

    two = ForceLatentCount(2, vocab, prompt_width=5)
    assert allowed(two, 0) == [14]
    assert allowed(two, 1) == allowed(two, 2) == [10, 11, 12, 13]
    assert allowed(two, 3) == [15]
    text_only = [i for i in range(20) if not 10 <= i <= 15]
    assert allowed(two, 4) == allowed(two, 9) == text_only
    zero = ForceLatentCount(0, vocab, prompt_width=5)
    assert allowed(zero, 0) == allowed(zero, 3) == text_only
    assert scores[0, 11] == 9.0  # the caller's scores are left alone
    with pytest.raises(ValueError, match=">= 0"):
        ForceLatentCount(-1, vocab, prompt_width=5)
