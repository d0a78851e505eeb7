"""Where the time goes inside an exported pruned model: ORT's profiler, node time by role.

Roles come from the exporter's ``namespace`` metadata (the torch module path of each node):
``selection`` = the selector module (``model.selector.*``: contribution predictors, policy nets, ...) + TokenDrop
(the price of dropping),
``layers`` = encoder layers, ``embeddings``, ``other`` = threshold arithmetic, masks, pooler, head.
ORT fuses some nodes at load time; a fused node keeps the role of the node whose name it keeps,
and nodes it cannot map are counted as ``unattributed``.

    PYTHONPATH=. python bench/profile_ort.py EXPORT_DIR --data DATA [--json FILE]

profiles ``model.onnx``, ``model.std.onnx``, ``model.ort.onnx`` (and its int8 form) of an export folder on test inputs at batch 1 and 32,
each as time per role, per encoder layer and per op type. ``--dense DENSE_EXPORT_DIR`` adds, at batch 1,
each layer's measured time against the dense layer's time scaled by its FLOPs ratio: the part of the
latency that does not shrink with the kept length.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx


def node_roles(model_path: str | Path) -> tuple[dict[str, str], dict[str, str | None]]:
    """(role, encoder layer) of every node, from one read of the graph. Roles come from the dynamo exporter's
    ``namespace`` metadata, or (``model.ort.onnx``, whose nodes are named ``l<i>.<part>`` by
    ``export/ort_graph.py``) from the node name; the layer (``l3``) from the ``l<i>.`` name or the
    ``encoder.layer.<i>`` / ``selector.<part>.<i>`` namespace (None outside the layers)."""
    roles, layers = {}, {}
    for node in onnx.load(str(model_path), load_external_data=False).graph.node:
        ns = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        name = node.name
        if node.op_type in ("TokenDrop", "ContributionDrop") or "token_drop" in ns:
            role = "selection"
        elif "selector." in ns or ".cp." in name or name.endswith(".cast_mask"):  # any method's selector module
            role = "selection"
        elif "encoder.layer." in ns or re.match(r"l\d+\.", name):
            role = "layers"
        elif "embeddings" in ns or node.op_type == "EmbedLayerNormalization":
            role = "embeddings"
        else:
            role = "other"
        roles[name] = role
        m = re.match(r"l(\d+)\.", name) or re.search(r"(?:encoder\.layer|selector\.\w+)\.(\d+)\b", ns)
        layers[name] = f"l{m.group(1)}" if m else None
    return roles, layers


def profile_roles(model_path: str | Path, feeds: list[dict[str, np.ndarray]], repeats: int = 3,
                  threads: int | None = None) -> dict[str, Any]:
    """Run ``feeds`` ``repeats`` times with profiling; return time per role, per layer and per op type
    (µs per run) and each role's share."""
    from adapler.plugins.token_drop.ort_session import create_session

    model_path = Path(model_path).resolve()  # the profile is written from a temporary working directory
    roles, layers = node_roles(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # ORT writes the profile file into the working directory
        try:
            sess = create_session(model_path, threads=threads, profile=True)
            for feed in feeds:  # untimed warm-up of each shape
                sess.run(None, feed)
            for _ in range(repeats):
                for feed in feeds:
                    sess.run(None, feed)
            prof = Path(sess.end_profiling())
            events = json.loads(prof.read_text())
        finally:
            os.chdir(cwd)
    totals: dict[str, float] = defaultdict(float)
    per_layer: dict[str, float] = defaultdict(float)
    per_op: dict[str, float] = defaultdict(float)
    selection_nodes: dict[str, float] = defaultdict(float)  # what the price of dropping is made of
    n_runs = len(feeds) * (repeats + 1)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        if name not in roles and name.startswith("fused "):  # ORT's load-time fusion keeps the first node's name
            name = name[len("fused "):]
        totals[roles.get(name, "unattributed")] += e["dur"]
        if roles.get(name) == "selection":
            selection_nodes[f"{name} ({e.get('args', {}).get('op_name', '?')})"] += e["dur"]
        if layers.get(name):
            per_layer[layers[name]] += e["dur"]
        per_op[e.get("args", {}).get("op_name", "?")] += e["dur"]
    total = sum(totals.values())

    def per_run(d: dict[str, float]) -> dict[str, float]:  # every run is profiled, warm-ups included
        return {k: v / n_runs for k, v in sorted(d.items(), key=lambda kv: _layer_order(kv[0]))}
    return {
        "model": str(model_path),
        "runs_profiled": n_runs,
        "node_time_us_per_run": per_run(totals),
        "share": {k: v / total for k, v in sorted(totals.items())} if total else {},
        "layer_time_us_per_run": per_run(per_layer),
        "op_time_us_per_run": dict(sorted(per_run(per_op).items(), key=lambda kv: -kv[1])),
        "selection_nodes_us_per_run": {k: v / n_runs for k, v in selection_nodes.items()},
    }


def _layer_order(key: str) -> tuple:
    m = re.fullmatch(r"l(\d+)", key)
    return (0, int(m.group(1)), "") if m else (1, 0, key)


def test_feeds(export_dir: Path, data: str, n_single: int, n_batches: int, batch: int = 32) -> list[dict]:
    """``n_single`` batch-1 feeds and ``n_batches`` feeds of ``batch`` test examples, tokenised as exported."""
    from transformers import AutoTokenizer

    from adapler.data import load_dataset
    from adapler.bench.run import batch_feeds
    from adapler.export.verify import read_export
    meta = read_export(export_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(Path(export_dir) / "tokenizer"))
    test = load_dataset(data).test
    feeds = (batch_feeds(test[:n_single], tokenizer, meta["max_length"], 1)
             + batch_feeds(test[:n_batches * batch], tokenizer, meta["max_length"], batch))
    return [{k: f[k] for k in meta["inputs"]} for f in feeds]


def fused_graph(export_dir: Path) -> Path:
    """The export folder's fused ORT graph (``model.ort.onnx``); ValueError if its method has none."""
    from adapler.export.verify import read_export
    files = read_export(export_dir)["files"]
    if "ort" not in files:
        raise ValueError(f"{export_dir} has no fused ORT graph (model.ort.onnx), which --dense compares; export "
                         "an AdapLeR or dense checkpoint, or profile without --dense")
    return Path(export_dir) / files["ort"]


def layers_against_dense(export_dir: Path, dense_dir: Path, feeds: list[dict], repeats: int = 3,
                         threads: int | None = None) -> dict[str, Any]:
    """Each layer of the pruned fused graph against the dense fused graph on the same batch-1 ``feeds``: the
    measured node time, the time the dense layer would take scaled by the layer's FLOPs ratio, and the
    excess (what does not shrink with the kept length)."""
    import torch

    from adapler.flops import Dims, f_attn, f_ffn
    from adapler.plugins.token_drop.ort_session import create_session
    pruned_path, dense_path = fused_graph(export_dir), fused_graph(dense_dir)
    if any(f["input_ids"].shape[0] != 1 for f in feeds):
        raise ValueError("layers_against_dense compares batch-1 feeds (no padding in the FLOPs)")
    sess = create_session(pruned_path, threads=threads)
    kept = torch.tensor(np.concatenate([sess.run(["kept_lengths"], f)[0] for f in feeds]), dtype=torch.float64)
    n = torch.tensor([float(f["attention_mask"].sum()) for f in feeds], dtype=torch.float64)
    w1 = next(i for i in onnx.load(str(dense_path), load_external_data=False).graph.initializer
              if i.name == "l0.ffn.w1")
    dims = Dims(d=int(w1.dims[0]), f=int(w1.dims[1]), L=kept.shape[1], C=2)  # C, h: not in a layer's FLOPs
    pruned = profile_roles(pruned_path, feeds, repeats, threads)
    dense = profile_roles(dense_path, feeds, repeats, threads)
    dense_layer = f_attn(n, dims) + f_ffn(n, dims)
    rows = {}
    for i in range(kept.shape[1]):
        ratio = float((f_attn(kept[:, i], dims) + f_ffn(kept[:, i], dims)).sum() / dense_layer.sum())
        measured = pruned["layer_time_us_per_run"].get(f"l{i}", 0.0)
        proportional = dense["layer_time_us_per_run"].get(f"l{i}", 0.0) * ratio
        rows[f"l{i}"] = {"mean_kept": float(kept[:, i].mean()), "flops_ratio": ratio, "measured_us": measured,
                         "flops_proportional_us": proportional, "excess_us": measured - proportional}
    total_p, total_d = (sum(p["node_time_us_per_run"].values()) for p in (pruned, dense))
    return {"pruned": str(pruned_path), "dense": str(dense_path), "inputs": len(feeds),
            "mean_length": float(n.mean()), "node_time_us_per_run": {"pruned": total_p, "dense": total_d},
            "node_time_speedup": total_d / total_p, "layers": rows,
            "pruned_roles_us_per_run": pruned["node_time_us_per_run"]}


def refuse_taken_json(path: Path | None) -> None:
    """The one-line error every probe gives, before any work, for a ``--json`` file that already exists."""
    if path is not None and path.exists():
        raise SystemExit(f"error: {path} already exists; remove it or choose another --json")


def emit_json(out: dict, path: Path | None) -> None:
    """Print a probe's result, and write it to ``path`` when given (callers refuse an existing one first)."""
    text = json.dumps(out, indent=2)
    if path is not None:
        path.write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="ORT profiler node time by role for an export folder")
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--data", required=True, help="dataset whose test split feeds the model")
    ap.add_argument("--single", type=int, default=8, help="batch-1 inputs")
    ap.add_argument("--batches", type=int, default=4, help="batches of 32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dense", type=Path, help="dense export folder: compare the fused graph's layers with it "
                    "at batch 1 (measured vs FLOPs-proportional time per layer)")
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    args = ap.parse_args(argv)
    refuse_taken_json(args.json)
    if args.dense is not None:
        try:  # before minutes of profiling
            fused_graph(args.export_dir), fused_graph(args.dense)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    feeds = test_feeds(args.export_dir, args.data, args.single, args.batches)
    from adapler.export.verify import read_export
    files = read_export(args.export_dir)["files"]
    out = {name: profile_roles(args.export_dir / name, feeds, repeats=args.repeats, threads=args.threads)
           for key, name in files.items() if key in ("custom", "std", "ort", "ort-int8")}
    if args.dense is not None:
        out["batch1_layers_vs_dense"] = layers_against_dense(args.export_dir, args.dense, feeds[:args.single],
                                                             args.repeats, args.threads)
    emit_json(out, args.json)


if __name__ == "__main__":
    main()
