"""The symbolic tokenizer of the maze task: one token per keyword, number, cost, key set and colour.

Searchformer's scheme: every whitespace-separated word of a maze text is one token, so a coordinate
is always one id and a model never has to assemble it from pieces. The vocabulary is a function of
the largest grid side and the number of colours, not of token frequencies:

    specials       <|endoftext|> <|pad|> <|unk|>      (end of text, padding, anything unknown)
    layout         "\\n" "###"                          (segment separator, answer marker)
    keywords       size start goal wall key door plan create pickup open close
    key sets       none red blue red+blue ...            (every subset; one colour is also a colour name)
    numbers        0 ... max_side                        (coordinates, and the grid size)
    costs          c0 ... c{max_side ** 2}               (g and h of the trace; see the generator)

It is a standard Hugging Face fast tokenizer (a ``tokenizers`` WordLevel model; pre-tokenizer and
decoder are serialised in ``tokenizer.json``), so ``AutoTokenizer`` loads it and stage 1, stage 2,
export and the notebook use it unchanged. Decoding joins the words with single spaces and puts no
space around a newline, which gives back every maze text exactly: segments are
``question "\\n"``, ``step "\\n"`` and ``"### " answer`` (``lm_latent.data.tokenization``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from lm_latent.data.maze.plans import PLAN
from lm_latent.data.maze.world import COLOURS, key_set_tokens

UNK = "<|unk|>"
KEYWORDS = ("size", "start", "goal", "wall", "key", "door", PLAN, "create", "pickup", "open", "close")
ANSWER_MARK = "###"
# WordPiece's decoder glues a word starting with its prefix to the previous one; no maze word starts
# with this character, so every word is joined with a space (its default "##" would eat "###").
_NO_CONTINUATION = "\u2060"

_COST = re.compile(r"c(\d+)")


def maze_vocabulary(max_side: int, colours: int) -> list[str]:
    """Every word a maze text of grids up to ``max_side`` with ``colours`` colours can hold, in id order."""
    if max_side < 1 or not 0 <= colours <= len(COLOURS):
        raise ValueError(f"need max_side >= 1 and colours in 0..{len(COLOURS)}, got {max_side}, {colours}")
    sets = key_set_tokens(colours)
    words = ["\n", ANSWER_MARK, *KEYWORDS, *sets, *[c for c in COLOURS[:colours] if c not in sets]]
    words += [str(n) for n in range(max_side + 1)]
    words += [f"c{n}" for n in range(max_side * max_side + 1)]
    return words


def fit_vocabulary(texts: Iterable[str]) -> tuple[int, int]:
    """(max_side, colours) that cover ``texts``: the largest number, and the last colour they name."""
    max_side, colours = 1, 0
    for text in texts:
        for word in text.split():
            if word.isdigit():
                max_side = max(max_side, int(word))
            for i, colour in enumerate(COLOURS):
                if colour in word.split("+"):
                    colours = max(colours, i + 1)
    return max_side, colours


def build_maze_tokenizer(max_side: int, colours: int, special_tokens: Iterable[str] = ()):
    """A ``tokenizers.Tokenizer`` over :func:`maze_vocabulary` (specials first)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    vocab = maze_vocabulary(max_side, colours)
    specials = [s for s in [*special_tokens, UNK] if s not in vocab]
    ids = {tok: i for i, tok in enumerate(dict.fromkeys(specials + vocab))}
    tk = Tokenizer(models.WordLevel(vocab=ids, unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),  # a newline is a word of its own
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),  # other whitespace separates
        ]
    )
    tk.decoder = decoders.Sequence(
        [
            decoders.WordPiece(prefix=_NO_CONTINUATION, cleanup=False),  # words joined by single spaces
            decoders.Fuse(),
            decoders.Replace(" \n", "\n"),
            decoders.Replace("\n ", "\n"),
        ]
    )
    return tk


def train_maze_tokenizer(
    texts: Iterable[str],
    out_dir: str | Path,
    special_tokens: tuple[str, str],
    max_side: int | None = None,
    colours: int | None = None,
):
    """Save the maze tokenizer as a standard HF tokenizer directory; ``special_tokens`` is (eos, pad).

    The grid side and colour count are read from ``texts`` unless given; a word of ``texts`` outside
    the vocabulary (a cost above ``max_side ** 2``, a malformed word) is an error, not an ``<|unk|>``.
    """
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    fitted = fit_vocabulary(texts)
    max_side = fitted[0] if max_side is None else max_side
    colours = fitted[1] if colours is None else colours
    known = set(maze_vocabulary(max_side, colours))
    for text in texts:
        unknown = sorted({w for w in text.split() if w not in known})
        if unknown:
            raise ValueError(
                f"maze tokenizer (max_side {max_side}, {colours} colours): words outside the vocabulary "
                f"{unknown[:5]} in {text[:80]!r}"
            )
    eos, pad = special_tokens
    tk = build_maze_tokenizer(max_side, colours, special_tokens)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token=eos, pad_token=pad, unk_token=UNK, clean_up_tokenization_spaces=False
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast
