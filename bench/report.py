"""results.json (schema in bench/README.md), results.md, a rich terminal table, and the plots."""
from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

SCHEMA = "adapler-bench"
SCHEMA_VERSION = 1
NOISE_FLOOR = 0.03  # docs/deploy.md §8: the same model timed against itself differs by up to ~3 % at the median

# --------------------------------------------------------------------------------------------- schema
# Key -> type(s) of every documented key; check_schema() checks results against it, bench/README.md explains it.
N = type(None)
TOP = {"schema": str, "schema_version": int, "status": str, "created": str, "updated": str, "config": dict,
       "environment": dict, "models": dict, "backends": dict, "latency": list, "latency_vs_length": list,
       "fixed_cost": dict, "compare": (dict, N), "regressions": list, "files": dict}
CONFIG = {"data": str, "n_test": int, "dense_name": str, "models": dict, "batch_sizes": list, "backends": list,
          "n_latency_examples": int, "repeats": int, "warmup": int, "order": str, "lengths": list,
          "n_length_inputs": int, "tolerance": float, "seed": int, "eval_batch_size": int,
          "speedup_definition": str, "compare": (str, N), "sweeps": (str, N)}
ENVIRONMENT = {"date": str, "hostname": str, "platform": str, "python": str, "cpu_model": (str, N),
               "cpu_count": (int, N), "cpu_affinity": (int, N), "load_average": (list, N), "torch_threads": int,
               "ort_intra_op_threads": (int, N), "ort_spinning": (str, bool), "cuda_device": (str, N), "versions": dict,
               "git": dict}
MODEL = {"checkpoint": str, "method": str, "mode": str, "n_examples": int, "max_length": int, "n_truncated": int,
         "accuracy": float, "flops_speedup": float, "gflops_per_example": float, "dense_gflops_per_example": float,
         "mean_length": float, "mean_kept_lengths": list}
BACKEND = {"status": str, "reason": (str, N), "skipped_models": dict}
SUMMARY = {"median_ms": float, "p90_ms": float, "mean_ms": float, "min_ms": float, "n": int,
           "median_ms_per_example": float}
SPEEDUP = {"median_of_ratios": float, "ratio_of_medians": float, "n_pairs": int}
LATENCY = {"backend": str, "batch_size": int, "n_inputs": int, "examples_per_input": float, "mean_tokens": float,
           "mean_padded_length": float, "repeats": int, "warmup": int, "order": str, "models": dict,
           "speedup": dict, "flops_speedup": dict}
LENGTH = {**LATENCY, "length": int}
DEPLOYED = {"reference": str, "speedup_same_precision": dict, "packed": dict, "packed_vs_padded": dict}
PACKED = {"padded_graph": str, "kept_lengths_equal": bool, "max_abs_logit_diff": float, "padding_fraction": list}
AT_TARGET = {"target": float, "method": str, "point": (str, N), "test_accuracy": (float, N),
             "flops_speedup": (float, N)}
REGRESSION = {"kind": str, "model": str, "old": float, "new": float, "change": float, "threshold": float,
              "message": str}


def _check(obj: Any, spec: dict, where: str, problems: list[str]) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object, got {type(obj).__name__}")
        return
    for key, types in spec.items():
        types = types if isinstance(types, tuple) else (types,)
        if float in types:
            types = types + (int,)
        if key not in obj:
            problems.append(f"{where}.{key}: missing")
        elif not isinstance(obj[key], types) or (isinstance(obj[key], bool) and bool not in types):
            problems.append(f"{where}.{key}: {type(obj[key]).__name__} is not {'/'.join(t.__name__ for t in types)}")


