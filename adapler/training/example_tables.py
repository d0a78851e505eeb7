"""Per-example tables computed once from frozen checkpoints: the saliency targets and the teacher logits.

Both are a pure function of checkpoint weights, tokenizer, max length and examples, so both are stored under
a content hash of exactly those (``<kind>-<key>.safetensors``) and reused by every later run and resume.
Under torchrun each rank computes a contiguous share of the examples; the shares are gathered on every rank
and rank 0 writes the file.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..data import Example
from ..files import file_sha256
from ..progress import log
from .distributed import TrainEnv

Table = dict[str, torch.Tensor]


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer's full definition (vocabulary, normaliser, special tokens) as a hash."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{text}".encode()).hexdigest()


def cache_key(checkpoints: list[Path], examples: list[Example], tokenizer, max_length: int) -> str:
    """Content address of a table: the weights' bytes, the tokenizer, the max length and every example's
    id, texts and label (order-free). Paths, file names and mtimes play no part, so a different file
    with the same name and line count never reuses a table, and a copied checkpoint still does."""
    h = hashlib.sha256()
    for c in checkpoints:
        h.update(file_sha256(Path(c) / "model.safetensors").encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(str(max_length).encode())
    for row in sorted(json.dumps([e.id, e.text, e.text_pair, e.label], ensure_ascii=False) for e in examples):
        h.update(row.encode())
    return h.hexdigest()[:16]


def cached_table(kind: str, label: str, checkpoints: list[Path], examples: list[Example], tokenizer, max_length: int,
                 cache_dir: str | Path, compute: Callable[[list[Example]], Table],
                 env: TrainEnv | None = None) -> Table:
    """id -> tensor for every example: read from ``cache_dir/<kind>-<key>.safetensors``, or made by
    ``compute`` (this rank's share of ``examples`` -> its rows) and written there. ``label`` names the
    table in the log."""
    env = env or TrainEnv()
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{kind}-{cache_key(checkpoints, examples, tokenizer, max_length)}.safetensors"
    if path.exists():
        log(f"{label}: reusing {path}")
        return load_table(path)
    lo, hi = len(examples) * env.rank // env.world_size, len(examples) * (env.rank + 1) // env.world_size
    table = compute(examples[lo:hi]) if hi > lo else {}
    if env.distributed:
        table = {i: v for part in env.all_gather(table) for i, v in part.items()}
        table = {e.id: table[e.id] for e in examples}  # the one-process order, so the file is the same
    if env.main:
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_table(path, table, {"checkpoints": [str(c) for c in checkpoints], "max_length": max_length})
        log(f"{label}: {len(table)} examples from {len(checkpoints)} checkpoint(s) -> {path}")
    return table


def save_table(path: Path, table: Table, meta: dict) -> None:
    """Rows of any length, flattened; written to a per-process temporary name first, since concurrent runs
    may share a cache directory."""
    ids = list(table)
    lengths = torch.tensor([len(table[i]) for i in ids])
    flat = torch.cat([table[i] for i in ids]) if ids else torch.zeros(0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"values": flat, "lengths": lengths}, str(tmp),
              metadata={"ids": json.dumps(ids), "meta": json.dumps(meta)})
    tmp.replace(path)


def load_table(path: Path) -> Table:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        ids = json.loads(f.metadata()["ids"])
    t = load_file(str(path))
    return dict(zip(ids, torch.split(t["values"], t["lengths"].tolist())))
