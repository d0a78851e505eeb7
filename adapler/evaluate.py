"""Evaluation: accuracy/F1, FLOPs speedup from the one counter, kept lengths, torch latency."""
from __future__ import annotations

import time
from typing import Any

import torch

from .data import Example, batches, encode
from .flops import model_flops
from .progress import progress_bar


def f1_scores(preds: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, float]:
    """Binary: F1 of class 1. Multi-class: macro F1."""
    f1s = []
    for c in range(num_labels):
        tp = ((preds == c) & (labels == c)).sum().item()
        fp = ((preds == c) & (labels != c)).sum().item()
        fn = ((preds != c) & (labels == c)).sum().item()
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {"f1": f1s[1]} if num_labels == 2 else {"macro_f1": sum(f1s) / num_labels}


def model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(model, examples: list[Example], tokenizer, max_length: int, batch_size: int = 32,
            mode: str = "hard", desc: str | None = None, device: str | torch.device | None = None) -> dict[str, Any]:
    """Run ``model`` over ``examples``; returns predictions, labels, real lengths, kept lengths, timings.
    ``device``: where to run (the model is moved there); default: where the model is."""
    model.eval()
    if device is not None:
        model.to(device)
    dev = model_device(model)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)  # time the kernels, not their launch
    enc = encode(examples, tokenizer, max_length)
    preds, kept, times = [], [], []
    chunks = list(batches(enc, batch_size))
    for b in progress_bar(chunks, desc or f"evaluating ({mode})"):
        ids, mask, types = (t.to(dev) for t in (b.input_ids, b.attention_mask, b.token_type_ids))
        sync()
        t0 = time.perf_counter()
        out = model(ids, mask, types, mode=mode)
        sync()
        times.append(time.perf_counter() - t0)
        preds.append(out.logits.argmax(-1))
        kept.append(out.kept_lengths.round().long() if mode == "soft" else out.kept_lengths)
    return {  # one copy back to the host, after the loop
        "preds": torch.cat(preds).cpu(),
        "labels": enc.labels,
        "lengths": enc.attention_mask.sum(dim=1),
        "kept": torch.cat(kept).cpu(),
        "batch_seconds": times,
        "n_truncated": enc.n_truncated,
    }


def evaluate(model, examples: list[Example], tokenizer, max_length: int, batch_size: int = 32,
             mode: str = "hard", desc: str | None = None, device: str | torch.device | None = None,
             keep_predictions: bool = False) -> dict[str, Any]:
    """Metrics in the JSON schema of ``cli.py evaluate`` (float32, on ``device`` or where the model is).
    ``keep_predictions`` adds ``predictions`` (example ids, labels and predicted labels, in split order), which
    two models' files need for a paired comparison (``bench/paired_accuracy.py``)."""
    if not examples:
        raise ValueError("no examples to evaluate")
    r = predict(model, examples, tokenizer, max_length, batch_size, mode, desc, device)
    dense, pruned = model_flops(model, r["lengths"], r["kept"])
    times = sorted(r["batch_seconds"])
    n = len(examples)
    out = {
        "method": model.method,
        "mode": mode,
        "n_examples": n,
        "batch_size": batch_size,
        "max_length": max_length,
        "n_truncated": r["n_truncated"],
        "accuracy": (r["preds"] == r["labels"]).float().mean().item(),
        **f1_scores(r["preds"], r["labels"], model.num_labels),
        "flops_speedup": float(dense.sum() / pruned.sum()),
        "dense_gflops_per_example": float(dense.mean() / 1e9),
        "gflops_per_example": float(pruned.mean() / 1e9),
        "mean_length": float(r["lengths"].float().mean()),
        "mean_kept_lengths": [float(v) for v in r["kept"].float().mean(dim=0)],
        "latency_ms_per_example": 1e3 * sum(times) / n,
        "latency_ms_per_batch_median": 1e3 * times[len(times) // 2],
        "threads": torch.get_num_threads(),
        "device": str(model_device(model)),
    }
    if keep_predictions:
        out["predictions"] = {"ids": [e.id for e in examples], "labels": r["labels"].tolist(),
                              "preds": r["preds"].tolist()}
    return out
