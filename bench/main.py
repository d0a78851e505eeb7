"""``bench_command``: everything ``python cli.py bench`` does, as one call (the CLI only parses options).

    results = bench_command("power-bert", out="runs/bench/results", batch_sizes=(1, 32), overwrite=True)
    print_summary(results)

Checks that the output may be written and that ``--compare`` is readable *before* any model is trained.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = "runs/bench/results"
DEFAULT_CACHE = "runs/bench"


def _parse_ints(text: str, option: str, example: str) -> tuple[int, ...]:
    from . import BenchError
    try:
        return tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise BenchError(f"{option} must be comma-separated integers like {example}, got {text!r}") from None


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,32"`` -> ``(1, 32)``."""
    from . import BenchError
    sizes = _parse_ints(text, "--batch-sizes", "1,32")
    if not sizes or min(sizes) < 1:
        raise BenchError(f"--batch-sizes must be positive integers, got {text!r}")
    return sizes


def parse_lengths(text: str) -> tuple[int, ...]:
    """``"64,128,512"`` -> ``(64, 128, 512)``; ``"none"`` or ``""`` -> ``()`` (skip latency vs length)."""
    from . import BenchError
    if text.strip().lower() in ("", "none", "off"):
        return ()
    lengths = _parse_ints(text, "--lengths", "64,128,512 or 'none'")
    if not lengths or min(lengths) < 2 or max(lengths) > 512:
        raise BenchError(f"--lengths must lie in 2..512 (the exported models' max length), got {text!r}")
    return lengths


def parse_targets(text: str | None) -> tuple[float, ...]:
    """``"2,4,8"`` -> ``(2.0, 4.0, 8.0)``: FLOPs speedups to compare the methods at; None or "" -> ()."""
    from . import BenchError
    if not text or not text.strip():
        return ()
    try:
        targets = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise BenchError(f"--targets must be comma-separated speedups like 2,4,8, got {text!r}") from None
    if any(not 1 <= x < float("inf") for x in targets):
        raise BenchError(f"--targets are FLOPs speedups: finite numbers >= 1 (1 = no pruning), got {text!r}")
    return targets


def find_sweeps(*folders: str | Path) -> Path | None:
    """The first folder holding ``sweep-<method>.json`` files (for the Pareto curves), or None."""
    for f in folders:
        if f is not None and Path(f).is_dir() and any(Path(f).glob("sweep-*.json")):
            return Path(f)
    return None


def bench_command(baseline: str | None = None, *, ckpt: str | Path | None = None,
                  baseline_ckpts: Sequence[str | Path] = (), data: str | None = None,
                  batch_sizes: Sequence[int] | str = (1, 32), compare: str | Path | None = None,
                  out: str | Path = DEFAULT_OUT, overwrite: bool = False, cache: str | Path = DEFAULT_CACHE,
                  sweeps: str | Path | None = None, **options: Any) -> dict:
    """Find or train the models (``bench.defaults.default_models``), then ``bench.run.run_bench``.

    ``baseline``: a trainable method other than AdapLeR, ``bert`` (dense + AdapLeR only) or ``all`` (default:
    ``adapler.methods.DEFAULT_BASELINE``, PoWER-BERT); ``bench.defaults.baseline_choices()``. ``ckpt``: the pruned model to
    benchmark (default: runs/demo/adapler or a quick-trained one). ``baseline_ckpts``: more checkpoints,
    named by their method (a ``bert`` one is the dense reference). ``data``: dataset spec (default: the
    quick preset's vader-movies subset). ``sweeps``: folder of ``sweep-*.json`` (default: ``cache`` or
    runs/sweep if they hold any). ``options``: passed to ``run_bench`` (backends, repeats, threads,
    n_latency_examples, lengths, tolerance, targets, ...).
    """
    from .compare import load_results
    from .defaults import default_data, default_models, parse_baseline
    from .run import run_bench
    from adapler.files import ensure_out_dir
    out = ensure_out_dir(out)
    if (out / "results.json").exists() and not overwrite:
        raise FileExistsError(f"{out / 'results.json'} already exists; pass --overwrite to replace it or choose "
                              "another --out")
    if compare is not None:
        load_results(compare)
    if sweeps is not None and not Path(sweeps).is_dir():
        from . import BenchError
        raise BenchError(f"--sweeps {sweeps} is not a folder; give the --out folder of `cli.py sweep` "
                         "(it holds sweep-<method>.json)")
    if isinstance(batch_sizes, str):
        batch_sizes = parse_batch_sizes(batch_sizes)
    from adapler import methods
    baselines = parse_baseline(methods.DEFAULT_BASELINE if baseline is None else baseline)
    ds = default_data(data)
    models = default_models(cache, baselines, data=ds, ckpt=ckpt, baseline_ckpts=tuple(baseline_ckpts))
    sweeps = sweeps if sweeps is not None else find_sweeps(cache, "runs/sweep")
    # exports (hundreds of MB) go under --out, run_bench's default, not into the current directory
    return run_bench(models, ds, batch_sizes=tuple(batch_sizes), compare=compare, out_dir=out, overwrite=overwrite,
                     sweeps=sweeps, **options)
