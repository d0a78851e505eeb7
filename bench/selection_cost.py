"""Probe: what one AdapLeR drop point costs on ONNX Runtime, timed without the profiler.

ORT's profiler adds a fixed cost to every node it records, which inflates small nodes: at batch 1 on short
inputs the selection's three nodes per layer (``MatMul -> BiasGelu -> ContributionDrop``, as in
``model.ort.onnx``) look several times dearer in a profile than they are. This builds two graphs, one with
``--blocks`` such selection blocks side by side on the same input and one with as many ``Identity`` nodes,
times them paired (ABBA) at each length and reports the difference per block: the wall-clock cost of a drop
point, dispatch included. Random CP weights (hidden size ``--hidden``, CP width ``--cp``); ``eta`` 1 keeps
about half of the tokens, so the copy a drop point does is included.

    PYTHONPATH=. python bench/selection_cost.py [--lengths 8,20,64,256] [--threads 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from adapler.bench.profile_ort import emit_json, refuse_taken_json
from adapler.plugins.token_drop.ort_session import create_session


def block_graphs(directory: Path, blocks: int = 6, hidden: int = 384, cp: int = 32, seed: int = 0) -> dict[str, Path]:
    """``{"selection": path, "identity": path}``: ``blocks`` selection blocks (or Identity nodes) reading one
    input ``x`` [B, T, hidden] (and ``mask`` [B, T] int32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    out = {}
    for kind in ("selection", "identity"):
        nodes, inits, outputs = [], [], []
        inits += [numpy_helper.from_array(rng.standard_normal(cp).astype(np.float32), "cp_w2"),
                  numpy_helper.from_array(np.array([1.0], np.float32), "eta")]
        for i in range(blocks):
            if kind == "selection":
                inits += [numpy_helper.from_array((rng.standard_normal((hidden, cp)) * 0.05).astype(np.float32), f"cp{i}_w1"),
                          numpy_helper.from_array((rng.standard_normal(cp) * 0.05).astype(np.float32), f"cp{i}_b1")]
                nodes += [helper.make_node("MatMul", ["x", f"cp{i}_w1"], [f"z{i}"]),
                          helper.make_node("BiasGelu", [f"z{i}", f"cp{i}_b1"], [f"a{i}"], domain="com.microsoft"),
                          helper.make_node("ContributionDrop", ["x", f"a{i}", "cp_w2", "mask", "eta"],
                                           [f"y{i}", f"m{i}", f"i{i}", f"k{i}"], domain="adapler")]
            else:
                nodes.append(helper.make_node("Identity", ["x"], [f"y{i}"]))
            outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
        inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", hidden])]
        if kind == "selection":
            inputs.append(helper.make_tensor_value_info("mask", TensorProto.INT32, ["B", "T"]))
        else:
            inits = []
        graph = helper.make_graph(nodes, kind, inputs, outputs, inits)
        model = helper.make_model(graph, ir_version=8, opset_imports=[
            helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1), helper.make_opsetid("adapler", 1)])
        out[kind] = directory / f"{kind}.onnx"
        onnx.save(model, str(out[kind]))
    return out


def time_blocks(lengths: list[int], blocks: int = 6, hidden: int = 384, cp: int = 32, threads: int = 2,
                calls: int = 300, rounds: int = 6) -> dict:
    """Per length: the median call time of each graph (µs) and the cost of one selection block (µs)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = block_graphs(Path(tmp), blocks, hidden, cp)
        sessions = {k: create_session(p, threads=threads) for k, p in paths.items()}
    rng = np.random.default_rng(1)
    out = {"blocks": blocks, "hidden": hidden, "cp": cp, "threads": threads, "lengths": {}}
    for n in lengths:
        x = rng.standard_normal((1, n, hidden)).astype(np.float32)
        feeds = {"selection": {"x": x, "mask": np.ones((1, n), np.int32)}, "identity": {"x": x}}
        for k, s in sessions.items():
            for _ in range(30):
                s.run(None, feeds[k])
        med = {k: [] for k in sessions}
        for r in range(rounds):  # ABBA: each graph's median of `calls` calls, per round
            for k in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):
                ts = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    sessions[k].run(None, feeds[k])
                    ts.append(time.perf_counter() - t0)
                med[k].append(statistics.median(ts))
        sel, ident = (1e6 * statistics.median(med[k]) for k in ("selection", "identity"))
        out["lengths"][str(n)] = {"selection_graph_us": sel, "identity_graph_us": ident,
                                  "per_block_us": (sel - ident) / blocks}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="wall-clock cost of one AdapLeR drop point on ONNX Runtime")
    ap.add_argument("--lengths", default="8,20,64,256", help="tokens entering the drop point, comma-separated")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--cp", type=int, default=32, help="the CP's hidden width")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    args = ap.parse_args(argv)
    refuse_taken_json(args.json)
    try:
        lengths = [int(v) for v in args.lengths.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"error: --lengths {args.lengths!r} is not a comma-separated list of integers") from None
    if not lengths or min(lengths) < 1 or args.blocks < 1:
        raise SystemExit("error: --lengths must list positive token counts and --blocks be at least 1")
    emit_json(time_blocks(lengths, args.blocks, args.hidden, args.cp, args.threads), args.json)


if __name__ == "__main__":
    main()
