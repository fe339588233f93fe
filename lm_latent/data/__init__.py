"""Data: one canonical example schema, readers for every staged dataset, generators, tokenization."""

from lm_latent.data.errors import DataError
from lm_latent.data.example import Example

__all__ = ["DataError", "Example"]
