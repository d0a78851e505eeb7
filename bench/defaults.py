"""The models of the default benchmark: found where they exist, trained with a quick preset where not.

``default_models()`` returns ``{"bert": dense, "adapler": ..., "<baseline>": ...}`` checkpoint paths:

- given checkpoints first (``ckpt``: the pruned model; ``baseline_ckpts``: any others, named by the
  ``method`` in their config.json, a ``bert`` one being the dense model);
- the dense model otherwise from the AdapLeR checkpoint's ``init_checkpoint``, else ``runs/demo/finetune``
  (``adapler.demo.run_demo``), else ``<cache>/finetune`` (trained if missing);
- AdapLeR from ``runs/demo/adapler``, else ``<cache>/adapler``;
- each baseline from ``<cache>/<method>``, trained from the dense run with
  ``adapler.training.baselines.train_baseline`` if missing.

Unfinished runs are resumed. The quick preset (MiniLM-L6, 1000 vader-movies training texts, 500 dev/test,
length 64, 2 + 2 epochs, baselines 1 + 1 epochs) keeps the default bench — training, export and
timing — around a quarter of an hour on 2 CPU cores; the test split is the one ``run_demo`` uses.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapler.progress import log

BASELINE_CHOICES: dict[str, tuple[str, ...]] = {
    "bert": (), "power-bert": ("power-bert",), "tr-bert": ("tr-bert",), "all": ("power-bert", "tr-bert")}


from adapler.demo import QUICK, QuickPreset  # one preset shared with `cli.py demo`


def parse_baseline(value: str) -> tuple[str, ...]:
    """``--baseline`` value -> baselines to add to dense + AdapLeR (``bert``: none, ``all``: both)."""
    if value not in BASELINE_CHOICES:
        from . import BenchError
        raise BenchError(f"--baseline must be one of {', '.join(BASELINE_CHOICES)}, got {value!r}")
    return BASELINE_CHOICES[value]


def default_data(spec: str | None = None, preset: QuickPreset = QUICK):
    """The quick preset's vader-movies subset when no ``spec`` is given; a given ``spec`` (built-in name, file,
    HF name) is loaded whole."""
    from adapler.data import load_dataset
    if spec is None:  # an explicit --data vader-movies means the whole dataset
        return load_dataset(preset.data, max_train=preset.max_train, max_eval=preset.max_eval, seed=preset.seed)
    return load_dataset(spec, seed=preset.seed)


def finished(run: str | Path) -> bool:
    """A run directory whose training is complete and whose ``best/`` checkpoint is final."""
    run = Path(run)
    state_file = run / "run_state.json"
    if not (run / "best" / "config.json").exists() or not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    if "finished" in state:  # baseline trainers
        return bool(state["finished"])
    return state.get("epochs_done", 0) >= state.get("config", {}).get("epochs", float("inf"))


def _cached(run: Path, lazy: "_Lazy") -> bool:
    """``finished(run)``, and then only if it was trained on the data of this bench: a model of the cache
    trained on other data must not stand in silently (the error names the fixes)."""
    if not finished(run):
        return False
    trained_on = (json.loads((run / "run_state.json").read_text()).get("fingerprint") or {}).get("data")
    if trained_on is not None and trained_on != lazy.get().fingerprint():
        from adapler.checkpoint import OutputError
        raise OutputError(f"{run} was trained on other data than {lazy.get().name}; pass --ckpt/--baseline-ckpt, "
                          f"or delete {run} to retrain it")
    return True


def _named(paths: list[str | Path]) -> dict[str, Path]:
    from adapler.api import checkpoint_dir
    from adapler.checkpoint import read_config
    out: dict[str, Path] = {}
    for p in paths:
        ckpt = checkpoint_dir(p)
        name = base = read_config(ckpt)["method"]
        i = 2
        while name in out:
            name, i = f"{base}-{i}", i + 1
        out[name] = ckpt
    return out


class _Lazy:
    """The training data, loaded only when something has to be trained."""

    def __init__(self, data, preset: QuickPreset):
        self.data, self.preset = data, preset

    def get(self):
        if self.data is None:
            self.data = default_data(preset=self.preset)
            log(self.data.summary())
        return self.data


def train_dense(out: Path, data, preset: QuickPreset = QUICK) -> Path:
    from adapler.training.finetune import FinetuneConfig, finetune
    log(f"training the dense model (quick preset) in {out}")
    finetune(data, out, FinetuneConfig(epochs=preset.finetune_epochs, max_length=preset.max_length),
             resume=(out / "run_state.json").exists())
    return out


def train_adapler_quick(init: Path, out: Path, data, preset: QuickPreset = QUICK) -> Path:
    from adapler.training.train_adapler import AdapLeRConfig, train_adapler
    log(f"training AdapLeR (quick preset) in {out}")
    cfg = AdapLeRConfig(epochs=preset.adapler_epochs, phi=preset.phi, eta_lr=preset.eta_lr, cp_lr=preset.cp_lr,
                        saliency_epochs=min(3, preset.finetune_epochs))
    train_adapler(data, init, out, cfg, resume=(out / "run_state.json").exists())
    return out


def train_baseline_quick(method: str, init: Path, out: Path, data, preset: QuickPreset = QUICK) -> Path:
    from adapler.models import ModelError
    try:
        from adapler.training.baselines import train_baseline
    except ImportError as e:
        raise ModelError(f"the {method} baseline is not trained and adapler.training.baselines.train_baseline is "
                         f"not available ({e}); pass --baseline-ckpt or use --baseline bert") from None
    log(f"training {method} (quick preset) in {out}")
    train_baseline(method, data, init, out, epochs=preset.baseline_epochs, resume=(out / "run_state.json").exists(),
                   **preset.baseline_options.get(method, {}))
    return out


def default_models(cache: str | Path = "runs/bench", baselines: tuple[str, ...] = ("power-bert",), *,
                   data=None, ckpt: str | Path | None = None, baseline_ckpts: tuple[str | Path, ...] = (),
                   demo: str | Path | None = "runs/demo", preset: QuickPreset = QUICK) -> dict[str, Path]:
    """``{name: checkpoint or run directory}`` for the benchmark: dense ``bert``, the pruned model, baselines.

    ``data``: the dataset to train missing models on (default: the quick preset's vader-movies subset);
    ``runs/demo`` is only reused with the default data. Raises ``adapler.models.ModelError`` when a
    baseline must be trained but its trainer is not available.
    """
    from adapler.api import checkpoint_dir
    from adapler.checkpoint import read_config
    cache = Path(cache)
    lazy = _Lazy(data, preset)
    given = _named([p for p in (ckpt, *baseline_ckpts) if p])
    demo_ok = demo is not None and (data is None or getattr(data, "name", None) == preset.data)
    demo = Path(demo) if demo is not None else None

    dense_run: Path | None = given.get("bert")
    if dense_run is None:
        for name, path in given.items():
            init = read_config(path).get("init_checkpoint")
            if init and (Path(init) / "config.json").exists():
                dense_run = Path(init)
                log(f"dense model: {dense_run} (init_checkpoint of {name})")
                break
    if dense_run is None and demo_ok and finished(demo / "finetune"):
        dense_run = demo / "finetune"
        log(f"dense model: reusing {dense_run}")
    if dense_run is None:
        dense_run = cache / "finetune"
        if not _cached(dense_run, lazy):
            train_dense(dense_run, lazy.get(), preset)
    # run directories (not best/) where possible: AdapLeR's trainer reads dev_scores.json next to best/
    init = dense_run.parent if dense_run.name == "best" and (dense_run.parent / "run_state.json").exists() else dense_run
    models: dict[str, Path] = {"bert": checkpoint_dir(dense_run)}

    pruned = {k: v for k, v in given.items() if k != "bert"}
    if ckpt is None and "adapler" not in pruned:
        if demo_ok and finished(demo / "adapler"):
            log(f"AdapLeR: reusing {demo / 'adapler'}")
            pruned["adapler"] = checkpoint_dir(demo / "adapler")
        else:
            run = cache / "adapler"
            if not _cached(run, lazy):
                train_adapler_quick(init, run, lazy.get(), preset)
            pruned["adapler"] = checkpoint_dir(run)
        pruned = {"adapler": pruned.pop("adapler"), **pruned}
    for method in baselines:
        if method in pruned:
            continue
        run = cache / method
        if not _cached(run, lazy):
            train_baseline_quick(method, init, run, lazy.get(), preset)
        pruned[method] = checkpoint_dir(run)
    models.update(pruned)
    return models
