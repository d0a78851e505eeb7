"""Probe: does an ONNX Runtime session option change the batch-1 time of a pruned graph?

A pruned graph's intermediate shapes depend on the data (each drop point sets the next layers' length), so
ORT's memory planning cannot be reused from one call to the next the way it is for a dense graph. This
times one graph under several session-option variants, paired and interleaved on the same texts (ABBA
order per repeat), and reports each variant's mean of per-text medians against the first. Every variant
must give the same logits (to 1e-4); the probe refuses to report times otherwise.

    PYTHONPATH=. python bench/session_options.py EXPORT_DIR --data DATA [--graph model.ort.int8.onnx]
        [--variants base,no-mem-pattern,no-arena,one-thread] [--texts 16] [--repeats 5] [--json OUT]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from adapler.bench.profile_ort import emit_json, refuse_taken_json, test_feeds
from adapler.plugins.token_drop.ort_session import create_session

# name -> the SessionOptions it changes on top of the project's sessions (ort_session.create_session)
VARIANTS = {
    "base": {},
    "no-mem-pattern": {"enable_mem_pattern": False},
    "no-arena": {"enable_cpu_mem_arena": False},
    "one-thread": {"intra_op_num_threads": 1},
}


def parse_variants(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise ValueError(f"unknown session variant {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(VARIANTS)}")
    return names


def time_variants(graph: str | Path, feeds: list[dict[str, np.ndarray]], variants: list[str], repeats: int = 5,
                  threads: int = 2) -> dict:
    """Per variant, the mean over feeds of each feed's median call time (ms) and its ratio to the first variant."""
    sessions = {v: create_session(graph, threads=threads, overrides=VARIANTS[v]) for v in variants}
    first = {v: [s.run(None, f)[0] for f in feeds] for v, s in sessions.items()}  # also the warm-up
    for v in variants[1:]:
        if not all(np.allclose(a, b, atol=1e-4) for a, b in zip(first[variants[0]], first[v])):
            raise RuntimeError(f"variant {v} changed the logits; its time would not compare")
    ms = time_sessions(sessions, feeds, repeats)
    return {"graph": Path(graph).name, "inputs": len(feeds), "repeats": repeats, "threads": threads,
            "variants": {v: {"ms": ms[v], "ratio": ms[v] / ms[variants[0]], "options": VARIANTS[v]} for v in variants}}


def time_sessions(sessions: dict, feeds: list[dict[str, np.ndarray]], repeats: int) -> dict[str, float]:
    """Each session's mean over feeds of the feed's median call time (ms); see :func:`per_feed_ms`."""
    return {v: statistics.fmean(ms) for v, ms in per_feed_ms(sessions, feeds, repeats).items()}


def per_feed_ms(sessions: dict, feeds: list[dict[str, np.ndarray]], repeats: int) -> dict[str, list[float]]:
    """Each session's median call time (ms) per feed: every feed runs on every session in turn, in ABBA order
    per repeat, so drift in the machine's speed falls on all of them alike. The caller has warmed the
    sessions up."""
    names = list(sessions)
    own = {v: own_feeds(s, feeds) for v, s in sessions.items()}
    times = {v: [[] for _ in feeds] for v in names}
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for i in range(len(feeds)):
            for v in order:
                t0 = time.perf_counter()
                sessions[v].run(None, own[v][i])
                times[v][i].append(time.perf_counter() - t0)
    return {v: [1e3 * statistics.median(t) for t in times[v]] for v in names}


def own_feeds(session, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """``feeds`` with only the inputs ``session``'s graph reads (a dense reference graph may read fewer)."""
    names = [i.name for i in session.get_inputs()]
    return [{n: f[n] for n in names} for f in feeds]


def time_batch_1_and_32(sessions: dict, feeds: list[dict[str, np.ndarray]], texts: int,
                        repeats: int) -> dict[str, tuple[dict[str, float], int]]:
    """``time_sessions`` on the first ``texts`` feeds (batch 1) and on the rest (batches of 32, as
    ``profile_ort.test_feeds`` lays them out), each part after one warm-up pass on every session:
    ``{"batch_1": ({name: ms}, number of feeds), "batch_32": (...)}``."""
    out = {}
    for label, part in (("batch_1", feeds[:texts]), ("batch_32", feeds[texts:])):
        for s in sessions.values():
            for f in own_feeds(s, part):
                s.run(None, f)
        out[label] = (time_sessions(sessions, part, repeats), len(part))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="batch-1 time of one ORT graph under session-option variants")
    ap.add_argument("export_dir", type=Path)
    ap.add_argument("--data", required=True, help="dataset whose test split feeds the model")
    ap.add_argument("--graph", default="model.ort.onnx", help="file in the export folder")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--texts", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    args = ap.parse_args(argv)
    try:
        variants = parse_variants(args.variants)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    refuse_taken_json(args.json)
    graph = args.export_dir / args.graph
    if not graph.is_file():
        raise SystemExit(f"error: {graph} does not exist; pass --graph with a file of the export folder")
    out = time_variants(graph, test_feeds(args.export_dir, args.data, args.texts, 0), variants, args.repeats,
                        args.threads)
    emit_json(out, args.json)


if __name__ == "__main__":
    main()
