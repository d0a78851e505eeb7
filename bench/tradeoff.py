"""Accuracy-vs-FLOPs trade-off of trained runs, from their metric files (nothing is re-evaluated).

    PYTHONPATH=. python bench/tradeoff.py results/pang_*_test.json runs/pang/sweep/sweep-*.json \\
        --out docs/measurements/pang_tradeoff.png

``--targets 2,4,8`` adds the methods compared at equal speedup: per target X, each method's most accurate
point at >= 0.9 X (``at_equal_speedup``, the reading ``bench --targets`` uses).

Each file is either an ``evaluate --json`` output (one model; method from its ``method`` field) or a
``sweep-<method>.json`` list. The dense model (method ``bert``) is the reference: it is drawn as a star
and the table gives every other point's accuracy change against it. Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def load_points(paths: list[str | Path]) -> tuple[dict[str, Any] | None, dict[str, list[dict[str, Any]]]]:
    """(dense model or None, {method: [{"label", "test_accuracy", "flops_speedup"}]}) from metric files."""
    from adapler import methods
    dense_name = methods.dense().name
    dense, points = None, {}
    for p in map(Path, paths):
        data = json.loads(p.read_text())
        if isinstance(data, list):  # a sweep file; a renamed copy is told apart by its name in the label
            method = data[0].get("method", p.stem.removeprefix("sweep-")) if data else p.stem
            tag = "" if p.stem == f"sweep-{method}" else f" ({p.stem})"
            rows = [{"label": f"{r['knob']} {r['value']:g}{tag}", "test_accuracy": r["test_accuracy"],
                     "flops_speedup": r["flops_speedup"]} for r in data]
        elif {"method", "accuracy", "flops_speedup"} <= data.keys():
            if data.get("split", "test") != "test":
                raise ValueError(f"{p} holds {data['split']} metrics; pass test-split files")
            method = data["method"]
            rows = [{"label": p.stem, "test_accuracy": data["accuracy"], "flops_speedup": data["flops_speedup"]}]
        else:
            raise ValueError(f"{p} is neither an `evaluate --json` file nor a sweep file")
        if method == dense_name:
            dense = rows[0]
        else:
            points.setdefault(method, []).extend(rows)
    return dense, points


TARGET_TOLERANCE = 0.1  # a point "at X" may be up to 10 % below X: what --target-speedup runs land within


def at_equal_speedup(points: dict[str, list[dict[str, Any]]], targets: list[float],
                     tolerance: float = TARGET_TOLERANCE) -> list[dict[str, Any]]:
    """Methods compared at equal speedup: for each target X and method, its most accurate point whose FLOPs
    speedup is at least (1 - tolerance) X (the method's Pareto front read at X); ``point`` None when the
    method has no point that fast. ``points``: {method: [{"label", "test_accuracy", "flops_speedup"}]}."""
    rows = []
    for x in targets:
        for method in sorted(points):
            fast = [p for p in points[method] if p["flops_speedup"] >= (1 - tolerance) * x]
            best = max(fast, key=lambda p: (p["test_accuracy"], p["flops_speedup"])) if fast else None
            rows.append({"target": float(x), "method": method, "point": best["label"] if best else None,
                         "test_accuracy": best["test_accuracy"] if best else None,
                         "flops_speedup": best["flops_speedup"] if best else None})
    return rows


def bench_points(results: dict[str, Any], sweeps: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The points of a bench run: its pruned models (test split) and the rows of its sweep files, by method."""
    from adapler import methods
    dense = methods.dense().name
    points: dict[str, list[dict[str, Any]]] = {}
    for name, m in results.get("models", {}).items():
        if m["method"] != dense:
            points.setdefault(m["method"], []).append(
                {"label": f"bench model {name}", "test_accuracy": m["accuracy"], "flops_speedup": m["flops_speedup"]})
    for method, rows in sweeps.items():
        points.setdefault(method, []).extend(
            {"label": f"sweep {r['knob']} {r['value']:g}", "test_accuracy": r["test_accuracy"],
             "flops_speedup": r["flops_speedup"]} for r in rows)
    return points


def equal_speedup_table(dense: dict[str, Any] | None, rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per target, one column per method (accuracy, change vs dense, speedup, point)."""
    methods_ = sorted({r["method"] for r in rows})
    lines = ["| target | " + " | ".join(methods_) + " |", "|---|" + "---|" * len(methods_)]
    for x in dict.fromkeys(r["target"] for r in rows):
        cells = []
        for m in methods_:
            r = next(r for r in rows if r["target"] == x and r["method"] == m)
            if r["point"] is None:
                cells.append("no point that fast")
                continue
            delta = f" ({100 * (r['test_accuracy'] - dense['test_accuracy']):+.2f})" if dense else ""
            cells.append(f"{100 * r['test_accuracy']:.2f} %{delta} at {r['flops_speedup']:.2f}x ({r['point']})")
        lines.append(f"| {x:g}x | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(dense: dict[str, Any] | None, points: dict[str, list[dict[str, Any]]]) -> str:
    lines = ["| method | point | test accuracy | vs dense | FLOPs speedup |", "|---|---|---|---|---|"]
    from adapler import methods
    rows = ([(methods.dense().name, dense)] if dense else []) + \
        [(m, r) for m in sorted(points) for r in sorted(points[m], key=lambda r: r["flops_speedup"])]
    for method, r in rows:
        delta = f"{100 * (r['test_accuracy'] - dense['test_accuracy']):+.2f}" if dense and r is not dense else "—"
        lines.append(f"| {method} | {r['label']} | {100 * r['test_accuracy']:.2f} % | {delta} | {r['flops_speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+", help="evaluate --json outputs and/or sweep-<method>.json files")
    ap.add_argument("--out", required=True, help="plot path (.png)")
    ap.add_argument("--title", default="", help="data set name for the plot title")
    ap.add_argument("--targets", default="", help="comma-separated speedups to compare the methods at, e.g. 2,4,8")
    args = ap.parse_args(argv)
    try:
        from adapler.bench.main import parse_targets
        targets = parse_targets(args.targets)
        dense, points = load_points(args.files)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from adapler.bench.plots import plot_accuracy_vs_flops
    from adapler import methods
    models = {"fine-tuned": {"method": methods.dense().name, "accuracy": dense["test_accuracy"], "flops_speedup": 1.0}} if dense else {}
    plot_accuracy_vs_flops({"models": models, "config": {"data": args.title}}, args.out, sweeps=points)
    print(table(dense, points))
    if targets:
        print()
        print(equal_speedup_table(dense, at_equal_speedup(points, list(targets))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
