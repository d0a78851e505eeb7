"""``run_bench``: accuracy, FLOPs and paired latency of dense vs pruned models on every backend.

Order of work (``results.json`` is rewritten after every numbered step that finishes, so Ctrl-C keeps it):

1. per model: test accuracy, FLOPs speedup (``adapler.evaluate``), mean kept length per layer;
2. per backend: build every model's callable (export, session; or a skip reason), then
   a. per batch size, one interleaved ABBA run of *all* models on the same sampled test inputs,
      the dense model included, so every speedup is a paired ratio;
   b. per sequence length (long test texts truncated to each length, batch 1), the same;
3. ``--compare``: regressions against an older results.json; then results.md and the plots.
"""
from __future__ import annotations

import gc
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adapler.progress import log

from . import BenchError
from .backends import BackendContext, Feed, ModelSpec, Skip, release, resolve_backends
from .environment import collect_environment
from .report import SCHEMA, SCHEMA_VERSION, busy, now, save_results, write_reports
from .timing import ratio, summarize, time_paired

DEFAULT_BACKENDS = ("torch", "ort-custom", "ort-std", "ort-opt", "ort-int8", "ort-packed", "ort-packed-int8",
                    "torch-cuda", "tensorrt")
DEFAULT_LENGTHS = (16, 32, 64, 128, 256)
SPEEDUP_DEFINITION = ("median over inputs of the paired per-input ratio median(dense calls) / "
                      "median(model calls); timings interleaved in ABBA order on the same inputs")


# ------------------------------------------------------------------------------------------------ inputs

