"""A word-level tokenizer for closed-vocabulary tasks (ProsQA, ProntoQA): one token per word and
punctuation mark, and, optionally, one token per *concept* whatever its surface form.

Why: small models trained from scratch learn these tasks only when an entity is one token (BPE splits
invented names like "brimpus" into pieces, so copying a name becomes multi-token prefix matching).
Beyond that, "Tumpuses", "tumpuses" and "tumpus" are one concept; as three unrelated ids, copying a
concept from the question also needs a learned mapping between its forms. With ``split_forms``
a capital and a plural ending become tokens of their own, so the concept is the same id everywhere:

    "Tumpuses are gorpuses."  ->  ⇧ tumpus ⁺es are gorpus ⁺es .
    "Every tumpus is a gorpus." ->  Every tumpus is a gorpus .

Which words split is read from the training text, not hard-coded: a capitalised word splits when its
lower-case form (or that form's singular) occurs, a plural when its singular occurs ("Every" and
"Alex" stay whole because "every" and "alex" never occur).

It is a standard Hugging Face fast tokenizer (a ``tokenizers`` WordPiece model; normalizer,
pre-tokenizer and decoder are all serialised in ``tokenizer.json``), so ``AutoTokenizer`` loads it
and stage 1, stage 2, export and the notebook use it unchanged. Words never seen in training fall
back to single characters (``⁺`` continuations), so nothing becomes ``[UNK]`` that is made of known
characters.

Lossless on text with ordinary spacing: single spaces between words, none before ``. , ? : ! ;``,
none around newlines. Decoding rebuilds exactly that; ``round_trip_failures`` counts texts that do
not come back byte for byte (every staged ProsQA/ProntoQA file comes back exactly; see the tests).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable

CAP = "⇧"  # marks that the next word starts with a capital letter
CONT = "⁺"  # continuation prefix (WordPiece's "##" would clash with the "###" answer marker)
PLURAL_ENDINGS = ("es", "s")  # longest first
PUNCT = ".,?:!;"
UNK = "[UNK]"

_WORD = re.compile(r"[^\W\d_]+|\d+|[^\w\s]+|\n")


def _words(texts: Iterable[str]) -> Counter:
    counts: Counter = Counter()
    for t in texts:
        counts.update(_WORD.findall(t))
    return counts


def _singular(word: str, known: set[str]) -> tuple[str, str] | None:
    for ending in PLURAL_ENDINGS:
        if word.endswith(ending) and word[: -len(ending)] in known:
            return word[: -len(ending)], ending
    return None


def plan_vocabulary(texts: Iterable[str], split_forms: bool = True) -> tuple[list[str], list[str]]:
    """Vocabulary (whole words, punctuation, characters, ``⁺`` endings and characters) and the
    capitalised words that split into ``⇧`` + lower case. Deterministic: sorted, not frequency-ranked."""
    counts = _words(texts)
    lower = {w for w in counts if w.islower()}
    capitals: list[str] = []
    whole: set[str] = set()
    endings: set[str] = set()
    for w in counts:
        base = w
        if split_forms and w[:1].isupper() and w[1:].islower():
            low = w[0].lower() + w[1:]
            if low in lower or _singular(low, lower):
                capitals.append(w)
                base = low
        plural = _singular(base, lower) if split_forms and base.islower() else None
        if plural:
            whole.add(plural[0])
            endings.add(CONT + plural[1])
        else:
            whole.add(base)
    chars = sorted({c for w in counts for c in w if c != "\n"})
    vocab = [UNK, CAP, "\n"] + sorted(whole - {"\n"}) + sorted(endings)
    vocab += [c for c in chars if c not in vocab] + [CONT + c for c in chars if CONT + c not in vocab]
    return vocab, sorted(capitals)


def build_word_tokenizer(texts: Iterable[str], split_forms: bool = True, special_tokens: Iterable[str] = ()):
    """A ``tokenizers.Tokenizer`` over the words of ``texts`` (see the module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab, capitals = plan_vocabulary(texts, split_forms)
    specials = [s for s in special_tokens if s not in vocab]
    ids = {tok: i for i, tok in enumerate(specials + vocab)}
    tk = Tokenizer(models.WordPiece(vocab=ids, unk_token=UNK, continuing_subword_prefix=CONT, max_input_chars_per_word=100))
    if capitals:
        # "Tumpuses" -> "⇧ tumpuses": one rule per capitalised word that has a lower-case form.
        tk.normalizer = normalizers.Sequence(
            [normalizers.Replace(Regex(rf"\b{w}\b"), f"{CAP} {w[0].lower()}{w[1:]}") for w in capitals]
        )
    tk.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
            pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
            pre_tokenizers.Split(Regex(r"[^\w\s]+|\d+"), behavior="isolated"),
        ]
    )
    # Decode: WordPiece joins words with spaces (and "⁺es" to its word), then the spacing rules of
    # ordinary text are restored and each "⇧ x" becomes "X".
    letters = sorted({w[0].lower() for w in capitals})
    tk.decoder = decoders.Sequence(
        [decoders.WordPiece(prefix=CONT, cleanup=False), decoders.Fuse()]
        + [decoders.Replace(f" {p}", p) for p in PUNCT]
        + [decoders.Replace(" \n", "\n"), decoders.Replace("\n ", "\n")]
        + [decoders.Replace(f"{CAP} {c}", c.upper()) for c in letters]
    )
    return tk


def train_word_tokenizer(texts: Iterable[str], out_dir: str | Path, special_tokens: tuple[str, str], split_forms: bool = True):
    """Build the word tokenizer on ``texts`` and save it as a standard HF tokenizer directory.
    ``special_tokens`` is (eos, pad)."""
    from transformers import PreTrainedTokenizerFast

    eos, pad = special_tokens
    tk = build_word_tokenizer(list(texts), split_forms=split_forms, special_tokens=special_tokens)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=eos, pad_token=pad, unk_token=UNK)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast


def round_trip_failures(tokenizer, texts: Iterable[str]) -> list[str]:
    """The texts that do not decode back to themselves byte for byte."""
    texts = list(texts)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [t for t, i in zip(texts, ids) if tokenizer.decode(i, clean_up_tokenization_spaces=False) != t]
