"""Shared fixtures: the staged datasets (../shared/data) and one small trained tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

# The staged data sits next to the repository, never inside it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _tokenizer_corpus() -> list[str]:
    """Deterministic texts in the shape of the real data: logic chains, word problems, LaTeX."""
    names = ["Tom", "Sally", "Alex", "Davis", "Stella"]
    kinds = ["wumpus", "yumpus", "zumpus", "rempus", "gerpus", "lempus", "sterpus", "brimpus"]
    texts = []
    for i in range(200):
        a, b, c = kinds[i % 8], kinds[(i + 3) % 8], kinds[(i + 5) % 8]
        who = names[i % 5]
        texts.append(
            f"Every {a} is a {b}. Every {b} is a {c}. {who} is a {a}. Is {who} a {c} or {kinds[(i + 1) % 8]}?\n"
            f"{who} is a {a}.\nEvery {a} is a {b}.\n### {who} is a {c}."
        )
        x, y = 3 + i % 17, 5 + i % 11
        texts.append(
            f"Natalia sold {x} clips in April and {y} in May. How many clips did she sell?\n"
            f"She sold {x} + {y} = {x + y} clips.\n### {x + y}"
        )
        texts.append(f"What is $\\frac{{{x}}}{{{y}}} + {i}$?\nWe have $x = \\sqrt{{{x}^2}}$.\n### \\boxed{{{x}}}")
    return texts


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The staged datasets folder; tests that need it are skipped where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"staged data not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory) -> Path:
    """Directory of a small byte-level BPE (vocab <= 512) trained once per session, offline."""
    from lm_latent.data.tokenization import train_tokenizer

    out = tmp_path_factory.mktemp("tiny_tokenizer")
    train_tokenizer(_tokenizer_corpus(), out, vocab_size=512)
    return out
