"""Trade-off sweeps: one model per knob value, each evaluated on dev and test (hard mode).

``out_root/<method>-<value>/`` holds each run; ``out_root/sweep-<method>.json`` is rewritten after every
value, so an interrupted sweep keeps its finished points and a re-run skips them (an unfinished run
directory is resumed; a finished one that was never evaluated is only evaluated).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ..api import checkpoint_dir
from ..checkpoint import load_checkpoint, load_checkpoint_tokenizer
from ..data import Dataset
from ..evaluate import evaluate
from ..files import ensure_out_dir, write_json_atomic
from ..progress import log
from .baselines import KNOBS, baseline_config, train_baseline
from .common import check_resume, run_fingerprint


def run_name(method: str, value: float) -> str:
    return f"{method}-{value:g}"


def _finished(run: Path, method: str) -> bool:
    """True when the run's training is complete (its best/ checkpoint is final)."""
    state_file = run / "run_state.json"
    if not (run / "best" / "config.json").exists() or not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    if method == "adapler":  # the AdapLeR trainer records epochs, not a finished flag
        return state.get("epochs_done", 0) >= state.get("config", {}).get("epochs", float("inf"))
    return bool(state.get("finished"))


def _config(method: str, value: float, train_kwargs: dict[str, Any]):
    """The config the run for ``value`` trains with."""
    if method == "adapler":
        from .train_adapler import AdapLeRConfig
        fields = {f.name for f in dataclasses.fields(AdapLeRConfig)}
        unknown = set(train_kwargs) - fields - {"overwrite"}
        if unknown:
            raise ValueError(f"unknown AdapLeR options {sorted(unknown)}")
        return AdapLeRConfig(**{k: v for k, v in train_kwargs.items() if k in fields}, phi=value)
    return baseline_config(method, knob=value, **{k: v for k, v in train_kwargs.items() if k != "overwrite"})


def _train(method: str, value: float, data: Dataset, init: str | Path, run: Path, resume: bool,
           train_kwargs: dict[str, Any]) -> None:
    if method == "adapler":
        from . import train_adapler as ta
        cfg = _config(method, value, train_kwargs)
        # one content-addressed saliency cache for all values, inside the sweep's --out
        ta.train_adapler(data, init, run, cfg, overwrite=bool(train_kwargs.get("overwrite")), resume=resume,
                         cache_dir=run.parent / "saliency")
    else:
        train_baseline(method, data, init, run, knob=value, resume=resume, **train_kwargs)


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
            "checkpoint": str(ckpt)}


def sweep(method: str, values: list[float], data: Dataset, init: str | Path, out_root: str | Path,
          **train_kwargs: Any) -> list[dict]:
    """Train and evaluate one model per knob value; returns (and writes) the sweep's result list."""
    if method not in KNOBS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(KNOBS)}")
    out_root = ensure_out_dir(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    path = out_root / f"sweep-{method}.json"
    results: list[dict] = json.loads(path.read_text()) if path.exists() else []
    train_kwargs.pop("resume", None)  # decided per run below
    for value in values:
        value = float(value)
        run = out_root / run_name(method, value)
        state_file = run / "run_state.json"
        if state_file.exists():  # done or begun before: only reused for the same data, options and --init
            fp = run_fingerprint(data, dataclasses.asdict(_config(method, value, train_kwargs)), init)
            check_resume(run, json.loads(state_file.read_text()), fp, action=f"sweep {KNOBS[method]}={value:g}")
        if any(r["value"] == value for r in results):
            log(f"sweep {method}: {KNOBS[method]}={value:g} already done")
            continue
        if not _finished(run, method):
            resume = (run / "run_state.json").exists()
            log(f"sweep {method}: {'resuming' if resume else 'training'} {KNOBS[method]}={value:g} in {run}")
            _train(method, value, data, init, run, resume, train_kwargs)
        entry = {"method": method, "knob": KNOBS[method], "value": value, **evaluate_run(run, data)}
        log(f"sweep {method}: {KNOBS[method]}={value:g}: dev {entry['dev_accuracy']:.4f}, test "
            f"{entry['test_accuracy']:.4f}, FLOPs speedup {entry['flops_speedup']:.2f}x")
        results.append(entry)
        results.sort(key=lambda r: r["value"])
        write_json_atomic(path, results)  # an interrupted sweep never leaves half a file
    return results
