"""Where the time goes inside an exported pruned model: ORT's profiler, node time by role.

Roles come from the exporter's ``namespace`` metadata (the torch module path of each node):
``selection`` = the selector module (``model.selector.*``: contribution predictors, policy nets, ...) + TokenDrop
(the price of dropping),
``layers`` = encoder layers, ``embeddings``, ``other`` = threshold arithmetic, masks, pooler, head.
ORT fuses some nodes at load time; a fused node keeps the role of the node whose name it keeps,
and nodes it cannot map are counted as ``unattributed``.

    PYTHONPATH=. python bench/profile_ort.py EXPORT_DIR --data DATA [--json FILE]

profiles ``model.onnx``, ``model.std.onnx``, ``model.ort.onnx`` (and its int8 form) of an export folder on test inputs at batch 1 and 32.
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


def node_roles(model_path: str | Path) -> dict[str, str]:
    """Role of every node: from the dynamo exporter's ``namespace`` metadata, or (``model.ort.onnx``, whose
    nodes are named ``l<i>.<part>`` by ``export/ort_graph.py``) from the node name."""
    roles = {}
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
    return roles


def profile_roles(model_path: str | Path, feeds: list[dict[str, np.ndarray]], repeats: int = 3,
                  threads: int | None = None) -> dict[str, Any]:
    """Run ``feeds`` ``repeats`` times with profiling; return time per role (µs) and its share."""
    from adapler.plugins.token_drop.ort_session import create_session

    model_path = Path(model_path).resolve()  # the profile is written from a temporary working directory
    roles = node_roles(model_path)
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
    n_runs = len(feeds) * (repeats + 1)
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        if name not in roles and name.startswith("fused "):  # ORT's load-time fusion keeps the first node's name
            name = name[len("fused "):]
        totals[roles.get(name, "unattributed")] += e["dur"]
    # drop the warm-up runs proportionally (profiling records every run)
    scale = repeats / (repeats + 1)
    total = sum(totals.values())
    return {
        "model": str(model_path),
        "runs_profiled": n_runs,
        "node_time_us_per_run": {k: v * scale / (len(feeds) * repeats) for k, v in sorted(totals.items())},
        "share": {k: v / total for k, v in sorted(totals.items())} if total else {},
    }


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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="ORT profiler node time by role for an export folder")
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--data", required=True, help="dataset whose test split feeds the model")
    ap.add_argument("--single", type=int, default=8, help="batch-1 inputs")
    ap.add_argument("--batches", type=int, default=4, help="batches of 32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    args = ap.parse_args(argv)
    if args.json is not None and args.json.exists():
        raise SystemExit(f"error: {args.json} already exists; remove it or choose another --json")
    feeds = test_feeds(args.export_dir, args.data, args.single, args.batches)
    from adapler.export.verify import read_export
    files = read_export(args.export_dir)["files"]
    out = {name: profile_roles(args.export_dir / name, feeds, repeats=args.repeats, threads=args.threads)
           for key, name in files.items() if key in ("custom", "std", "ort", "ort-int8")}
    text = json.dumps(out, indent=2)
    if args.json is not None:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
