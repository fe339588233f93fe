"""Encoding: a dataset's CoTs -> one code per chunk, left to right, cached on disk.

    table = encode_dataset("runs/codebook/checkpoints/last.ckpt", "gsm8k", "../shared/data/gsm8k/train.jsonl",
                           "runs/tokenizer", cache_dir="runs/codes")
    table["gsm8k:0"]   # [17, 3, 250, ...]; the last chunk may be shorter than L

The cache file is named by a digest of everything the codes depend on: the checkpoint (its content
hash, or size + mtime + path for very large files), the data file's content, every tokenizer file,
the dataset reader, L, K and the context mode. A changed input therefore never reuses a stale table.
The table records the data file and its digest, and the ``split`` it is for when given, so stage 2
can refuse it for another file (see :func:`lm_latent.codebook.codes_file.check_codes_source`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import torch

from lm_latent.codebook.codes_file import SPLITS, CodeTable, load_codes, save_codes
from lm_latent.digests import file_digest
from lm_latent.codebook.datamodule import pad_batch
from lm_latent.codebook.module import CodebookAutoencoder
from lm_latent.codebook.quantizer import vq_library_version
from lm_latent.data.example import Example
from lm_latent.data.tokenization import load_tokenizer, tokenize_examples

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when encoding changes meaning, so old caches are never reused
_HASH_CONTENT_UP_TO = 512 * 2**20  # checkpoints larger than this are keyed by size + mtime + path


def checkpoint_fingerprint(path: str | Path) -> str:
    path = Path(path)
    st = path.stat()
    if st.st_size <= _HASH_CONTENT_UP_TO:
        return "sha256:" + file_digest(path)
    return f"stat:{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def tokenizer_digest(tokenizer_dir: str | Path) -> str:
    root = Path(tokenizer_dir)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode() + b"\0" + file_digest(p).encode())
    return h.hexdigest()


def load_codebook(checkpoint: str | Path, device: str | torch.device = "cpu") -> CodebookAutoencoder:
    """A trained codebook autoencoder from its checkpoint alone, in eval mode."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"codebook checkpoint not found: {checkpoint}")
    model = CodebookAutoencoder.load_from_checkpoint(str(checkpoint), map_location=device, weights_only=True)
    return model.eval()


def check_tokenizer(model: CodebookAutoencoder, tokenizer, tokenizer_dir: str | Path) -> None:
    hp = model.hparams
    if len(tokenizer) != hp.vocab_size or tokenizer.pad_token_id != hp.pad_id or tokenizer.eos_token_id != hp.eos_id:
        raise ValueError(
            f"{tokenizer_dir}: tokenizer (vocab {len(tokenizer)}, pad {tokenizer.pad_token_id}, eos "
            f"{tokenizer.eos_token_id}) is not the one the codebook was trained with (vocab {hp.vocab_size}, "
            f"pad {hp.pad_id}, eos {hp.eos_id}; trained with {hp.tokenizer_dir})"
        )