def check_schema(results: dict) -> list[str]:
    """Problems of ``results`` against the documented schema (empty list: conforms)."""
    p: list[str] = []
    _check(results, TOP, "results", p)
    if p:
        return p
    _check(results["config"], CONFIG, "config", p)
    _check(results["environment"], ENVIRONMENT, "environment", p)
    for name, m in results["models"].items():
        _check(m, MODEL, f"models.{name}", p)
    for name, b in results["backends"].items():
        _check(b, BACKEND, f"backends.{name}", p)
    for i, e in enumerate(results["latency"] + results["latency_vs_length"]):
        where = f"{'latency' if i < len(results['latency']) else 'latency_vs_length'}[{i}]"
        _check(e, LENGTH if "length" in e else LATENCY, where, p)
        for n, s in e.get("models", {}).items():
            _check(s, SUMMARY, f"{where}.models.{n}", p)
        for n, s in e.get("speedup", {}).items():
            _check(s, SPEEDUP, f"{where}.speedup.{n}", p)
    for i, e in enumerate(results.get("deployed", [])):  # optional: files from before the deployed table lack it
        old = "packed" not in e  # files from before the packed rows: no packed, packed_vs_padded
        spec = {k: v for k, v in DEPLOYED.items() if not (old and k.startswith("packed"))}
        _check(e, {**(LENGTH if "length" in e else LATENCY), **spec}, f"deployed[{i}]", p)
        for n, c in e.get("packed", {}).items():
            _check(c, PACKED, f"deployed[{i}].packed.{n}", p)
        for n, s in e.get("packed_vs_padded", {}).items():
            _check(s, SPEEDUP, f"deployed[{i}].packed_vs_padded.{n}", p)
    for i, r in enumerate(results.get("at_targets", [])):  # optional: only with --targets
        _check(r, AT_TARGET, f"at_targets[{i}]", p)
    for i, r in enumerate(results["regressions"]):
        _check(r, REGRESSION, f"regressions[{i}]", p)
    return p


# --------------------------------------------------------------------------------------------- files

def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def save_results(results: dict, path: str | Path) -> Path:
    """Atomic write (temporary sibling + rename): an interrupted write never leaves half a file."""
    path = Path(path)
    results["updated"] = now()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def write_reports(results: dict, out: str | Path, *, sweeps: str | Path | None = None, plots: bool = True) -> dict:
    """results.md and (with ``plots``) accuracy_vs_flops.png + latency_vs_length.png; records them in ``files``."""
    from adapler.progress import log
    out = Path(out)
    files = {"results_json": "results.json", "results_md": "results.md"}
    if plots:
        from .plots import plot_accuracy_vs_flops, plot_latency_vs_length
        for key, fn, args in (("accuracy_vs_flops", plot_accuracy_vs_flops, (sweeps,)),
                              ("latency_vs_length", plot_latency_vs_length, ())):
            try:
                written = fn(results, out / f"{key}.png", *args)
                files[key] = written.name if written else None
            except Exception as e:  # a plot must never cost the measurements
                log(f"[yellow]{key}.png not written[/yellow]: {type(e).__name__}: {e}")
                files[key] = None
    results["files"] = files
    (out / "results.md").write_text(markdown(results))
    return files


# --------------------------------------------------------------------------------------------- text

def busy(env: dict) -> bool:
    """The machine was busy at the start (1-minute load average >= half the usable cores)."""
    load, cores = env.get("load_average"), env.get("cpu_affinity") or env.get("cpu_count") or 1
    return bool(load) and load[0] >= 0.5 * cores


def _x(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}×"


def _kept(m: dict) -> str:
    return " ".join(f"{v:.1f}" for v in m.get("mean_kept_lengths", []))


def _vs_dense(m: dict) -> str:
    v = m.get("accuracy_vs_dense")
    if not v:
        return "—"
    lo, hi = v["ci95_points"]
    return f"{v['diff_points']:+.2f} ({lo:+.2f} to {hi:+.2f})"


def _f1(m: dict) -> str:
    v = m.get("f1", m.get("macro_f1"))
    return "—" if v is None else f"{100 * v:.1f}"


def latency_rows(results: dict) -> list[list[str]]:
    """One row per (backend, batch size, model) of the batch latency table."""
    dense = results["config"]["dense_name"]
    rows = []
    for e in results["latency"]:
        for name, s in e["models"].items():
            sp = e["speedup"].get(name)
            rows.append([e["backend"], str(e["batch_size"]), name, f"{s['median_ms']:.2f}", f"{s['p90_ms']:.2f}",
                         f"{s['median_ms_per_example']:.3f}",
                         "1.00× (ref.)" if name == dense else _x(sp and sp["median_of_ratios"]),
                         "—" if name == dense else _x(sp and sp["ratio_of_medians"]),
                         "1.00×" if name == dense else _x(e["flops_speedup"].get(name))])
    return rows


