"""Parity of an export directory: torch vs ORT on each graph it holds (custom op, standard ops, fused, the
ContributionDrop graph), with Polygraphy.

Runs real tokenised inputs at batch 1 and as a ragged batch; reports the max |delta logits| against
torch and whether every runner reports identical kept lengths per layer.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner
from polygraphy.comparator import Comparator

try:
    from polygraphy.comparator import SimpleCompareFunc
except ImportError:  # Polygraphy before SimpleCompareFunc existed
    from polygraphy.comparator import CompareFunc
    SimpleCompareFunc = CompareFunc.simple

from adapler.checkpoint import load_checkpoint
from adapler.data import Example, encode

from .onnx import ExportError


class TorchCpuRunner(BaseRunner):
    """Polygraphy runner for the torch model on CPU (Polygraphy's PytRunner moves inputs to CUDA)."""

    def __init__(self, model, input_names: list[str], name: str = "torch"):
        super().__init__(name=name, prefix="torch-cpu-runner")
        self.model, self.input_names = model, input_names

    def activate_impl(self):
        self.model.eval()

    def get_input_metadata_impl(self):
        from polygraphy.common import TensorMetadata
        meta = TensorMetadata()
        for n in self.input_names:
            meta.add(n, np.int64, (-1, -1))
        return meta

    def infer_impl(self, feed_dict):
        args = [torch.from_numpy(np.asarray(feed_dict[n])) for n in self.input_names]
        start = time.time()
        with torch.no_grad():
            out = self.model(*args, mode="hard")  # a dense model's hard mode is dense
        self.inference_time = time.time() - start
        return OrderedDict(logits=out.logits.numpy(), kept_lengths=out.kept_lengths.numpy().astype(np.int64))

    def deactivate_impl(self):
        pass


def _array(x) -> np.ndarray:
    return np.asarray(x.load() if hasattr(x, "load") else x)


def read_export(export_dir: str | Path) -> dict:
    export_dir = Path(export_dir)
    meta_path = export_dir / "export.json"
    if not meta_path.exists():
        raise ExportError(f"{meta_path} not found: {export_dir} is not an export directory (run `cli.py export` first)")
    return json.loads(meta_path.read_text())


def feeds_for(examples: list[Example], tokenizer, max_length: int, inputs: list[str], ragged: int = 8) -> list[dict]:
    """Batch-1 feeds for the first three examples and one ragged batch of ``ragged`` examples."""
    feeds = []
    for group in [[e] for e in examples[:3]] + [examples[:ragged]]:
        enc = encode(group, tokenizer, max_length)
        full = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.token_type_ids}
        feeds.append(OrderedDict((k, full[k].numpy().astype(np.int64)) for k in inputs))
    return feeds


def verify_export(export_dir: str | Path, examples: list[Example], atol: float = 1e-4) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from adapler.plugins.token_drop.ort_session import create_session

    export_dir = Path(export_dir)
    meta = read_export(export_dir)
    model, _ = load_checkpoint(meta["source_checkpoint"])
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir / "tokenizer"))
    feeds = feeds_for(examples, tokenizer, meta["max_length"], meta["inputs"])
    runners = [TorchCpuRunner(model, meta["inputs"])]
    for key, name in (("custom", "ort-custom-op"), ("std", "ort-std-ops"), ("ort", "ort-fused"),
                      ("cd", "ort-contribution-drop")):
        if key in meta["files"]:
            path = str(export_dir / meta["files"][key])
            runners.append(OnnxrtRunner(lambda p=path: create_session(p), name=name))
    results = Comparator.run(runners, data_loader=feeds)
    runs = [(name, [{k: _array(it[k]) for k in ("logits", "kept_lengths")} for it in iters])
            for name, iters in results.items()]
    ref = runs[0][1]
    max_diff, kept_same = 0.0, True
    per_runner = {}
    for runner_name, outputs in runs[1:]:
        diff = max(float(np.abs(a["logits"] - b["logits"]).max()) for a, b in zip(ref, outputs))
        same = all(np.array_equal(a["kept_lengths"], b["kept_lengths"]) for a, b in zip(ref, outputs))
        per_runner[runner_name] = {"max_abs_diff_logits": diff, "kept_lengths_identical": same}
        max_diff, kept_same = max(max_diff, diff), kept_same and same
    accuracy_ok = bool(Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=atol, rtol=0.0)))
    return {
        "export_dir": str(export_dir),
        "n_feeds": len(feeds),
        "batch_sizes": [int(f["input_ids"].shape[0]) for f in feeds],
        "max_abs_diff_logits": max_diff,
        "kept_lengths_identical": kept_same,
        "polygraphy_passed": accuracy_ok,
        "atol": atol,
        "runners": per_runner,
        "kept_lengths_ragged_batch": ref[-1]["kept_lengths"].tolist(),
    }


