"""Terminal tables (rich)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def metrics_table(m: dict[str, Any], title: str | None = None) -> None:
    t = Table(title=title or f"{m.get('method', '?')} on {m.get('data', '?')} ({m.get('split', '?')})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key in ("n_examples", "batch_size", "accuracy", "f1", "macro_f1", "flops_speedup", "mean_length",
                "latency_ms_per_example", "n_truncated"):
        if key in m:
            v = m[key]
            t.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    if "mean_kept_lengths" in m:
        t.add_row("mean kept length per layer", " ".join(f"{v:.1f}" for v in m["mean_kept_lengths"]))
    console.print(t)


def training_table(out: Path) -> None:
    """One table at the end of ``train``: per epoch dev accuracy, FLOPs speedup, knob and kept lengths, the
    selected epoch marked and the rule that chose it (from history.json and best/config.json)."""
    from .checkpoint import CheckpointError, read_config
    try:
        history = json.loads((out / "history.json").read_text())
        best = read_config(out / "best")
    except (OSError, ValueError, CheckpointError):
        return  # nothing trained (e.g. no epochs): no table
    rows = [r for r in history if "dev_accuracy" in r]
    phased = any("phase" in r for r in rows)
    t = Table(title=f"{best.get('method', '?')} in {out} (dev)",
              caption=f"selected: {best.get('selection', '?')}")
    for name in (["phase"] if phased else []) + ["epoch", "accuracy", "FLOPs speedup", "knob", "kept per layer",
                                                 "selected"]:
        t.add_column(name, justify="left" if name in ("phase", "kept per layer") else "right")
    for r in rows:
        chosen = r.get("epoch") == best.get("epoch") and r.get("phase") == best.get("phase")
        knob = next((f"{k} {r[k]:.3g}" for k in ("phi", "alpha") if isinstance(r.get(k), (int, float))), "")
        if r.get("retention"):
            knob = "l " + " ".join(map(str, r["retention"]))  # PoWER-BERT's per-layer retention
        cells = ([r.get("phase", "")] if phased else []) + [
            str(r["epoch"]), f"{100 * r['dev_accuracy']:.2f} %", f"{r['dev_flops_speedup']:.2f}x", knob,
            " ".join(f"{v:.1f}" for v in r.get("dev_mean_kept_lengths", [])), "<-" if chosen else ""]
        t.add_row(*cells)
    console.print(t)