@torch.inference_mode()
def encode_examples(
    model: CodebookAutoencoder, tokenizer, examples: Sequence[Example], batch_size: int = 4096
) -> dict[str, list[int]]:
    """Codes of every example's CoT chunks, left to right (an example without CoT gets ``[]``).

    All chunks of all examples are encoded together in batches: the encoder sees one chunk (plus, in
    the previous-text ablation, the true CoT before it, and with ``encoder_reads_prompt`` its
    prompt, left-truncated as in training), so chunks are independent.
    """
    net, L = model.net, model.hparams.chunk_size
    max_ctx = model.hparams.max_context_tokens
    device = next(model.parameters()).device
    tokenized, _ = tokenize_examples(tokenizer, examples)
    owners, chunks, contexts = [], [], []
    for i, t in enumerate(tokenized):
        cot = t.cot_ids
        for start in range(0, len(cot), L):
            owners.append(i)
            chunks.append(cot[start : start + L])
            if net.uses_context:
                contexts.append(cot[max(0, start - max_ctx) : start])
    codes: list[int] = []
    pad = model.hparams.pad_id
    max_prompt = model.hparams.max_prompt_tokens
    for b in range(0, len(chunks), batch_size):
        ids, mask = pad_batch(chunks[b : b + batch_size], pad, L)
        ctx = {}
        if net.uses_context:
            c_ids, c_mask = pad_batch(contexts[b : b + batch_size], pad)
            ctx = {"context_ids": c_ids.to(device), "context_mask": c_mask.to(device)}
        if net.reads_prompt:
            rows = sorted(set(owners[b : b + batch_size]))
            row_of = {owner: r for r, owner in enumerate(rows)}
            p_ids, p_mask = pad_batch([tokenized[o].prompt_ids[-max_prompt:] for o in rows], pad)
            chunk_example = torch.tensor([row_of[o] for o in owners[b : b + batch_size]], device=device)
            ctx["prompt"] = net.chunk_prompts(p_ids.to(device), p_mask.to(device), chunk_example)
        vectors = net.encode(ids.to(device), mask.to(device), **ctx)
        codes.extend(net.quantizer(vectors).codes.tolist())
    out: dict[str, list[int]] = {ex.id: [] for ex in examples}
    for owner, code in zip(owners, codes):
        out[examples[owner].id].append(code)
    return out


def encode_dataset(
    checkpoint: str | Path,
    dataset: str,
    data_file: str | Path,
    tokenizer_dir: str | Path,
    cache_dir: str | Path,
    batch_size: int = 4096,
    device: str = "cpu",
    split: str | None = None,
) -> CodeTable:
    """Codes for every example of ``data_file`` (read with the ``dataset`` reader), cached under
    ``cache_dir``: a second call with the same inputs reads the cache; any changed input re-encodes.
    ``split`` (``train``, ``val`` or ``test``) is recorded in the returned table's provenance; it is
    a label of the use, not an input of the codes, so it does not key the cache."""
    from lm_latent.data.readers import read_examples

    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")

    for what, p in (("checkpoint", checkpoint), ("data file", data_file)):
        if not Path(p).is_file():
            raise FileNotFoundError(f"{what} not found: {p}")
    tokenizer = load_tokenizer(tokenizer_dir)
    model = load_codebook(checkpoint, device)
    check_tokenizer(model, tokenizer, tokenizer_dir)
    hp = model.hparams
    provenance = {
        "format": CACHE_FORMAT,
        "checkpoint": str(Path(checkpoint).resolve()),
        "checkpoint_fingerprint": checkpoint_fingerprint(checkpoint),
        "dataset": dataset,
        "data_file": str(Path(data_file).resolve()),
        "data_sha256": file_digest(data_file),
        "tokenizer_dir": str(Path(tokenizer_dir).resolve()),
        "tokenizer_sha256": tokenizer_digest(tokenizer_dir),
        "chunk_size": int(hp.chunk_size),
        "num_codes": int(hp.codebook_size),
        "context": hp.context,
    }
    keyed = {k: v for k, v in provenance.items() if k not in ("checkpoint", "data_file", "tokenizer_dir")}
    key = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()
    path = Path(cache_dir) / f"{dataset}-{Path(data_file).stem}-{key[:24]}.codes.json"
    if path.is_file():
        table = load_codes(path)
        if table.provenance.get("cache_key") == key:
            log.info("latent codes: reusing %s", path)
            return _for_split(table, split)
    examples = read_examples(dataset, data_file)
    codes = encode_examples(model, tokenizer, examples, batch_size=batch_size)
    table = CodeTable(
        int(hp.codebook_size),
        int(hp.chunk_size),
        codes,
        {**provenance, "cache_key": key, "vector_quantize_pytorch": vq_library_version()},
    )
    save_codes(path, table)
    log.info("latent codes: %d examples, %d chunks -> %s", len(codes), sum(map(len, codes.values())), path)
    return _for_split(table, split)


def _for_split(table: CodeTable, split: str | None) -> CodeTable:
    provenance = {k: v for k, v in table.provenance.items() if k != "split"}
    if split is not None:
        provenance["split"] = split
    return CodeTable(table.num_codes, table.chunk_size, table.codes, provenance)

