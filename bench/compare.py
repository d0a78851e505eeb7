"""Regressions of a new results dict against an old results.json (``--compare OLD.json``).

Flagged, per model present in both:

- ``accuracy``: test accuracy dropped by more than ``accuracy_drop`` (0.005 = 0.5 point);
- ``flops_speedup``: new < old × (1 − ``tolerance``) (pruned models only);
- ``latency_speedup``: per (backend, batch size), the paired latency speedup vs the dense model
  (``median_of_ratios``) new < old × (1 − ``tolerance``).

Speedups, not absolute milliseconds, are compared: they are paired within one run, so they survive a
different load on the machine much better. Differences in the environment are listed, not judged.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import BenchError

ACCURACY_DROP = 0.005
ENV_KEYS = ("cpu_model", "cpu_affinity", "torch_threads", "ort_intra_op_threads", "ort_spinning", "cuda_device",
            "versions")


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"--compare: {path} does not exist")
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"--compare: {path} is not valid JSON ({e})") from None
    from .report import SCHEMA
    if not isinstance(old, dict) or old.get("schema") != SCHEMA:
        raise BenchError(f"--compare: {path} is not a benchmark results.json (missing \"schema\": \"{SCHEMA}\")")
    return old


def _worse(kind: str, model: str, old: float, new: float, tolerance: float, **where: Any) -> dict[str, Any] | None:
    if new >= old * (1 - tolerance):
        return None
    loc = "".join(f", {k.replace('_', ' ')} {v}" for k, v in where.items())
    return {"kind": kind, "model": model, **where, "old": old, "new": new, "change": new / old - 1,
            "threshold": -tolerance,
            "message": f"{model}{loc}: {kind.replace('_', ' ')} {old:.2f}x -> {new:.2f}x "
                       f"({100 * (new / old - 1):+.1f} %, tolerance {100 * tolerance:.0f} %)"}


def compare_results(old: dict, new: dict, tolerance: float = 0.1, accuracy_drop: float = ACCURACY_DROP) -> list[dict]:
    """The ``regressions`` list of results.json (empty: nothing got worse beyond the thresholds)."""
    dense = new["config"]["dense_name"]
    regs: list[dict] = []
    for name, m in new.get("models", {}).items():
        o = old.get("models", {}).get(name)
        if not o:
            continue
        if m["accuracy"] < o["accuracy"] - accuracy_drop:
            d = m["accuracy"] - o["accuracy"]
            regs.append({"kind": "accuracy", "model": name, "old": o["accuracy"], "new": m["accuracy"], "change": d,
                         "threshold": -accuracy_drop,
                         "message": f"{name}: test accuracy {100 * o['accuracy']:.2f}% -> {100 * m['accuracy']:.2f}% "
                                    f"({100 * d:+.2f} pt, allowed -{100 * accuracy_drop:.1f} pt)"})
        if name != dense:
            r = _worse("flops_speedup", name, o["flops_speedup"], m["flops_speedup"], tolerance)
            if r:
                regs.append(r)
    old_lat = {(e["backend"], e["batch_size"]): e for e in old.get("latency", [])}
    for e in new.get("latency", []):
        o = old_lat.get((e["backend"], e["batch_size"]))
        if not o:
            continue
        for name, s in e["speedup"].items():
            if name in o.get("speedup", {}):
                r = _worse("latency_speedup", name, o["speedup"][name]["median_of_ratios"], s["median_of_ratios"],
                           tolerance, backend=e["backend"], batch_size=e["batch_size"])
                if r:
                    regs.append(r)
    return regs


def compare_summary(old: dict, new: dict, path: str | Path, tolerance: float | None = None) -> dict[str, Any]:
    """The ``compare`` block: what was compared and which environment keys differ."""
    oe, ne = old.get("environment", {}), new.get("environment", {})
    return {"path": str(path), "old_created": old.get("created"), "old_commit": oe.get("git", {}).get("commit"),
            "tolerance": new["config"]["tolerance"] if tolerance is None else tolerance,
            "accuracy_drop": ACCURACY_DROP, "environment_differs": [k for k in ENV_KEYS if oe.get(k) != ne.get(k)]}
