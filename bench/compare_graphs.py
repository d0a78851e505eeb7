"""Probe: several ONNX graphs of one model, timed paired and interleaved on the same test texts.

For an A/B of a graph change (a new node layout, an op with one more output, a rewrite): every graph runs
every input in turn (ABBA order per repeat), at batch 1 and in batches of 32. Reported per graph: the mean of
per-input median times, and against the first graph both the ratio of those means and the median over
inputs of the per-input ratio (the bench's "speedup"). Graphs must agree before any time is reported:
logits to ``--atol`` and, where both graphs output them, identical kept lengths.

    PYTHONPATH=. python bench/compare_graphs.py EXPORT_DIR GRAPH [GRAPH ...] --data DATA
        [--texts 128] [--batches 4] [--repeats 5] [--atol 1e-4] [--json OUT]

``EXPORT_DIR`` gives the tokenizer and max length (``export.json``); a GRAPH is a path, or a file name in
``EXPORT_DIR``. A dense reference graph (e.g. ``exports/bert/reference/model.hf.opt.int8.onnx``) may be
listed too: it is timed, and compared only where its outputs and precision allow (skip it with
``--no-check NAME``).
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from adapler.bench.profile_ort import emit_json, refuse_taken_json, test_feeds
from adapler.bench.session_options import own_feeds, per_feed_ms
from adapler.plugins.token_drop.ort_session import create_session


def resolve_graphs(export_dir: Path, graphs: list[str]) -> list[Path]:
    """Each GRAPH as an existing path (as given, or inside ``export_dir``); ValueError naming a missing one."""
    out = []
    for g in graphs:
        path = Path(g) if Path(g).is_file() else export_dir / g
        if not path.is_file():
            raise ValueError(f"graph {g} is neither a file nor a file of {export_dir}")
        out.append(path)
    if len({p.resolve() for p in out}) != len(out):
        raise ValueError("a graph is listed twice; each graph is timed once")
    return out


def check_agreement(sessions: dict, feeds: list[dict[str, np.ndarray]], atol: float, skip: set[str]) -> dict:
    """Max |logits difference| and kept-length equality of each graph against the first (graphs in ``skip``
    are not compared); RuntimeError when a compared graph disagrees."""
    from adapler.export.verify import run_graph
    names = list(sessions)
    first = names[0]
    ref_logits, ref_kept = run_graph(sessions[first], feeds)
    report = {}
    for name in names[1:]:
        if name in skip:
            continue
        logits, kept = run_graph(sessions[name], feeds)
        diff = float(np.abs(logits - ref_logits).max())
        same = None if kept is None or ref_kept is None else bool(np.array_equal(kept, ref_kept))
        report[name] = {"max_abs_logit_diff": diff, "kept_lengths_equal": same}
        if diff > atol or same is False:
            raise RuntimeError(f"{name} disagrees with {first} (max |dlogits| {diff:.2e}, kept lengths equal "
                               f"{'n/a' if same is None else same}); its time would not compare")
    return report


def summarize(ms: dict[str, list[float]]) -> dict[str, dict]:
    """Per graph: mean ms, and against the first graph the ratio of means and the median per-input ratio
    (> 1: faster than the first)."""
    first = next(iter(ms))
    out = {}
    for name, values in ms.items():
        ratios = [a / b for a, b in zip(ms[first], values)]
        out[name] = {"mean_ms": statistics.fmean(values),
                     "speedup_vs_first_ratio_of_means": statistics.fmean(ms[first]) / statistics.fmean(values),
                     "speedup_vs_first_median_ratio": statistics.median(ratios)}
    return out


def compare(export_dir: Path, graphs: list[str], data: str, texts: int = 128, batches: int = 4, repeats: int = 5,
            threads: int = 2, atol: float = 1e-4, no_check: tuple[str, ...] = ()) -> dict:
    paths = resolve_graphs(export_dir, graphs)
    names = [str(p) for p in paths]
    sessions = {n: create_session(p, threads=threads) for n, p in zip(names, paths)}
    feeds = test_feeds(export_dir, data, texts, batches)
    skip = {n for n in names if any(n.endswith(s) for s in no_check)}
    out = {"export_dir": str(export_dir), "data": data, "threads": threads, "repeats": repeats,
           "agreement": check_agreement(sessions, feeds, atol, skip)}
    for label, part in (("batch_1", feeds[:texts]), ("batch_32", feeds[texts:])):
        if not part:
            continue
        for s in sessions.values():  # warm-up: every shape once
            for f in own_feeds(s, part):
                s.run(None, f)
        out[label] = {"inputs": len(part), "graphs": summarize(per_feed_ms(sessions, part, repeats))}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="ONNX graphs of one model timed paired and interleaved")
    ap.add_argument("export_dir", type=Path, help="export folder: tokenizer and max length")
    ap.add_argument("graphs", nargs="+", help="graph paths or file names in the export folder; the first is the base")
    ap.add_argument("--data", required=True, help="dataset whose test split feeds the graphs")
    ap.add_argument("--texts", type=int, default=128, help="batch-1 inputs")
    ap.add_argument("--batches", type=int, default=4, help="batches of 32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--atol", type=float, default=1e-4, help="largest logits difference allowed between graphs")
    ap.add_argument("--no-check", action="append", default=[], metavar="NAME",
                    help="time this graph without comparing its outputs (e.g. an int8 or dense reference graph)")
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    args = ap.parse_args(argv)
    refuse_taken_json(args.json)
    if not (args.export_dir / "export.json").is_file():
        raise SystemExit(f"error: {args.export_dir} is not an export folder (no export.json); pass the folder "
                         "`python cli.py export` wrote")
    try:
        out = compare(args.export_dir, args.graphs, args.data, args.texts, args.batches, args.repeats, args.threads,
                      args.atol, tuple(args.no_check))
    except (ValueError, RuntimeError) as e:
        raise SystemExit(f"error: {e}") from None
    emit_json(out, args.json)


if __name__ == "__main__":
    main()
