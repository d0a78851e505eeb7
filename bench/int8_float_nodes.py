"""Probe: how much int8 accuracy comes back, at what time, when the most harmful int8 nodes stay in float.

Ranks the encoder nodes of an export folder's fused graph (``model.ort.onnx``) on the dev split
(``export/int8_sensitivity.py``: each node quantized alone, KL divergence from the float graph), then for
each ``k`` in ``--keep`` writes the int8 graph with the ``k`` highest-ranked nodes left float and reports
its dev and test accuracy against the float graph (as ``verify`` does) and its time, paired and
interleaved with the other ``k`` values on the same test texts at batch 1 and 32.

    PYTHONPATH=. python bench/int8_float_nodes.py EXPORT_DIR --data DATA [--keep 0,1,2,4]
        [--reference GRAPH] [--texts 64] [--batches 4] [--repeats 5] [--threads 2] [--json OUT]
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from adapler.bench.int8_scales import check_probe_args, probe_parser, quantized_copy
from adapler.bench.profile_ort import emit_json, test_feeds
from adapler.bench.session_options import time_batch_1_and_32
from adapler.data import load_dataset
from adapler.export.deploy import int8_candidates
from adapler.export.int8_sensitivity import most_harmful, rank_nodes
from adapler.export.verify import example_feeds, quantization_report, read_export
from adapler.plugins.token_drop.ort_session import create_session


def compare_keep_float(export_dir: Path, data: str, keep: list[int], texts: int = 64, batches: int = 4,
                       repeats: int = 5, threads: int = 2, reference: Path | None = None) -> dict:
    ds = load_dataset(data)
    src = export_dir / read_export(export_dir)["files"]["ort"]
    ranking = rank_nodes(src, example_feeds(export_dir, ds.dev), threads=threads)
    out: dict = {"export": str(export_dir), "data": data, "threads": threads, "repeats": repeats,
                 "ranked_on": "dev", "ranking": ranking, "keep": {}}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for k in keep:
            kept = most_harmful(ranking, k)
            d = dirs[k] = quantized_copy(export_dir, Path(tmp) / f"keep{k}", per_channel=True, keep_float=kept)
            out["keep"][k] = {"float_nodes": kept,
                              "dev": quantization_report(d, ds.dev, threads=threads)["int8"],
                              "test": quantization_report(d, ds.test, threads=threads)["int8"]}
        sessions = {k: create_session(d / "model.ort.int8.onnx", threads=threads) for k, d in dirs.items()}
        sessions["fp32"] = create_session(src, threads=threads)
        if reference is not None:  # e.g. the dense int8 graph a bench wrote, timed in the same paired run
            sessions["reference"] = create_session(reference, threads=threads)
        feeds = test_feeds(export_dir, data, texts, batches)
        for label, (ms, n) in time_batch_1_and_32(sessions, feeds, texts, repeats).items():
            for k in keep:
                out["keep"][k][f"{label}_ms"] = ms[k]
            out[f"fp32_{label}_ms"] = ms["fp32"]
            if reference is not None:
                out[f"reference_{label}_ms"] = ms["reference"]
            out[f"{label}_inputs"] = n
    return out


def main(argv: list[str] | None = None) -> None:
    ap = probe_parser("int8 with the most harmful nodes left float: accuracy and time",
                      "dataset: nodes ranked on its dev split, scored on dev and test")
    ap.add_argument("--keep", default="0,1,2,4", help="comma-separated numbers of nodes left float")
    ap.add_argument("--reference", type=Path, help="another ONNX graph timed in the same run, e.g. a bench's "
                    "exports/<dense>/reference/model.hf.opt.int8.onnx (the dense int8 model users would ship)")
    args = ap.parse_args(argv)
    check_probe_args(args)
    if args.reference is not None and not args.reference.is_file():
        raise SystemExit(f"error: --reference {args.reference} is not a file; pass an ONNX graph, e.g. "
                         "a bench's exports/<dense>/reference/model.hf.opt.int8.onnx")
    try:
        keep = sorted({int(k) for k in args.keep.split(",")})
    except ValueError:
        raise SystemExit(f"error: --keep {args.keep!r} is not a comma-separated list of integers, e.g. 0,1,2,4")
    n = len(int8_candidates(args.export_dir / read_export(args.export_dir)["files"]["ort"]))
    if keep[0] < 0 or keep[-1] > n:
        raise SystemExit(f"error: --keep {args.keep!r} is out of range: the graph has {n} int8 candidate nodes; "
                         f"choose numbers from 0 to {n}")
    emit_json(compare_keep_float(args.export_dir, args.data, keep, args.texts, args.batches, args.repeats,
                                 args.threads, args.reference), args.json)


if __name__ == "__main__":
    main()