def to_feed(enc) -> Feed:
    return {k: getattr(enc, k).numpy().astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def sample_examples(examples: Sequence, n: int, seed: int = 0) -> list:
    return random.Random(seed).sample(list(examples), min(n, len(examples)))


def batch_feeds(sample: Sequence, tokenizer, max_length: int, batch_size: int) -> list[Feed]:
    """Consecutive groups of ``batch_size`` sampled examples (an incomplete last group is dropped unless
    it is the only one), each padded to its own longest row, as ``adapler.data.batches`` does."""
    from adapler.data import encode
    groups = [sample[i:i + batch_size] for i in range(0, len(sample), batch_size)]
    if len(groups) > 1 and len(groups[-1]) < batch_size:
        groups = groups[:-1]
    return [to_feed(encode(g, tokenizer, max_length)) for g in groups]


def length_feeds(sample: Sequence, tokenizer, lengths: Sequence[int], n_inputs: int) -> dict[int, list[Feed]]:
    """Batch-1 inputs of exactly each length: ``n_inputs`` long texts (sampled test texts joined until
    long enough), each cut to every length with [SEP] kept as the last token."""
    longest = max(lengths)
    texts = [e.text for e in sample] or ["."]
    sep = getattr(tokenizer, "sep_token_id", None)
    feeds: dict[int, list[Feed]] = {L: [] for L in lengths}
    for j in range(n_inputs):
        parts, k = [], j
        while True:
            parts.append(texts[k % len(texts)])
            k += n_inputs
            ids = tokenizer(" ".join(parts), truncation=True, max_length=longest)["input_ids"]
            if len(ids) >= longest or len(parts) > 4 * longest:
                break
        for L in lengths:
            row = list(ids[:L])
            if sep is not None and len(row) == L:
                row[-1] = sep
            a = np.asarray([row], dtype=np.int64)
            feeds[L].append({"input_ids": a, "attention_mask": np.ones_like(a), "token_type_ids": np.zeros_like(a)})
    return feeds


def input_stats(feeds: Sequence[Feed]) -> dict[str, float]:
    masks = [f["attention_mask"] for f in feeds]
    return {"n_inputs": len(feeds), "examples_per_input": float(np.mean([m.shape[0] for m in masks])),
            "mean_tokens": float(np.mean(np.concatenate([m.sum(1) for m in masks]))),
            "mean_padded_length": float(np.mean([m.shape[1] for m in masks]))}


@torch.no_grad()
def feeds_flops_speedup(spec: ModelSpec, feeds: Sequence[Feed]) -> float:
    """FLOPs speedup of ``spec`` on exactly these inputs (the one counter, ratio of totals)."""
    from adapler.flops import model_flops

    from .backends import default_mode, feed_tensors
    dense_total = pruned_total = 0.0
    for f in feeds:
        out = spec.model(*feed_tensors(f), mode=default_mode(spec.model))
        dense, pruned = model_flops(spec.model, torch.from_numpy(f["attention_mask"]).sum(1), out.kept_lengths)
        dense_total, pruned_total = dense_total + float(dense.sum()), pruned_total + float(pruned.sum())
    return dense_total / pruned_total


# ------------------------------------------------------------------------------------------------ steps

def load_models(models: Mapping[str, str | Path], dense_name: str) -> dict[str, ModelSpec]:
    from adapler.checkpoint import checkpoint_dir
    from adapler.checkpoint import load_checkpoint
    if dense_name not in models:
        raise BenchError(f"the dense model {dense_name!r} is not among the models ({', '.join(models)}); "
                         "every latency ratio needs it")
    specs = {}
    for name, path in models.items():
        ckpt = checkpoint_dir(path)
        model, cfg = load_checkpoint(ckpt)
        specs[name] = ModelSpec(name, ckpt, model, cfg)
    return specs


def model_quality(spec: ModelSpec, data, batch_size: int = 32) -> dict[str, Any]:
    """The ``models.<name>`` entry: accuracy, FLOPs speedup and kept lengths on the full test split."""
    from adapler.evaluate import evaluate

    from .backends import default_mode
    from adapler.checkpoint import load_checkpoint_tokenizer
    tok = load_checkpoint_tokenizer(spec.ckpt)
    m = evaluate(spec.model, data.test, tok, spec.config["max_length"], batch_size, mode=default_mode(spec.model),
                 desc=f"{spec.name}: test", keep_predictions=True)
    keep = ("method", "mode", "n_examples", "max_length", "n_truncated", "accuracy", "f1", "macro_f1",
            "flops_speedup", "gflops_per_example", "dense_gflops_per_example", "mean_length", "mean_kept_lengths",
            "predictions")
    return {"checkpoint": str(spec.ckpt), **{k: m[k] for k in keep if k in m}}


def add_accuracy_vs_dense(models: dict[str, dict], predictions: Mapping[str, dict], dense_name: str) -> None:
    """Each model's ``accuracy_vs_dense``: its paired test-accuracy difference to the dense model (points, 95 %
    bootstrap interval, McNemar p; ``bench/paired_accuracy.py``), so the report says which gaps the split resolves."""
    import numpy as np

    from adapler.stats import paired_difference

    def correct(p: dict) -> np.ndarray:
        return np.asarray(p["labels"]) == np.asarray(p["preds"])
    base = predictions[dense_name]
    base_correct = correct(base)
    for name, m in models.items():
        if name != dense_name and name in predictions and predictions[name]["ids"] == base["ids"]:
            r = paired_difference(base_correct, correct(predictions[name]))
            m["accuracy_vs_dense"] = {k: r[k] for k in ("diff_points", "ci95_points", "mcnemar_p")}


def check_same_inputs(specs: Mapping[str, ModelSpec], sample: Sequence, max_length: int) -> None:
    """Every model must see the same token ids, or the paired timings would compare different inputs."""
    from adapler.checkpoint import load_checkpoint_tokenizer
    from adapler.data import encode
    ref = None
    for name, spec in specs.items():
        ids = encode(list(sample[:16]), load_checkpoint_tokenizer(spec.ckpt), max_length).input_ids
        if ref is None:
            ref = (name, ids)
        elif not torch.equal(ref[1], ids):
            raise BenchError(f"{name} and {ref[0]} tokenize the test texts differently; "
                             "a paired benchmark needs models that share a tokenizer")


def measure(fns: Mapping[str, Any], feeds: Sequence[Feed], dense_name: str, *, repeats: int, warmup: int,
            order: str, desc: str, pairs: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, Any]:
    """One interleaved run: summaries per model and paired speedups vs ``dense_name``; ``pairs``
    ``{key: {model: its reference}}`` adds ``out[key][model]``, the paired speedup vs that reference."""
    times = time_paired(fns, feeds, warmup=warmup, repeats=repeats, order=order, desc=desc)
    per_example = float(np.mean([f["input_ids"].shape[0] for f in feeds]))
    summaries = {}
    for n, t in times.items():
        s = summarize(t)
        summaries[n] = {**s, "median_ms_per_example": s["median_ms"] / per_example}
    speedup = {n: ratio(times[dense_name], t, repeats) for n, t in times.items() if n != dense_name}
    out = {"models": summaries, "speedup": speedup}
    for key, refs in (pairs or {}).items():
        out[key] = {n: ratio(times[r], times[n], repeats) for n, r in refs.items()}
    return out


def fixed_cost(points: Sequence[tuple[int, float]], n_short: int = 3) -> dict[str, Any] | None:
    """Per-call cost paid whatever the length: intercept of a least-squares line ``ms = a + b n`` through
    the ``n_short`` shortest (length, median ms) points, where the quadratic attention term is negligible.
    A negative or tiny intercept means the noise exceeds it."""
    pts = sorted(points)[:n_short]
    if len(pts) < 2:
        return None
    n, ms = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)
    b, a = np.polyfit(n, ms, 1)
    return {"intercept_ms": float(a), "ms_per_token": float(b), "lengths": [int(v) for v in n]}