def deployed_rows(results: dict, kind: str = "batch_size") -> list[list[str]]:
    """One row per (batch size or length, model@backend) of the deployed table; the reference first."""
    rows = []
    for e in results.get("deployed", []):
        if kind == "batch_size" and "length" in e:
            continue
        if kind == "length" and "length" not in e:
            continue
        for name, s in e["models"].items():
            sp, same = e["speedup"].get(name), e.get("speedup_same_precision", {}).get(name)
            pvp = e.get("packed_vs_padded", {}).get(name)
            rows.append([str(e[kind]), name, f"{s['median_ms']:.2f}",
                         "1.00× (ref.)" if name == e["reference"] else _x(sp and sp["median_of_ratios"]),
                         _x(same and same["median_of_ratios"]), _x(pvp and pvp["median_of_ratios"]),
                         _x(e["flops_speedup"].get(name))])
    return rows


DEPLOYED_HEADER = ["median ms", "vs dense ORT-optimized fp32", "vs dense, same backend", "packed vs padded", "FLOPs"]


def ceiling_rows(results: dict) -> list[list[str]]:
    """Per pruned model@backend at batch 1: the speedup over the dense model in the same form that its FLOPs
    speedup S allows when the dense model's per-call cost a (the ``fixed_cost`` intercept, measured with
    ``--lengths``) stays, T / (a + (T - a) / S) with T the dense latency on the same texts (Amdahl's law with
    a as the part no token saving removes), next to what was measured. Empty without lengths."""
    fixed = (results.get("fixed_cost") or {}).get("deployed") or {}
    one = [e for e in results.get("deployed", []) if e.get("batch_size") == 1 and "length" not in e]
    if not fixed or not one:
        return []
    e = one[0]
    dense_name = e["reference"].split("@")[0]
    rows = []
    for name, same in e.get("speedup_same_precision", {}).items():
        ref = f"{dense_name}@{name.split('@')[1]}"
        a, s = (fixed.get(ref) or {}).get("intercept_ms"), e["flops_speedup"].get(name)
        if ref not in e["models"] or not a or a <= 0 or not s:
            continue
        t = e["models"][ref]["median_ms"]
        ceiling = t / (a + (t - a) / s)
        got = same["median_of_ratios"]
        rows.append([name, _x(s), f"{a:.2f} of {t:.2f}", _x(ceiling), _x(got), f"{ceiling / s:.2f}", f"{got / s:.2f}",
                     f"{got / ceiling:.2f}"])
    return rows


def packed_rows(results: dict) -> list[list[str]]:
    """One row per (deployed entry, packed form): its padded graph's padding fraction per layer and the parity."""
    rows = []
    for e in results.get("deployed", []):
        where = f"length {e['length']}" if "length" in e else str(e["batch_size"])
        for name, c in e.get("packed", {}).items():
            rows.append([where, name, f"`{c['padded_graph']}`", ", ".join(f"{v:.2f}" for v in c["padding_fraction"]),
                         "yes" if c["kept_lengths_equal"] else "**no**", f"{c['max_abs_logit_diff']:.1e}"])
    return rows


