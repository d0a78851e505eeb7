"""The deployed-speed table: every model on every ONNX Runtime form in one paired run.

A speedup only counts against what a user would deploy instead, so this step times, interleaved on
the same inputs, each model as ``<model>@<backend>`` for the backends ``ort-opt`` (dense: standard
export + ORT's transformer optimizer; pruned: ``model.ort.onnx``), ``ort-int8`` (the same, dynamic
int8) and ``ort-custom`` (``model.onnx``). Two ratios per entry:

- ``speedup``: against ``<dense>@ort-opt``, the optimized fp32 dense graph (the reference, 1.00x);
- ``speedup_same_precision``: against the dense model on the same backend (pruned int8 vs dense int8).
"""
from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from typing import Any

from adapler.progress import log

from .backends import BackendContext, Feed, ModelSpec, Skip, release

BACKENDS = ("ort-opt", "ort-int8", "ort-custom")  # reference backend first
ONLY_HERE = ("ort-opt", "ort-int8")  # timed only in this table (the per-backend loop skips them)


def reference_name(dense_name: str) -> str:
    return f"{dense_name}@ort-opt"


def run_deployed(results: dict, save, specs: Mapping[str, ModelSpec], dense_name: str, factories: Mapping[str, Any],
                 ctx: BackendContext, sets: Mapping[tuple[str, int], Sequence[Feed]],
                 flops: Mapping[tuple[str, int], Mapping[str, float]], measure, **timing: Any) -> None:
    """Append one ``results["deployed"]`` entry per input set (batch sizes, then lengths); ``save()`` after each."""
    from .run import input_stats
    backends = [b for b in BACKENDS if b in factories]
    if not any(b in factories for b in ONLY_HERE):
        return
    ref = reference_name(dense_name)
    fns, skipped = {}, {}
    for b in backends:
        for name, spec in specs.items():
            built = factories[b](spec, ctx)
            if isinstance(built, Skip):
                skipped[f"{name}@{b}"] = built.reason
            else:
                fns[f"{name}@{b}"] = built
    for b in ONLY_HERE:
        if b in factories:
            mine = {k: v for k, v in skipped.items() if k.endswith(f"@{b}")}
            dense_skip = mine.get(f"{dense_name}@{b}")
            results["backends"][b] = {"status": "skipped" if dense_skip else "ran", "reason": dense_skip,
                                      "skipped_models": {k.split("@")[0]: v for k, v in mine.items()}}
    save()
    if ref not in fns:
        log(f"[yellow]deployed table skipped[/yellow] ({skipped.get(ref, 'no reference graph')})")
        for fn in fns.values():
            release(fn)
        return
    same = {n: f"{dense_name}@{n.split('@')[1]}" for n in fns
            if not n.startswith(f"{dense_name}@") and f"{dense_name}@{n.split('@')[1]}" in fns}
    for key, feeds in sets.items():
        kind, value = key
        desc = f"deployed, {'batch' if kind == 'batch' else 'length'} {value}"
        gc.collect()
        m = measure(fns, feeds, ref, desc=desc, same_precision=same, **timing)
        entry = {"backend": "deployed", "reference": ref, "batch_size" if kind == "batch" else "length": value,
                 **input_stats(feeds), **{k: v for k, v in timing.items() if k in ("repeats", "warmup", "order")},
                 **m, "flops_speedup": {n: flops[key][n.split("@")[0]] for n in fns if not n.startswith(f"{dense_name}@")}}
        if kind == "length":
            entry["batch_size"] = 1
        results["deployed"].append(entry)
        if kind == "batch":
            log(f"{desc}: {ref} {m['models'][ref]['median_ms']:.2f} ms; " +
                ", ".join(f"{n} {v['median_of_ratios']:.2f}x" for n, v in m["speedup"].items()))
        save()
    lengths = [e for e in results["deployed"] if "length" in e]
    if lengths:  # the per-call cost no token saving can remove (weights streamed, node launches)
        from .run import fixed_cost
        results["fixed_cost"]["deployed"] = {
            n: fixed_cost([(e["length"], e["models"][n]["median_ms"]) for e in lengths]) for n in fns}
        save()
    for fn in fns.values():
        release(fn)
