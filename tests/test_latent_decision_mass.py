"""``latent_decision: mass``: inside a latent run greedy decoding goes on with a code when the codes
together outweigh ``<eoLatent>``, even when ``<eoLatent>`` beats every single code; outside a run
nothing changes."""

from __future__ import annotations

import pytest
import torch

from lm_latent.finetune.generation import LatentRunByMass
from lm_latent.mixing.tokens import LatentVocab


def _vocab() -> LatentVocab:
    # ids: 0..9 text, 10..13 codes, 14 <boLatent>, 15 <eoLatent>
    return LatentVocab(num_codes=4, first_latent_id=10, bo_id=14, eo_id=15)


def _scores(eo: float, each_code: float, text: float) -> torch.Tensor:
    p = torch.full((16,), text)
    p[10:14], p[15] = each_code, eo
    p[14] = 1e-6
    return (p / p.sum()).log().unsqueeze(0)


def test_codes_together_beat_a_likelier_eo():
    proc = LatentRunByMass(_vocab())
    scores = _scores(eo=0.30, each_code=0.15, text=0.001)  # eo beats each code, the four codes beat eo
    out = proc(torch.tensor([[3, 14, 11]]), scores)          # after <boLatent> and one code
    assert out.argmax(-1).item() in range(10, 14)
    assert out[0, 15] == float("-inf") and torch.isinf(out[0, :10]).all()
    assert torch.equal(out[0, 10:14], scores[0, 10:14])     # the code itself is still greedy's pick


def test_eo_beats_codes_together():
    proc = LatentRunByMass(_vocab())
    out = proc(torch.tensor([[3, 14]]), _scores(eo=0.6, each_code=0.09, text=0.001))
    assert out.argmax(-1).item() == 15 and torch.isinf(out[0, 10:14]).all()


def test_outside_a_run_nothing_changes():
    proc = LatentRunByMass(_vocab())
    scores = _scores(eo=0.30, each_code=0.15, text=0.001)
    assert torch.equal(proc(torch.tensor([[3, 15]]), scores), scores)   # after <eoLatent>
    assert torch.equal(proc(torch.tensor([[3, 4]]), scores), scores)    # after text


def test_rows_decide_on_their_own():
    proc = LatentRunByMass(_vocab())
    scores = torch.cat([_scores(0.30, 0.15, 0.001), _scores(0.6, 0.09, 0.001), _scores(0.30, 0.15, 0.001)])
    out = proc(torch.tensor([[3, 12], [3, 14], [3, 5]]), scores)
    assert out[0].argmax().item() in range(10, 14)
    assert out[1].argmax().item() == 15
    assert torch.equal(out[2], scores[2])


def test_mass_is_for_free_greedy_decoding_only():
    from lm_latent.finetune.generation import generate

    with pytest.raises(ValueError, match="latent_decision"):
        generate(None, None, ["q"], _vocab(), latent_decision="mass", force_latent=1)
    with pytest.raises(ValueError, match="latent_decision"):
        generate(None, None, ["q"], _vocab(), latent_decision="sum")


def test_an_evaluation_set_checks_its_latent_decision():
    from lm_latent.evaluation.callbacks import AccuracyCallback

    assert AccuracyCallback("prosqa", file="valid.json", latent_decision="mass").latent_decision == "mass"
    with pytest.raises(ValueError, match="latent_decision"):
        AccuracyCallback("prosqa", file="valid.json", latent_decision="sum")
    with pytest.raises(ValueError, match="latent_decision"):
        AccuracyCallback("prosqa", file="valid.json", latent_decision="mass", decoding="top_k")
