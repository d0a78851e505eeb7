"""The models of the default benchmark: found where they exist, trained with a quick preset where not.

``default_models()`` returns ``{dense: ..., main: ..., "<baseline>": ...}`` checkpoint paths, named by method
(``adapler.methods``: the dense one is the method that does not prune, the main one ``methods.MAIN``):

- given checkpoints first (``ckpt``: the pruned model; ``baseline_ckpts``: any others, named by the
  ``method`` in their config.json, a dense one being the dense model);
- the dense model otherwise from the pruned checkpoint's ``init_checkpoint``, else ``runs/demo/finetune``
  (``adapler.demo.run_demo``), else ``<cache>/finetune`` (trained if missing);
- the main method from ``runs/demo/<name>``, else ``<cache>/<name>``;
- each baseline from ``<cache>/<method>``.

Missing models are trained by the recipe layer (``adapler.recipes``: the bench itself never imports a trainer)
and unfinished runs are resumed. The quick preset (MiniLM-L6, 1000 vader-movies training texts, 500 dev/test,
length 64, 2 + 2 epochs, baselines 1 + 1 epochs) keeps the default bench — training, export and
timing — around a quarter of an hour on 2 CPU cores; the test split is the one ``run_demo`` uses.
"""
from __future__ import annotations

import json
from pathlib import Path

from adapler import methods
from adapler.progress import log
from adapler.recipes import QUICK, QuickPreset, finished, train_dense, train_quick  # shared with `cli.py demo`


def baseline_choices() -> dict[str, tuple[str, ...]]:
    """``--baseline`` values: each method other than the main one alone, the dense model's name (no baseline)
    and ``all`` (every pruning method other than the main one)."""
    others = tuple(n for n in methods.names(trainable=True) if n != methods.MAIN)
    return {methods.dense().name: (), **{n: (n,) for n in others}, "all": others}


def parse_baseline(value: str) -> tuple[str, ...]:
    """``--baseline`` value -> baselines to add to dense + the main method (``bert``: none, ``all``: every one)."""
    choices = baseline_choices()
    if value not in choices:
        from . import BenchError
        raise BenchError(f"--baseline must be one of {', '.join(choices)}, got {value!r}")
    return choices[value]


def default_data(spec: str | None = None, preset: QuickPreset = QUICK):
    """The quick preset's vader-movies subset when no ``spec`` is given; a given ``spec`` (built-in name, file,
    HF name) is loaded whole."""
    from adapler.data import load_dataset
    if spec is None:  # an explicit --data vader-movies means the whole dataset
        from adapler.recipes import quick_data
        return quick_data(preset)
    return load_dataset(spec, seed=preset.seed)


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
    from adapler.checkpoint import checkpoint_dir
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


def default_models(cache: str | Path = "runs/bench", baselines: tuple[str, ...] = (methods.DEFAULT_BASELINE,), *,
                   data=None, ckpt: str | Path | None = None, baseline_ckpts: tuple[str | Path, ...] = (),
                   demo: str | Path | None = "runs/demo", preset: QuickPreset = QUICK) -> dict[str, Path]:
    """``{name: checkpoint or run directory}`` for the benchmark: the dense model, the pruned model, baselines.

    ``data``: the dataset to train missing models on (default: the quick preset's vader-movies subset);
    ``runs/demo`` is only reused with the default data.
    """
    from adapler.checkpoint import checkpoint_dir
    from adapler.checkpoint import read_config
    cache = Path(cache)
    lazy = _Lazy(data, preset)
    given = _named([p for p in (ckpt, *baseline_ckpts) if p])
    demo_ok = demo is not None and (data is None or getattr(data, "name", None) == preset.data)
    demo = Path(demo) if demo is not None else None

    dense_name, main = methods.dense().name, methods.MAIN
    dense_run: Path | None = given.get(dense_name)
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
    models: dict[str, Path] = {dense_name: checkpoint_dir(dense_run)}

    pruned = {k: v for k, v in given.items() if k != dense_name}
    if ckpt is None and main not in pruned:
        if demo_ok and finished(demo / main):
            log(f"{methods.get(main).title}: reusing {demo / main}")
            pruned[main] = checkpoint_dir(demo / main)
        else:
            run = cache / main
            if not _cached(run, lazy):
                train_quick(main, init, run, lazy.get(), preset)
            pruned[main] = checkpoint_dir(run)
        pruned = {main: pruned.pop(main), **pruned}
    for method in baselines:
        if method in pruned:
            continue
        run = cache / method
        if not _cached(run, lazy):
            train_quick(method, init, run, lazy.get(), preset)
        pruned[method] = checkpoint_dir(run)
    models.update(pruned)
    return models
