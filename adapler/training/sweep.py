"""Trade-off sweeps: one model per knob value, or per target speedup, each evaluated on dev and test (hard mode).

``out_root/<method>-<value>/`` (``<method>-target<X>/`` for a target sweep, where the trainer steers the knob
to X itself: ``--target-speedup``) holds each run; ``out_root/sweep-<method>.json`` is rewritten after every
value (knob and target points of one method share the file: they are points of the same curve), so an interrupted sweep keeps its finished points and a re-run skips them (an unfinished run
directory is resumed; a finished one that was never evaluated is only evaluated). The method is an
``adapler.methods`` object (``methods.get(name)``): it builds each value's config and trains it.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Protocol

from ..checkpoint import checkpoint_dir
from ..checkpoint import load_checkpoint, load_checkpoint_tokenizer
from ..data import Dataset
from ..evaluate import evaluate
from ..files import ensure_out_dir, write_json_atomic
from ..progress import log
from .common import check_resume, run_fingerprint


class SweepMethod(Protocol):
    """What a sweep uses of an ``adapler.methods.Method``; the registry sits above the trainers, so the caller
    passes the method object in instead of a name."""
    name: str
    knob: str | None
    knob_field: str | None

    def config(self, knob: float | None = None, **options: Any) -> Any: ...

    def train(self, data: Dataset, init: str | Path, out: str | Path, cfg: Any, *, overwrite: bool = False,
              resume: bool = False, shared_dir: Path | None = None) -> Path: ...


TARGET = "target_speedup"  # the "knob" of a target sweep's points


def run_name(method: str, value: float, targets: bool = False) -> str:
    return f"{method}-target{value:g}" if targets else f"{method}-{value:g}"


def _finished(run: Path, method: str) -> bool:
    """True when the run's training is complete (its best/ checkpoint is final)."""
    from .runner import is_finished
    return is_finished(run)


def evaluate_run(run: Path, data: Dataset, batch_size: int = 32) -> dict[str, Any]:
    """Dev and test metrics of ``run/best`` in hard mode."""
    ckpt = checkpoint_dir(run)
    model, cfg = load_checkpoint(ckpt)
    tok = load_checkpoint_tokenizer(ckpt)
    dev = evaluate(model, data.dev, tok, cfg["max_length"], batch_size, mode="hard", desc="dev")
    test = evaluate(model, data.test, tok, cfg["max_length"], batch_size, mode="hard", desc="test")
    return {"dev_accuracy": dev["accuracy"], "test_accuracy": test["accuracy"],
            "flops_speedup": test["flops_speedup"], "dev_flops_speedup": dev["flops_speedup"],
            "mean_kept_lengths": test["mean_kept_lengths"], "mean_length": test["mean_length"],
            "checkpoint": str(ckpt), "target_reached": cfg.get("target_reached")}


def check_target_sweep(method: SweepMethod, targets: list[float], options: dict[str, Any]) -> None:
    """A target sweep sets the knob and ``target_speedup`` of every run itself: refuse options that would
    set them too, and targets out of range (UsageError, one line)."""
    from ..errors import UsageError
    from .target import check_target_fields
    for field in (method.knob_field, TARGET):
        if field in options:
            raise UsageError(f"a target sweep sets {field} for every run itself (the trainer steers "
                             f"{method.knob_field} to each target); drop --set {field}=")
    for value in targets:
        check_target_fields(float(value), float(options.get("max_accuracy_drop", 1.0)))


def sweep(method: SweepMethod, values: list[float], data: Dataset, init: str | Path, out_root: str | Path,
          *, targets: bool = False, **train_kwargs: Any) -> list[dict]:
    """Train and evaluate one model per knob value; returns (and writes) the sweep's result list.

    ``method``: ``adapler.methods.get(name)``; ``targets``: ``values`` are target FLOPs speedups (each run
    trains with ``target_speedup`` = X, the method's target control steering its knob) instead of knob
    values; ``train_kwargs``: ``epochs``, ``lr``, ``batch_size``, ``seed`` and config fields, as
    ``Method.config`` takes them (``overwrite`` applies to every run)."""
    if method.knob_field is None:
        raise ValueError(f"{method.name} has no trade-off knob to sweep")
    name, knob = method.name, (TARGET if targets else method.knob)
    if targets:
        check_target_sweep(method, values, train_kwargs)
    overwrite = bool(train_kwargs.pop("overwrite", False))
    train_kwargs.pop("resume", None)  # decided per run below
    out_root = ensure_out_dir(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    path = out_root / f"sweep-{name}.json"
    results: list[dict] = json.loads(path.read_text()) if path.exists() else []
    for value in values:
        value = float(value)
        run = out_root / run_name(name, value, targets)
        cfg = (method.config(**train_kwargs, target_speedup=value) if targets
               else method.config(knob=value, **train_kwargs))
        state_file = run / "run_state.json"
        if state_file.exists():  # done or begun before: only reused for the same data, options and --init
            fp = run_fingerprint(data, dataclasses.asdict(cfg), init)
            check_resume(run, json.loads(state_file.read_text()), fp, action=f"sweep {knob}={value:g}")
        if any(r["knob"] == knob and r["value"] == value for r in results):
            log(f"sweep {name}: {knob}={value:g} already done")
            continue
        if not _finished(run, name):
            resume = (run / "run_state.json").exists()
            log(f"sweep {name}: {'resuming' if resume else 'training'} {knob}={value:g} in {run}")
            method.train(data, init, run, cfg, overwrite=overwrite, resume=resume, shared_dir=out_root)
        entry = {"method": name, "knob": knob, "value": value, **evaluate_run(run, data)}
        if not targets:
            entry.pop("target_reached")
        reached = "" if not targets else ("" if entry["target_reached"] else " (target not reached on dev)")
        log(f"sweep {name}: {knob}={value:g}: dev {entry['dev_accuracy']:.4f}, test "
            f"{entry['test_accuracy']:.4f}, FLOPs speedup {entry['flops_speedup']:.2f}x{reached}")
        results.append(entry)
        results.sort(key=lambda r: (r["knob"] == TARGET, r["value"]))
        write_json_atomic(path, results)  # an interrupted sweep never leaves half a file
    return results