def at_target_rows(results: dict) -> list[list[str]]:
    """target, method, test accuracy, FLOPs speedup, point (``at_targets``; "—": no point that fast)."""
    return [[f"{r['target']:g}×", r["method"],
             "—" if r["point"] is None else f"{100 * r['test_accuracy']:.2f}%", _x(r["flops_speedup"]),
             r["point"] or "no point that fast"] for r in results.get("at_targets", [])]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(results: dict) -> str:
    cfg, env = results["config"], results["environment"]
    dense = cfg["dense_name"]
    out = [f"# Benchmark: {', '.join(results['models']) or 'no models'} on {cfg['data']}", "",
           f"Status: **{results['status']}**; created {results['created']}, updated {results['updated']}.", ""]
    if busy(env):
        out += [f"**Warning:** the load average was {env['load_average'][0]:.1f} on {env['cpu_affinity']} usable cores "
                "when the run started: another job was using the CPU and latencies are unreliable.", ""]
    if results["models"]:
        out += ["## Accuracy and FLOPs (full test split)", "",
                f"**vs {dense}**: the accuracy difference to the dense model on the same test texts, in points, with "
                "its 95 % paired-bootstrap interval: a gap whose interval holds 0 is not resolved by this split.", "",
                _table(["model", "method", "accuracy %", f"vs {dense} (95 % interval)", "F1 %", "FLOPs speedup",
                        "GFLOPs/example", "mean length", "mean kept length per layer"],
                       [[n, m["method"], f"{100 * m['accuracy']:.2f}", _vs_dense(m), _f1(m), _x(m["flops_speedup"]),
                         f"{m['gflops_per_example']:.4g}", f"{m['mean_length']:.1f}", _kept(m)]
                        for n, m in results["models"].items()]), ""]
    if results.get("at_targets"):
        out += ["## Accuracy at equal speedup", "",
                "Each method's most accurate point (test split) whose FLOPs speedup is at least 90 % of the target, "
                "from the models above and the sweep files (`sweep --targets` / `--values` runs).", "",
                _table(["target", "method", "test accuracy", "FLOPs speedup", "point"], at_target_rows(results)), ""]
    if results["latency"]:
        out += ["## Latency (paired, interleaved)", "",
                f"{cfg['n_latency_examples']} sampled test examples, {cfg['repeats']} timed repetitions per input "
                f"after {cfg['warmup']} untimed, order {cfg['order']}. **speedup** = {cfg['speedup_definition']}; "
                f"differences within ~{100 * NOISE_FLOOR:.0f} % are noise. FLOPs speedup is on the same inputs.", "",
                _table(["backend", "batch", "model", "median ms", "p90 ms", "ms/example", f"speedup vs {dense}",
                        "ratio of medians", "FLOPs speedup"], latency_rows(results)), ""]
    if results.get("deployed"):
        ref = results["deployed"][0]["reference"]
        out += ["## Deployed speed (paired, interleaved, every ONNX Runtime form in one run)", "",
                f"Reference: `{ref}`, the dense model exported the standard way and optimized by ONNX Runtime's "
                "transformer optimizer. `ort-int8` is dynamic int8 (dense: `quantize_dynamic` defaults; pruned: "
                "encoder MatMul/Attention only); `ort-custom` is `model.onnx`; `ort-packed` / `ort-packed-int8` are "
                "`model.ort.packed[.int8].onnx`, the fused graph padding-free (docs/deploy.md §10). \"vs dense, same "
                "backend\" compares with the dense model in the same form (pruned int8 vs dense int8); \"packed vs "
                "padded\" with the same model's `model.ort[.int8].onnx` (pruned models: the `ort-opt` / `ort-int8` "
                "row; the dense `ort-opt` is the standard export, so for it read \"vs dense ORT-optimized\").", "",
                _table(["batch", "model@backend"] + DEPLOYED_HEADER, deployed_rows(results)), ""]
        if any("length" in e for e in results["deployed"]):
            out += ["Batch 1 at fixed lengths:", "",
                    _table(["length", "model@backend"] + DEPLOYED_HEADER, deployed_rows(results, "length")), ""]
        if packed_rows(results):
            out += ["Packed forms against their padded graph on the same inputs: the padded graph's padding fraction "
                    "per layer (`1 - sum n / (B max n)` over the inputs: the share of its token slots that the packed "
                    "form's token-wise work skips) and the parity (kept lengths, max |logits difference|):", "",
                    _table(["batch", "packed form", "padded graph", "padding fraction per layer", "kept lengths equal",
                            "max abs logit diff"], packed_rows(results)), ""]
    if results["latency_vs_length"]:
        out += ["## Latency vs sequence length (batch 1)", ""]
        names = list(results["models"])
        rows = []
        for e in results["latency_vs_length"]:
            rows.append([e["backend"], str(e["length"])] +
                        [f"{e['models'][n]['median_ms']:.2f}" if n in e["models"] else "—" for n in names] +
                        [f"{_x(e['speedup'][n]['median_of_ratios'])} / {_x(e['flops_speedup'].get(n))}"
                         if n in e["speedup"] else "—" for n in names if n != dense])
        others = [n for n in names if n != dense]
        out += [_table(["backend", "length"] + [f"{n} ms" for n in names] +
                       [f"{n} latency / FLOPs speedup" for n in others], rows), ""]
    if results["fixed_cost"]:
        out += ["Fixed cost per call (intercept of a line through the median latencies of the shortest lengths): " +
                "; ".join(f"{b}: " + ", ".join(f"{n} {v['intercept_ms']:.2f} ms" for n, v in fc.items() if v)
                          for b, fc in results["fixed_cost"].items()) + ".", ""]
        ceiling = ceiling_rows(results)
        if ceiling:
            out += ["What that cost leaves to gain at batch 1: a model at S x FLOPs can be at most T / (a + (T - a) / S) "
                    "faster than the dense model in its form, a being the dense per-call cost and T its latency on the "
                    "batch-1 texts (the rest assumed to shrink with the FLOPs, the selection free):", "",
                    _table(["model@backend", "FLOPs", "dense per-call ms (of T)", "ceiling", "measured",
                            "ceiling / FLOPs", "measured / FLOPs", "measured / ceiling"], ceiling), ""]
    skipped = [(b, s) for b, s in results["backends"].items() if s["status"] != "ran" or s["skipped_models"]]
    if skipped:
        out += ["## Skipped", ""]
        for b, s in skipped:
            if s["status"] == "skipped":
                out.append(f"- **{b}**: {s['reason']}")
            for n, r in s["skipped_models"].items():
                if s["status"] == "ran":
                    out.append(f"- **{b}** / {n}: {r}")
        out.append("")
    if results["compare"] is not None:
        c = results["compare"]
        out += ["## Comparison", "", f"Against `{c['path']}` (tolerance {100 * c.get('tolerance', 0):.0f} % "
                                     "relative, accuracy drop > 0.5 pt)."]
        if c.get("error"):
            out.append(f"- comparison failed: {c['error']}")
        out += [f"- REGRESSION {r['message']}" for r in results["regressions"]] or ["- no regressions"]
        if c.get("environment_differs"):
            out.append(f"- environment differs: {', '.join(c['environment_differs'])}")
        out.append("")
    git = env.get("git", {})
    out += ["## Environment", "", _table(["key", "value"], [
        ["date", env["date"]], ["CPU", f"{env['cpu_model']} ({env['cpu_affinity']} usable of {env['cpu_count']})"],
        ["load average at start", str(env.get("load_average"))], ["torch threads", str(env["torch_threads"])],
        ["ORT intra-op threads", str(env["ort_intra_op_threads"])], ["ORT spinning", str(env["ort_spinning"])],
        ["CUDA device", str(env["cuda_device"])],
        ["versions", ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)],
        ["git", f"{git.get('commit')}{' (dirty)' if git.get('dirty') else ''}"]]), ""]
    return "\n".join(out)


