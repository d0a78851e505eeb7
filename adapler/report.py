"""Terminal tables (rich)."""
from __future__ import annotations

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
