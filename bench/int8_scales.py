"""Probe: one int8 weight scale per tensor (ONNX Runtime's default) or per output channel (the export's)?

Quantizes an export folder's fused fp32 graph (``model.ort.onnx``; a pruned model's, or the dense one a
bench writes under ``exports/<dense>/``) both ways with the export's op list (the selection stays float),
then reports for each what ``verify`` reports for an int8 graph on the whole test split (accuracy change,
argmax agreement, kept-length agreement against fp32) and times the two graphs paired and interleaved on
the same test texts at batch 1 and 32.

    PYTHONPATH=. python bench/int8_scales.py EXPORT_DIR --data DATA [--texts 64] [--batches 4]
        [--repeats 5] [--threads 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from adapler.bench.profile_ort import emit_json, refuse_taken_json, test_feeds
from adapler.bench.session_options import time_batch_1_and_32
from adapler.data import load_dataset
from adapler.export.deploy import quantize_int8
from adapler.export.verify import quantization_report, read_export
from adapler.plugins.token_drop.ort_session import create_session

SCALES = {"per-tensor": False, "per-channel": True}


def quantized_copy(export_dir: Path, work: Path, per_channel: bool, keep_float: list[str] | tuple = ()) -> Path:
    """A folder that reads like ``export_dir`` but whose ``model.ort.int8.onnx`` uses the given scales (and
    leaves the ``keep_float`` nodes in float)."""
    work.mkdir(parents=True)
    meta = read_export(export_dir)
    shutil.copytree(export_dir / "tokenizer", work / "tokenizer")
    (work / "model.ort.onnx").symlink_to((export_dir / meta["files"]["ort"]).resolve())
    quantize_int8(work / "model.ort.onnx", work / "model.ort.int8.onnx", per_channel=per_channel,
                  keep_float=keep_float)
    meta["files"] = {"ort": "model.ort.onnx", "ort-int8": "model.ort.int8.onnx"}
    (work / "export.json").write_text(json.dumps(meta))
    return work


def compare_scales(export_dir: Path, data: str, texts: int = 64, batches: int = 4, repeats: int = 5,
                   threads: int = 2) -> dict:
    test = load_dataset(data).test
    out: dict = {"export": str(export_dir), "data": data, "threads": threads, "repeats": repeats, "scales": {}}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {name: quantized_copy(export_dir, Path(tmp) / name, pc) for name, pc in SCALES.items()}
        for name, d in dirs.items():
            out["scales"][name] = {"accuracy": quantization_report(d, test, threads=threads)["int8"]}
        sessions = {name: create_session(d / "model.ort.int8.onnx", threads=threads) for name, d in dirs.items()}
        feeds = test_feeds(export_dir, data, texts, batches)
        for label, (ms, n) in time_batch_1_and_32(sessions, feeds, texts, repeats).items():
            for name in SCALES:
                out["scales"][name][f"{label}_ms"] = ms[name]
            out[f"{label}_inputs"] = n
    return out


def probe_parser(description: str, data_help: str) -> argparse.ArgumentParser:
    """The options every int8 probe takes: one export folder, the data, what is timed, where the JSON goes."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--data", required=True, help=data_help)
    ap.add_argument("--texts", type=int, default=64, help="batch-1 inputs timed")
    ap.add_argument("--batches", type=int, default=4, help="batches of 32 timed")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    return ap


def check_probe_args(args: argparse.Namespace) -> None:
    """One line, before any work, for a taken --json or a folder without a fused graph to quantize."""
    refuse_taken_json(args.json)
    if not (args.export_dir / "export.json").is_file():
        raise SystemExit(f"error: {args.export_dir} is not an export folder (no export.json); "
                         "pass a folder written by `cli.py export` or a bench's exports/<model>")
    if "ort" not in read_export(args.export_dir)["files"]:
        raise SystemExit(f"error: {args.export_dir} has no fused ORT graph (model.ort.onnx) to quantize")


def main(argv: list[str] | None = None) -> None:
    args = probe_parser("int8 per-tensor vs per-channel weight scales: fidelity and time",
                        "dataset whose test split is scored and timed").parse_args(argv)
    check_probe_args(args)
    emit_json(compare_scales(args.export_dir, args.data, args.texts, args.batches, args.repeats, args.threads),
              args.json)


if __name__ == "__main__":
    main()