def print_summary(results: dict, console=None) -> None:
    """Rich tables: models, then latency per backend × batch size."""
    from rich.console import Console
    from rich.table import Table
    console = console or Console()
    t = Table(title=f"{results['config']['data']}: accuracy and FLOPs (test)")
    for col in ("model", "accuracy", "FLOPs speedup", "kept length per layer"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for n, m in results["models"].items():
        t.add_row(n, f"{100 * m['accuracy']:.2f}%", _x(m["flops_speedup"]), _kept(m))
    console.print(t)
    if results.get("at_targets"):
        t = Table(title="accuracy at equal speedup (test; at least 90 % of each target)")
        for col in ("target", "method", "accuracy", "FLOPs", "point"):
            t.add_column(col, justify="left" if col in ("method", "point") else "right")
        for row in at_target_rows(results):
            t.add_row(*row)
        console.print(t)
    if results["latency"]:
        dense = results["config"]["dense_name"]
        t = Table(title=f"latency (paired ABBA; speedup = median of per-input ratios vs {dense})")
        for col in ("backend", "batch", "model", "median ms", "p90 ms", "ms/example", "speedup", "ratio of medians",
                    "FLOPs speedup"):
            t.add_column(col, justify="left" if col in ("backend", "model") else "right")
        for row in latency_rows(results):
            t.add_row(*row)
        console.print(t)
    if results.get("deployed"):
        t = Table(title=f"deployed speed (ONNX Runtime; reference {results['deployed'][0]['reference']})")
        for col in ["batch", "model@backend", "median ms", "vs ref.", "vs same form", "vs padded", "FLOPs"]:
            t.add_column(col, justify="left" if col == "model@backend" else "right", no_wrap=col == "model@backend")
        for row in deployed_rows(results):
            t.add_row(*[c.replace(" (ref.)", "") for c in row])
        console.print(t)
        for e in results["deployed"]:  # per layer, int8 and parity: results.md
            fp32 = {n.split("@")[0]: c["padding_fraction"] for n, c in e.get("packed", {}).items()
                    if n.endswith("@ort-packed")}
            if fp32 and "length" not in e:
                console.print(f"batch {e['batch_size']}: padding fraction of the padded graphs (mean over layers) " +
                              ", ".join(f"{n} {sum(v) / len(v):.2f}" for n, v in fp32.items()))
    for b, s in results["backends"].items():
        if s["status"] == "skipped":
            console.print(f"[yellow]{b} skipped[/yellow]: {s['reason']}")
    for r in results["regressions"]:
        console.print(f"[red]REGRESSION[/red] {r['message']}")
