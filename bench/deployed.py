"""The deployed-speed table: every model on every ONNX Runtime form in one paired run.

A speedup only counts against what a user would deploy instead, so this step times, interleaved on
the same inputs, each model as ``<model>@<backend>`` for the backends ``ort-opt`` (dense: standard
export + ORT's transformer optimizer; pruned: ``model.ort.onnx``), ``ort-int8`` (the same, dynamic
int8), ``ort-packed`` / ``ort-packed-int8`` (``model.ort.packed[.int8].onnx`` of every model with a fused
graph, dense included: docs/deploy.md §10) and ``ort-custom`` (``model.onnx``). Ratios per entry:

- ``speedup``: against ``<dense>@ort-opt``, the optimized fp32 dense graph (the reference, 1.00x);
- ``speedup_same_precision``: against the dense model on the same backend (pruned int8 vs dense int8);
- ``packed_vs_padded``: a packed form against the same model's padded form of the same precision, where
  that is the very graph it packs (pruned: ``<model>@ort-opt`` runs ``model.ort.onnx``; the dense
  ``@ort-opt`` is the optimized standard export, so the dense packed rows have only ``speedup``).

``packed``: per packed form, parity with its padded graph on the entry's inputs (kept lengths equal,
max |logits difference|, as ``bench/packed.py``) and that graph's padding fraction per layer.
"""
from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from adapler.progress import log

from .backends import BackendContext, Feed, ModelSpec, Skip, release

BACKENDS = ("ort-opt", "ort-int8", "ort-packed", "ort-packed-int8", "ort-custom")  # reference backend first
ONLY_HERE = ("ort-opt", "ort-int8", "ort-packed", "ort-packed-int8")  # timed only in this table (not per backend)
PADDED = {"ort-packed": "ort-opt", "ort-packed-int8": "ort-int8"}  # the padded backend of the same precision


def reference_name(dense_name: str) -> str:
    return f"{dense_name}@ort-opt"


def padded_sessions(fns: Mapping[str, Any], ctx: BackendContext) -> dict[str, Any]:
    """Per packed form (a backend with ``.padded``), a session on its padded graph: the timed form's own
    session where one runs that file, else one opened for the parity check only."""
    from adapler.plugins.token_drop.ort_session import create_session
    timed = {f.path: f.session for f in fns.values() if hasattr(f, "path")}
    return {n: timed.get(f.padded) or create_session(f.padded, threads=ctx.threads)
            for n, f in fns.items() if hasattr(f, "padded")}


def packed_checks(fns: Mapping[str, Any], padded: Mapping[str, Any], feeds: Sequence[Feed]) -> dict[str, dict]:
    """``entry["packed"]``: per packed form, parity with its padded graph on ``feeds`` and the padded graph's
    padding fraction per layer (``1 - sum_b n_b / (B * max_b n_b)`` over the feeds)."""
    from .packed import outputs, padding_per_layer, parity
    out = {}
    for n, session in padded.items():
        ref = outputs(session, feeds)
        out[n] = {"padded_graph": Path(fns[n].padded).name, **parity(outputs(fns[n].session, feeds), ref),
                  "padding_fraction": padding_per_layer([kept for _, kept in ref])}
    return out


def vs_padded(fns: Mapping[str, Any]) -> dict[str, str]:
    """``{packed form: padded form}`` where the padded form's timed graph is the one the packed form packs."""
    pairs = {}
    for n, f in fns.items():
        model, backend = n.split("@")
        padded = f"{model}@{PADDED.get(backend)}"
        if hasattr(f, "padded") and getattr(fns.get(padded), "path", None) == f.padded:
            pairs[n] = padded
    return pairs


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
                log(f"[yellow]deployed: {name}@{b} skipped[/yellow] ({built.reason})")
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
    pairs = {"speedup_same_precision": same, "packed_vs_padded": vs_padded(fns)}
    padded = padded_sessions(fns, ctx)
    for key, feeds in sets.items():
        kind, value = key
        desc = f"deployed, {'batch' if kind == 'batch' else 'length'} {value}"
        gc.collect()
        checks = packed_checks(fns, padded, feeds)
        m = measure(fns, feeds, ref, desc=desc, pairs=pairs, **timing)
        entry = {"backend": "deployed", "reference": ref, "batch_size" if kind == "batch" else "length": value,
                 **input_stats(feeds), **{k: v for k, v in timing.items() if k in ("repeats", "warmup", "order")},
                 **m, "flops_speedup": {n: flops[key][n.split("@")[0]] for n in fns if not n.startswith(f"{dense_name}@")},
                 "packed": checks}
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
