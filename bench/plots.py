"""PNG plots of a results dict (matplotlib, Agg: ``Figure`` objects only, no pyplot state, no display).

- ``accuracy_vs_flops.png``: one point per benchmarked model; with a sweep folder, every
  ``sweep-<method>.json`` point faintly and its Pareto front (max accuracy for at least this speedup) as a line.
- ``latency_vs_length.png``: one column per backend; top, median batch-1 latency vs length per model
  (dense dashed); bottom, latency speedup (solid) next to FLOPs speedup (dotted) on the same inputs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapler import methods

COLORS = {m.name: m.color for m in methods.all_methods()}
_EXTRA = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


def color(key: str, _seen: dict[str, str] = {}) -> str:  # noqa: B006 (a deliberate per-process palette)
    if key in COLORS:
        return COLORS[key]
    if key not in _seen:
        _seen[key] = _EXTRA[len(_seen) % len(_EXTRA)]
    return _seen[key]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def load_sweeps(folder: str | Path | None) -> dict[str, list[dict[str, Any]]]:
    """``{method: [points]}`` from ``folder/sweep-<method>.json`` (unreadable files are skipped)."""
    if folder is None or not Path(folder).is_dir():
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(Path(folder).glob("sweep-*.json")):
        try:
            rows = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows = [r for r in rows if isinstance(r, dict) and "flops_speedup" in r and "test_accuracy" in r]
        if rows:
            out[p.stem[len("sweep-"):]] = rows
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (speedup, accuracy) not beaten on both axes by another, sorted by speedup."""
    front, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return sorted(front)


def plot_accuracy_vs_flops(results: dict, path: str | Path, sweep_dir: str | Path | None = None,
                           sweeps: dict[str, list[dict[str, Any]]] | None = None) -> Path | None:
    """Bench models as markers; sweep points (``sweeps`` or the files in ``sweep_dir``) with their Pareto fronts."""
    sweeps = sweeps if sweeps is not None else load_sweeps(sweep_dir)
    if not results.get("models") and not sweeps:
        return None
    fig = _figure(6.4, 4.6)
    ax = fig.subplots()
    for method, rows in sweeps.items():
        pts = [(float(r["flops_speedup"]), 100 * float(r["test_accuracy"])) for r in rows]
        ax.scatter(*zip(*pts), s=18, alpha=0.35, color=color(method))
        front = pareto_front(pts)
        ax.plot(*zip(*front), "-", lw=1.4, alpha=0.8, color=color(method), label=f"{method} (Pareto front)")
    for name, m in results.get("models", {}).items():
        x, y = float(m["flops_speedup"]), 100 * float(m["accuracy"])
        ax.scatter([x], [y], s=70, marker="*" if m["method"] == methods.dense().name else "o", color=color(m["method"]),
                   edgecolor="white", zorder=3, label=name)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("FLOPs speedup vs dense (×, unpadded lengths, predictor overhead included)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"accuracy vs FLOPs speedup — {results.get('config', {}).get('data', '')}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    path = Path(path)
    fig.savefig(path)
    return path


def plot_latency_vs_length(results: dict, path: str | Path) -> Path | None:
    """One column per backend, plus a "deployed" column (every ORT form vs the optimized dense graph)."""
    entries = results.get("latency_vs_length", []) + [e for e in results.get("deployed", []) if "length" in e]
    backends = list(dict.fromkeys(e["backend"] for e in entries))
    if not backends:
        return None
    from matplotlib.ticker import FormatStrFormatter
    fig = _figure(4.2 * len(backends), 6.4)
    axes = fig.subplots(2, len(backends), squeeze=False, sharex=True)
    for j, b in enumerate(backends):
        rows = sorted((e for e in entries if e["backend"] == b), key=lambda e: e["length"])
        dense = rows[0].get("reference", results["config"]["dense_name"])
        top, bottom = axes[0][j], axes[1][j]
        names = list(dict.fromkeys(n for e in rows for n in e["models"]))
        flops_drawn: set[str] = set()  # the FLOPs speedup is the model's, whatever the runtime form: one line each
        for n in names:
            pts = [(e["length"], e["models"][n]["median_ms"]) for e in rows if n in e["models"]]
            model, _, form = n.partition("@")
            method = results.get("models", {}).get(model, {}).get("method", model)
            style = "--" if n == dense else {"ort-int8": "-.", "ort-custom": ":"}.get(form, "-")
            col = color(method if form in ("", "ort-opt") else f"{method}@{form}")
            top.plot(*zip(*pts), style, marker="o", ms=3, color=col, label=n)
            if n == dense:
                continue
            sp = [(e["length"], e["speedup"][n]["median_of_ratios"]) for e in rows if n in e["speedup"]]
            fl = [(e["length"], e["flops_speedup"][n]) for e in rows if n in e["flops_speedup"]]
            if sp:
                bottom.plot(*zip(*sp), "-", marker="o", ms=3, color=col, label=f"{n} latency")
            if fl and model not in flops_drawn:
                flops_drawn.add(model)
                bottom.plot(*zip(*fl), ":", marker="x", ms=3, color=col, label=f"{model} FLOPs")
        top.set_xscale("log", base=2)
        top.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        top.set_ylim(bottom=0)
        top.set_title(b, fontsize=10)
        top.set_ylabel("median latency, batch 1 (ms)")
        bottom.axhline(1.0, color="grey", lw=0.8, ls=":")
        bottom.set_xlabel("sequence length (tokens)")
        bottom.set_ylabel(f"speedup vs {dense} (×)")
        for ax in (top, bottom):
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    path = Path(path)
    fig.savefig(path)
    return path
