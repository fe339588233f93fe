"""The latent vocabulary: K code tokens plus the <boLatent>/<eoLatent> delimiters.

They are *added tokens* of the tokenizer (``<latent_0>`` ... ``<latent_{K-1}>``), so an exported model
directory is a standard Hugging Face one that plain ``transformers`` loads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BO_LATENT = "<boLatent>"
EO_LATENT = "<eoLatent>"


def latent_token(code: int) -> str:
    return f"<latent_{code}>"


@dataclass(frozen=True)
class LatentVocab:
    """Where the latent tokens live in the extended vocabulary (ids are contiguous)."""

    first_latent_id: int
    num_codes: int
    bo_id: int
    eo_id: int

    @property
    def code_ids(self) -> torch.Tensor:
        """The K code tokens' ids, in code order. On the CPU whatever the default device (a strategy's
        init context may make it CUDA): callers move it where they use it."""
        return torch.arange(self.first_latent_id, self.first_latent_id + self.num_codes, device="cpu")

    def code_to_id(self, code: int) -> int:
        if not 0 <= code < self.num_codes:
            raise ValueError(f"code {code} outside codebook of size {self.num_codes}")
        return self.first_latent_id + code

    def id_to_code(self, token_id: int) -> int | None:
        code = token_id - self.first_latent_id
        return code if 0 <= code < self.num_codes else None

    def is_latent(self, token_id):
        """Whether ``token_id`` is a latent code token; elementwise for a tensor of ids."""
        code = token_id - self.first_latent_id
        return (code >= 0) & (code < self.num_codes)

    def is_delimiter(self, token_id: int) -> bool:
        return token_id in (self.bo_id, self.eo_id)


def add_latent_tokens(tokenizer, num_codes: int) -> LatentVocab:
    """Add (idempotently) the K latent tokens and the two delimiters to ``tokenizer``."""
    names = [latent_token(i) for i in range(num_codes)] + [BO_LATENT, EO_LATENT]
    existing = tokenizer.get_vocab()
    if not all(n in existing for n in names):
        tokenizer.add_tokens(names, special_tokens=True)
    return latent_vocab_of(tokenizer, num_codes)


def latent_vocab_of(tokenizer, num_codes: int) -> LatentVocab:
    """Read the latent layout back from a tokenizer that already has the tokens."""
    ids = tokenizer.convert_tokens_to_ids([latent_token(i) for i in range(num_codes)])
    first = ids[0]
    if ids != list(range(first, first + num_codes)):
        raise ValueError("latent tokens are not contiguous in this tokenizer; was it extended twice?")
    bo, eo = tokenizer.convert_tokens_to_ids([BO_LATENT, EO_LATENT])
    unk = tokenizer.unk_token_id
    if unk is not None and unk in (first, bo, eo):
        raise ValueError(f"tokenizer lacks latent tokens for a codebook of size {num_codes}")
    return LatentVocab(first, num_codes, bo, eo)