def run_graph(session, feeds: list[dict]) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and kept lengths of ``session`` over ``feeds``, concatenated (kept lengths None for a graph
    without that output, e.g. a dense reference graph); each feed gives the graph only the inputs it reads."""
    names = [i.name for i in session.get_inputs()]
    wanted = ["logits"] + (["kept_lengths"] if "kept_lengths" in {o.name for o in session.get_outputs()} else [])
    outs = [session.run(wanted, {n: f[n] for n in names}) for f in feeds]
    kept = np.concatenate([o[1] for o in outs]) if len(wanted) == 2 else None
    return np.concatenate([o[0] for o in outs]), kept


def example_feeds(export_dir: str | Path, examples: list[Example], batch_size: int = 32) -> list[dict]:
    """Every example, in order, in batches of ``batch_size``, tokenised and padded as the export expects."""
    from transformers import AutoTokenizer
    meta = read_export(export_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(Path(export_dir) / "tokenizer"))
    feeds = []
    for i in range(0, len(examples), batch_size):
        enc = encode(examples[i:i + batch_size], tokenizer, meta["max_length"])
        full = {"input_ids": enc.input_ids, "attention_mask": enc.attention_mask, "token_type_ids": enc.token_type_ids}
        feeds.append({k: full[k].numpy().astype(np.int64) for k in meta["inputs"]})
    return feeds


VARIANTS = (("int8", ("ort-int8", "ort")), ("int8", ("int8", "custom")), ("fp16", ("fp16", "custom")))


def quantization_report(export_dir: str | Path, examples: list[Example], batch_size: int = 32,
                        threads: int | None = None) -> dict[str, dict[str, Any]]:
    """Each reduced-precision graph of the export (int8, fp16) against the float32 graph it was made from, on
    every example (e.g. the test split): accuracy of each, accuracy change, argmax agreement, max |delta
    logits| and the share of examples whose kept lengths are identical in every layer. ``{}`` when the export
    has none. fp16 graphs run on ORT's CPU provider too (slowly): they are meant for GPU runtimes."""
    from adapler.plugins.token_drop.ort_session import create_session
    from adapler.stats import paired_difference
    export_dir = Path(export_dir)
    meta = read_export(export_dir)
    files = meta["files"]
    pairs: dict[str, tuple[str, str]] = {}
    for name, (low, full) in VARIANTS:
        if name not in pairs and low in files and full in files:
            pairs[name] = (files[low], files[full])
    if not pairs:
        return {}
    feeds = example_feeds(export_dir, examples, batch_size)
    labels = np.array([e.label for e in examples])
    out = {}
    for name, pair in pairs.items():
        (q_logits, q_kept), (f_logits, f_kept) = (run_graph(create_session(export_dir / p, threads=threads), feeds)
                                                  for p in pair)
        q_logits = q_logits.astype(np.float32)
        acc_q, acc_f = float((q_logits.argmax(1) == labels).mean()), float((f_logits.argmax(1) == labels).mean())
        paired = paired_difference(f_logits.argmax(1) == labels, q_logits.argmax(1) == labels)
        out[name] = {"file": pair[0], "fp32_file": pair[1], "n_examples": len(examples),
                     "accuracy_fp32": acc_f, "accuracy": acc_q, "accuracy_change_points": 100 * (acc_q - acc_f),
                     "accuracy_change_ci95_points": paired["ci95_points"], "mcnemar_p": paired["mcnemar_p"],
                     "argmax_agreement": float((q_logits.argmax(1) == f_logits.argmax(1)).mean()),
                     "max_abs_diff_logits": float(np.abs(q_logits - f_logits).max()),
                     "kept_lengths_identical_share": float((q_kept == f_kept).all(axis=1).mean()),
                     "mean_kept_lengths_fp32": f_kept.mean(0).tolist(), "mean_kept_lengths": q_kept.mean(0).tolist()}
    return out
