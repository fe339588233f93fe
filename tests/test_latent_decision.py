"""The latent-run probe (experiments/probes/latent_decision.py) reads each decision at the right
position: the masses after j codes are those of the model's next token given the question,
``<boLatent>`` and exactly those j codes."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lm_latent.data.tokenization import load_tokenizer, prompt_text
from lm_latent.finetune.model import build_model
from lm_latent.finetune.vocab import extend_vocabulary

PROBES = Path(__file__).resolve().parents[1] / "experiments" / "probes"
LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
         "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256}


def test_each_decision_is_the_next_token_after_that_many_codes(tiny_tokenizer):
    sys.path.insert(0, str(PROBES))
    try:
        from latent_decision import decisions
    finally:
        sys.path.pop(0)
    torch.manual_seed(0)
    tok = load_tokenizer(tiny_tokenizer)
    model = build_model(LLAMA, tok).eval()
    vocab = extend_vocabulary(model, tok, 8)
    with torch.no_grad():  # far from uniform, so neighbouring positions predict visibly different tokens
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    question, codes = "Every wumpus is a yumpus. Tom is a wumpus. Is Tom a yumpus or zumpus?", [3, 5, 1]

    got = decisions(model, tok, vocab, question, codes)

    prompt = tok(prompt_text(question), add_special_tokens=False)["input_ids"]
    assert [d["codes_written"] for d in got] == [1, 2, 3]
    for j, d in enumerate(got, start=1):
        ids = prompt + [vocab.bo_id] + [vocab.code_to_id(c) for c in codes[:j]]
        with torch.no_grad():
            p = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
        code_p = p[vocab.first_latent_id : vocab.first_latent_id + vocab.num_codes]
        assert abs(d["eo"] - p[vocab.eo_id].item()) < 1e-5
        assert abs(d["codes"] - code_p.sum().item()) < 1e-5
        assert abs(d["top_code"] - code_p.max().item()) < 1e-5
        assert d["top_code"] <= d["codes"] and d["eo"] + d["codes"] <= 1 + 1e-5
