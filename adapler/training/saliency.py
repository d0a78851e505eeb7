"""Stage 2: gradient x input saliency targets, cached under a content hash and looked up by example id.

sal_t = || d logit_gold / d e_t  (.)  e_t ||_2 with e the embedding output, on the training split,
averaged over the best fine-tuning epochs. No normalisation.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..checkpoint import load_checkpoint
from ..data import Example, batches, encode
from ..files import file_sha256
from ..progress import log, progress_bar
from .distributed import TrainEnv


def saliency_batch(model, input_ids, attention_mask, token_type_ids, labels) -> torch.Tensor:
    """[B, T] saliency of each token for the gold-class logit; 0 on padding."""
    model.eval()
    emb = model.embed(input_ids, token_type_ids).detach().requires_grad_(True)
    logits = model(input_ids, attention_mask, token_type_ids, mode="dense", embeddings=emb).logits
    gold = logits.gather(1, labels[:, None]).sum()  # examples are independent in eval mode
    (grad,) = torch.autograd.grad(gold, emb)
    return (grad * emb).norm(dim=-1).detach() * attention_mask.float()


def tokenizer_fingerprint(tokenizer) -> str:
    """The tokenizer's full definition (vocabulary, normaliser, special tokens) as a hash."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(f"{type(tokenizer).__name__}\n{text}".encode()).hexdigest()


def cache_key(checkpoints: list[Path], examples: list[Example], tokenizer, max_length: int) -> str:
    """Content address of the targets: the weights' bytes, the tokenizer, the max length and every example's
    id, texts and label (order-free). Paths, file names and mtimes play no part, so a different file
    with the same name and line count never reuses targets, and a copied checkpoint still does."""
    h = hashlib.sha256()
    for c in checkpoints:
        h.update(file_sha256(Path(c) / "model.safetensors").encode())
    h.update(tokenizer_fingerprint(tokenizer).encode())
    h.update(str(max_length).encode())
    for row in sorted(json.dumps([e.id, e.text, e.text_pair, e.label], ensure_ascii=False) for e in examples):
        h.update(row.encode())
    return h.hexdigest()[:16]


def compute_saliencies(checkpoints: list[Path], examples: list[Example], tokenizer, max_length: int,
                       cache_dir: str | Path, batch_size: int = 32, env: TrainEnv | None = None) -> dict[str, torch.Tensor]:
    """id -> saliency vector (unpadded length). Cached in ``cache_dir/saliency-<key>.safetensors``.

    With ``env`` the targets are computed on its device, and under torchrun each rank computes a contiguous
    share of the examples; the shares are gathered on every rank and rank 0 writes the cache."""
    env = env or TrainEnv()
    cache_dir = Path(cache_dir)
    key = cache_key(checkpoints, examples, tokenizer, max_length)
    path = cache_dir / f"saliency-{key}.safetensors"
    if path.exists():
        log(f"saliency targets: reusing {path}")
        return _load(path)
    lo, hi = len(examples) * env.rank // env.world_size, len(examples) * (env.rank + 1) // env.world_size
    sal = _compute(checkpoints, examples[lo:hi], tokenizer, max_length, batch_size, env.device) if hi > lo else {}
    if env.distributed:
        sal = {i: v for part in env.all_gather(sal) for i, v in part.items()}
        sal = {e.id: sal[e.id] for e in examples}  # the one-process order, so the cache file is the same
    if env.main:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _save(path, sal, {"checkpoints": [str(c) for c in checkpoints], "max_length": max_length})
        log(f"saliency targets: {len(sal)} examples from {len(checkpoints)} epoch(s) -> {path}")
    return sal


def _compute(checkpoints: list[Path], examples: list[Example], tokenizer, max_length: int, batch_size: int,
             device: torch.device) -> dict[str, torch.Tensor]:
    enc = encode(examples, tokenizer, max_length)
    total = torch.zeros(enc.input_ids.shape, dtype=torch.float32, device=device)
    for ckpt in checkpoints:
        model, _ = load_checkpoint(ckpt, device=device)
        rows = []
        for b in progress_bar(list(batches(enc, batch_size)), f"saliency ({Path(ckpt).name})"):
            ids, mask, types, labels = (t.to(device) for t in (b.input_ids, b.attention_mask, b.token_type_ids,
                                                               b.labels))
            sal = saliency_batch(model, ids, mask, types, labels)
            rows.append(torch.nn.functional.pad(sal, (0, total.shape[1] - sal.shape[1])))
        total += torch.cat(rows)
    total = (total / len(checkpoints)).cpu()
    lengths = enc.attention_mask.sum(dim=1)
    return {i: total[k, : lengths[k]].clone() for k, i in enumerate(enc.ids)}


def _save(path: Path, sal: dict[str, torch.Tensor], meta: dict) -> None:
    ids = list(sal)
    lengths = torch.tensor([len(sal[i]) for i in ids])
    flat = torch.cat([sal[i] for i in ids]) if ids else torch.zeros(0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: concurrent runs may share a cache
    save_file({"values": flat, "lengths": lengths}, str(tmp),
              metadata={"ids": json.dumps(ids), "meta": json.dumps(meta)})
    tmp.replace(path)


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        ids = json.loads(f.metadata()["ids"])
    t = load_file(str(path))
    return dict(zip(ids, torch.split(t["values"], t["lengths"].tolist())))


def batch_targets(sal: dict[str, torch.Tensor], ids: list[str], width: int) -> torch.Tensor:
    """[B, width] targets for a batch, zero-padded."""
    out = torch.zeros(len(ids), width)
    for r, i in enumerate(ids):
        v = sal[i][:width]
        out[r, : len(v)] = v
    return out