# ------------------------------------------------------------------------------------------------ driver

def validate_options(batch_sizes, repeats: int, warmup: int, order: str, n_latency_examples: int) -> None:
    from .timing import ORDERS
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise BenchError(f"batch sizes must be positive integers, got {list(batch_sizes)}")
    if repeats < 1 or warmup < 0 or n_latency_examples < 1:
        raise BenchError(f"need repeats >= 1, warmup >= 0 and n_latency_examples >= 1 "
                         f"(got {repeats}, {warmup}, {n_latency_examples})")
    if order not in ORDERS:
        raise BenchError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")


def new_results(config: dict, environment: dict) -> dict[str, Any]:
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "status": "running", "created": now(),
            "updated": now(), "config": config, "environment": environment, "models": {}, "backends": {},
            "latency": [], "latency_vs_length": [], "deployed": [], "fixed_cost": {}, "compare": None, "regressions": [],
            "files": {}}


def run_bench(models: Mapping[str, str | Path], data, *, dense_name: str | None = None,
              batch_sizes: Sequence[int] = (1, 32), backends: Any = DEFAULT_BACKENDS,
              n_latency_examples: int = 256, repeats: int = 3, warmup: int = 1, order: str = "abba",
              lengths: Sequence[int] | None = DEFAULT_LENGTHS, n_length_inputs: int = 4,
              out_dir: str | Path = "runs/bench/results", overwrite: bool = False, compare: str | Path | None = None,
              tolerance: float = 0.1, sweeps: str | Path | None = None, export_cache: str | Path | None = None,
              threads: int | None = None, eval_batch_size: int = 32, seed: int = 0, plots: bool = True,
              targets: Sequence[float] = ()) -> dict:
    """Benchmark ``models`` (``{name: checkpoint or run dir}``, ``dense_name`` among them; default: the dense
    method's name) on ``data``
    (an ``adapler.data.Dataset`` or a spec for ``load_dataset``). Writes ``out_dir/results.json``
    (schema: bench/README.md) after every finished measurement, then results.md and PNG plots.

    ``backends``: names from ``bench.backends.BACKENDS`` or ``{name: factory}``. ``lengths``: batch-1
    latency-vs-length points (None or () to skip). ``compare``: an older results.json whose accuracy,
    FLOPs speedup and latency speedups are checked (see bench/compare.py). ``sweeps``: a folder with
    ``sweep-<method>.json`` files for Pareto curves. ``export_cache``: default ``out_dir/exports``.
    ``targets``: FLOPs speedups at which the methods are compared (``at_targets``: each method's most accurate
    point at each, from the bench's models and the sweep files).

    Raises FileExistsError when ``out_dir/results.json`` exists and ``overwrite`` is False.
    """
    if dense_name is None:
        from adapler import methods
        dense_name = methods.dense().name  # the models are named by method (bench.defaults.default_models)
    out = Path(out_dir)
    path = out / "results.json"
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    validate_options(batch_sizes, repeats, warmup, order, n_latency_examples)
    factories = resolve_backends(backends)
    old = None
    if compare is not None:
        from .compare import load_results
        old = load_results(compare)  # fail before hours of work, not after
    if isinstance(data, (str, Path)):
        from adapler.data import load_dataset
        data = load_dataset(str(data))
    out.mkdir(parents=True, exist_ok=True)
    prev_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    ctx = BackendContext(Path(export_cache) if export_cache else out / "exports", threads=torch.get_num_threads(),
                         requested=tuple(factories), max_batch=max(batch_sizes), max_length=512)
    config = {"data": data.name, "n_test": len(data.test), "dense_name": dense_name,
              "models": {k: str(v) for k, v in models.items()}, "batch_sizes": [int(b) for b in batch_sizes],
              "backends": list(factories), "n_latency_examples": n_latency_examples, "repeats": repeats,
              "warmup": warmup, "order": order, "lengths": [int(v) for v in (lengths or ())],
              "n_length_inputs": n_length_inputs, "tolerance": tolerance, "seed": seed,
              "eval_batch_size": eval_batch_size, "speedup_definition": SPEEDUP_DEFINITION,
              "compare": str(compare) if compare else None, "sweeps": str(sweeps) if sweeps else None,
              "targets": [float(x) for x in targets]}
    results = new_results(config, collect_environment(torch_threads=ctx.threads, ort_threads=ctx.threads))
    if busy(results["environment"]):
        log(f"[yellow]warning[/yellow]: load average {results['environment']['load_average'][0]:.1f} at the start; "
            "another job is using the CPU and latencies will be noisy")
    save_results(results, path)
    try:
        _run(results, path, models, data, dense_name, batch_sizes, factories, ctx, n_latency_examples, repeats,
             warmup, order, lengths, n_length_inputs, eval_batch_size, seed)
        if old is not None:
            from .compare import compare_results, compare_summary
            try:
                results["regressions"] = compare_results(old, results, tolerance)
                results["compare"] = compare_summary(old, results, compare)
            except (KeyError, TypeError, ZeroDivisionError) as e:  # an old file of another layout: keep the run
                results["compare"] = {"path": str(compare), "tolerance": tolerance,
                                      "error": f"{compare} could not be compared ({type(e).__name__}: {e})"}
                log(f"[yellow]warning[/yellow]: {results['compare']['error']}")
            for r in results["regressions"]:
                log(f"[red]regression[/red]: {r['message']}")
        if targets:
            from .plots import load_sweeps
            from .tradeoff import at_equal_speedup, bench_points
            results["at_targets"] = at_equal_speedup(bench_points(results, load_sweeps(sweeps)), list(targets))
        results["status"] = "finished"
    except BaseException as e:
        results["status"] = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
        if not isinstance(e, KeyboardInterrupt):
            results["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        save_results(results, path)
        try:
            write_reports(results, out, sweeps=sweeps, plots=False)
        except Exception:
            pass
        raise
    finally:
        torch.set_num_threads(prev_threads)
    write_reports(results, out, sweeps=sweeps, plots=plots)
    save_results(results, path)
    return results


def _run(results, path, models, data, dense_name, batch_sizes, factories, ctx, n_latency_examples, repeats, warmup,
         order, lengths, n_length_inputs, eval_batch_size, seed) -> None:
    from adapler.checkpoint import load_checkpoint_tokenizer
    specs = load_models(models, dense_name)
    predictions = {}  # per example, for the paired accuracy differences; not written to results.json
    for name, spec in specs.items():
        log(f"{name}: accuracy and FLOPs on {len(data.test)} test examples")
        results["models"][name] = model_quality(spec, data, eval_batch_size)
        predictions[name] = results["models"][name].pop("predictions")
        save_results(results, path)
    add_accuracy_vs_dense(results["models"], predictions, dense_name)
    save_results(results, path)
    dense = specs[dense_name]
    tok, max_length = load_checkpoint_tokenizer(dense.ckpt), dense.config["max_length"]
    sample = sample_examples(data.test, n_latency_examples, seed)
    check_same_inputs(specs, sample, max_length)
    sets: dict[tuple[str, int], list[Feed]] = {("batch", b): batch_feeds(sample, tok, max_length, b) for b in batch_sizes}
    cap = min(s.model.config.max_position_embeddings for s in specs.values())
    lens = sorted({int(L) for L in (lengths or ()) if 3 <= int(L) <= cap})
    if lengths and len(lens) < len(set(lengths)):
        log(f"latency vs length: lengths outside 3..{cap} (the models' position limit) are left out")
    if lens:
        for L, feeds in length_feeds(sample, tok, lens, n_length_inputs).items():
            sets[("length", L)] = feeds
    ctx.max_length = max(f["input_ids"].shape[1] for fs in sets.values() for f in fs)  # TensorRT profile
    flops = {key: {n: feeds_flops_speedup(s, feeds) for n, s in specs.items()} for key, feeds in sets.items()}
    from .deployed import ONLY_HERE, run_deployed
    run_deployed(results, lambda: save_results(results, path), specs, dense_name, factories, ctx, sets, flops, measure,
                 repeats=repeats, warmup=warmup, order=order)
    for bname, factory in factories.items():
        if bname in ONLY_HERE:
            continue
        fns, skipped = {}, {}
        for name, spec in specs.items():
            built = factory(spec, ctx)
            if isinstance(built, Skip):
                skipped[name] = built.reason
            else:
                fns[name] = built
        status = {"status": "ran", "reason": None, "skipped_models": skipped}
        if dense_name in skipped or not fns:
            reason = skipped.get(dense_name) or next(iter(skipped.values()), "no model could run")
            status = {"status": "skipped", "reason": reason, "skipped_models": skipped}
            log(f"[yellow]{bname}: skipped[/yellow] ({reason})")
        else:
            for name, reason in skipped.items():  # the backend ran without them: say so, not only in the JSON
                log(f"[yellow]{bname}: {name} skipped[/yellow] ({reason})")
        results["backends"][bname] = status
        save_results(results, path)
        if status["status"] == "skipped":
            continue
        for key, feeds in sets.items():
            kind, value = key
            desc = f"{bname}, {'batch' if kind == 'batch' else 'length'} {value}"
            gc.collect()
            m = measure(fns, feeds, dense_name, repeats=repeats, warmup=warmup, order=order, desc=desc)
            entry = {"backend": bname, "batch_size" if kind == "batch" else "length": value, **input_stats(feeds),
                     "repeats": repeats, "warmup": warmup, "order": order, **m,
                     "flops_speedup": {n: flops[key][n] for n in fns if n != dense_name}}
            if kind == "length":
                entry["batch_size"] = 1
            results["latency" if kind == "batch" else "latency_vs_length"].append(entry)
            if kind == "batch":
                sp = ", ".join(f"{n} {v['median_of_ratios']:.2f}x" for n, v in m["speedup"].items())
                log(f"{desc}: {dense_name} {m['models'][dense_name]['median_ms']:.2f} ms; speedup {sp}")
            save_results(results, path)
        if lens:
            results["fixed_cost"][bname] = {
                n: fixed_cost([(e["length"], e["models"][n]["median_ms"]) for e in results["latency_vs_length"]
                               if e["backend"] == bname and n in e["models"]]) for n in fns}
            save_results(results, path)
        for fn in fns.values():
            release(fn)
