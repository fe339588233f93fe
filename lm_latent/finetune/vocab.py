"""Extend a causal LM with the K latent tokens and ``<boLatent>``/``<eoLatent>``.

The tokenizer side is :func:`lm_latent.mixing.tokens.add_latent_tokens`; this resizes the model to
match and initialises the new rows. Tied input/output embeddings stay one tensor (GPT-2, Llama with
``tie_word_embeddings=True``); untied models get both matrices extended. Rows of existing tokens are
copied unchanged, so the logits of every old token are exactly what they were.

New-row initialisation (``init``):

``mean`` (default)
    Every new row is the mean of the existing rows (of each matrix). The new tokens start as an
    "average token" that changes the output distribution over old tokens as little as possible.
``random``
    Normal noise with the existing rows' standard deviation, around zero (seeded).
``codebook``
    A projection of the stage-1 codebook vectors (K x D) into the model's H dimensions: centred, reduced
    to their principal coordinates (at most H of them), placed in H dimensions by a seeded random
    orthonormal map, rescaled so the rows spread around the mean row as much as the existing rows do,
    and added to the mean row. Distances between codes are preserved exactly up to one scale whenever
    the codebook spans at most H dimensions (otherwise the top-H principal subspace is kept), so
    similar codes start as similar tokens. The delimiters get the mean row.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lm_latent.mixing.tokens import LatentVocab, add_latent_tokens

NEW_TOKEN_INITS: tuple[str, ...] = ("mean", "random", "codebook")


def embeddings_tied(model) -> bool:
    out = model.get_output_embeddings()
    return out is not None and out.weight is model.get_input_embeddings().weight


def extend_vocabulary(
    model,
    tokenizer,
    num_codes: int,
    init: str = "mean",
    codebook_vectors: torch.Tensor | None = None,
    seed: int = 0,
) -> LatentVocab:
    """Add the latent tokens to ``tokenizer`` and ``model`` (in place); return their layout."""
    if init not in NEW_TOKEN_INITS:
        raise ValueError(f"unknown new-token init '{init}'; choose one of {', '.join(NEW_TOKEN_INITS)}")
    if init == "codebook":
        if codebook_vectors is None:
            raise ValueError("init='codebook' needs the codebook vectors (codebook_vectors=...)")
        if codebook_vectors.ndim != 2 or codebook_vectors.shape[0] != num_codes:
            raise ValueError(
                f"codebook vectors have shape {tuple(codebook_vectors.shape)}; expected ({num_codes}, D)"
            )
    vocab = add_latent_tokens(tokenizer, num_codes)
    tied = embeddings_tied(model)
    rows = model.get_input_embeddings().weight.shape[0]
    needed = max(len(tokenizer), vocab.eo_id + 1, vocab.bo_id + 1)
    if needed > rows:
        # mean_resizing=False: HF's own init samples a full-covariance Gaussian (slow for large d and
        # random); the rows are set below instead.
        model.resize_token_embeddings(needed, mean_resizing=False)
    if tied and not embeddings_tied(model):
        raise RuntimeError("resizing untied the input and output embeddings")
    if model.get_input_embeddings().weight.is_meta:
        return vocab  # shapes only: the weights get their values where they are materialised or loaded
    # Seeded draws come from a CPU generator whatever device the model is built on (a Lightning
    # strategy's init context may make CUDA the default device), so the new rows depend on the seed only.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    latent_ids = vocab.code_ids
    delim_ids = torch.tensor([vocab.bo_id, vocab.eo_id], device="cpu")
    matrices = [model.get_input_embeddings()]
    if not tied and model.get_output_embeddings() is not None:
        matrices.append(model.get_output_embeddings())
    with torch.no_grad():
        for module in matrices:
            _init_rows(module, vocab.first_latent_id, latent_ids, delim_ids, init, codebook_vectors, generator)
    return vocab


def _init_rows(module, num_old: int, latent_ids, delim_ids, init, codebook_vectors, generator) -> None:
    weight = module.weight
    old = weight[:num_old].float()
    mean = old.mean(dim=0)
    new_ids = torch.cat([latent_ids, delim_ids])

    def draw(*shape: int) -> torch.Tensor:  # float32 on the CPU generator, also under another default dtype
        return torch.randn(*shape, generator=generator, device="cpu", dtype=torch.float32).to(weight.device)

    if init == "mean":
        values = mean.expand(len(new_ids), -1)
    elif init == "random":
        values = draw(len(new_ids), weight.shape[1]) * old.std()
    else:
        vectors = codebook_vectors.to(weight.device, torch.float32)
        centred = vectors - vectors.mean(dim=0)
        u, s, _ = torch.linalg.svd(centred, full_matrices=False)
        m = min(len(s), weight.shape[1])
        coords = u[:, :m] * s[:m]  # principal coordinates: same pairwise distances as the codebook
        basis, _ = torch.linalg.qr(draw(weight.shape[1], m))  # H x m orthonormal
        projected = coords @ basis.T
        # Match the spread of the existing rows around their mean (root-mean-square row distance).
        target = (old - mean).pow(2).sum(dim=1).mean().sqrt()
        current = projected.pow(2).sum(dim=1).mean().sqrt().clamp_min(1e-12)
        latent_rows = mean + projected * (target / current)
        # The delimiters have no codebook vector: the mean row plus a little noise, so <boLatent> and
        # <eoLatent> do not start as one token with two ids.
        delims = mean + 0.1 * old.std() * draw(len(delim_ids), weight.shape[1])
        values = torch.cat([latent_rows, delims])
    new_ids = new_ids.to(weight.device)
    weight[new_ids] = values.to(weight.dtype)
    bias = getattr(module, "bias", None)
    if bias is not None:
        bias[new_ids] = bias[:num_old].mean()


def load_codebook_vectors(path: str | Path, num_codes: int) -> torch.Tensor:
    """Read the K x D codebook from a stage-1 file.

    Accepts a file holding the tensor itself, a dict with a ``codebook`` entry, or a checkpoint whose
    ``state_dict`` has a codebook tensor (a key ending in ``codebook``/``embed``, e.g.
    vector-quantize-pytorch's ``_codebook.embed`` of shape (1, K, D)).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"codebook file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    candidates: list[tuple[str, torch.Tensor]] = []
    if isinstance(obj, torch.Tensor):
        candidates.append(("<tensor>", obj))
    elif isinstance(obj, dict):
        tables = [obj, obj.get("state_dict", {})]
        for table in tables:
            if not isinstance(table, dict):
                continue
            for key, value in table.items():
                if isinstance(value, torch.Tensor) and str(key).split(".")[-1] in ("codebook", "embed"):
                    candidates.append((str(key), value))
    for key, tensor in candidates:
        t = tensor.squeeze(0) if tensor.ndim == 3 and tensor.shape[0] == 1 else tensor
        if t.ndim == 2 and t.shape[0] == num_codes:
            return t.detach().float()
    found = ", ".join(f"{k} {tuple(v.shape)}" for k, v in candidates) or "no tensor named codebook/embed"
    raise ValueError(f"{path}: no codebook of {num_codes} vectors found ({found})")
