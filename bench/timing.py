"""Paired, interleaved timing (docs/deploy.md §8, "Benchmarking pitfalls").

Every input is run untimed once in every backend (the first run on a new shape pays for allocation),
then timed ``repeats`` times per backend in ABBA order: the backend order flips at every repetition
(A B, B A, A B, ...; with three backends A B C, C B A, ...), so position effects (caches, a
neighbour's spin-wait, thermal drift) fall on every backend equally. The call of backend A at input i,
repetition r is therefore *paired* with the call of B at the same (i, r): both saw the same input and
nearly the same machine state, and ratios are taken within such pairs.

Returned times are per-call seconds, in input-major order: index ``i * repeats + r``.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

ORDERS = ("abba", "fixed")


def call_order(names: Sequence[str], step: int, order: str = "abba") -> list[str]:
    """Backend order for the ``step``-th timed repetition (counted over all inputs)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    names = list(names)
    return names[::-1] if order == "abba" and step % 2 else names


def time_paired(fns: Mapping[str, Callable[[Any], Any]], inputs: Sequence[Any], warmup: int = 1,
                repeats: int = 3, order: str = "abba", desc: str | None = None,
                timer: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Time every ``fns[name](x)`` for every ``x`` in ``inputs``; returns ``{name: [seconds per call]}``.

    Per input: ``warmup`` untimed calls in every backend, then ``repeats`` timed calls per backend in
    :func:`call_order`. The list of each backend has ``len(inputs) * repeats`` entries, input-major
    (index ``i * repeats + r``), so ``times[a][k]`` and ``times[b][k]`` are a pair. The garbage collector
    is off while timing (its young generation is collected between inputs).
    """
    if not fns:
        raise ValueError("time_paired needs at least one function")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    call_order([], 0, order)  # validates ``order``
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    items: Any = inputs
    if desc:
        from adapler.progress import progress_bar
        items = progress_bar(inputs, desc, total=len(inputs))
    step, gc_was_enabled = 0, gc.isenabled()
    gc.disable()  # as timeit: a collection inside one call would charge that call for everyone's garbage
    try:
        for x in items:
            for _ in range(warmup):
                for n in names:
                    fns[n](x)
            for _ in range(repeats):
                for n in call_order(names, step, order):
                    t0 = timer()
                    fns[n](x)
                    times[n].append(timer() - t0)
                step += 1
            if gc_was_enabled:
                gc.collect(0)  # young generation only, between inputs, untimed
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summarize(times: Sequence[float]) -> dict[str, float | int]:
    """``{median_ms, p90_ms, mean_ms, min_ms, n}`` of per-call seconds (p90: linear interpolation)."""
    a = np.asarray(times, dtype=np.float64)
    if a.size == 0:
        raise ValueError("summarize() got no timings")
    return {"median_ms": float(np.median(a) * 1e3), "p90_ms": float(np.percentile(a, 90) * 1e3),
            "mean_ms": float(a.mean() * 1e3), "min_ms": float(a.min() * 1e3), "n": int(a.size)}


def ratio(dense: Sequence[float], other: Sequence[float], repeats: int = 1) -> dict[str, float | int]:
    """Speedup of ``other`` over ``dense`` from paired timings (same index = same input and repetition).

    - ``median_of_ratios`` (**the reported speedup**): per input, the median of its ``repeats`` dense
      calls divided by the median of its ``repeats`` other calls; then the median over inputs. Each
      ratio is paired, so load that changes between inputs cancels, and one slow input cannot move it.
    - ``ratio_of_medians``: median of all dense calls / median of all other calls (kept for reference;
      it compares two typical latencies and is not paired).
    - ``n_pairs``: number of per-input ratios.
    """
    d, o = np.asarray(dense, dtype=np.float64), np.asarray(other, dtype=np.float64)
    if d.shape != o.shape or d.size == 0:
        raise ValueError(f"ratio() needs two non-empty paired lists of equal length, got {d.size} and {o.size}")
    if d.size % repeats:
        raise ValueError(f"{d.size} timings are not a multiple of repeats={repeats}")
    per_input = np.median(d.reshape(-1, repeats), axis=1) / np.median(o.reshape(-1, repeats), axis=1)
    return {"median_of_ratios": float(np.median(per_input)), "ratio_of_medians": float(np.median(d) / np.median(o)),
            "n_pairs": int(per_input.size)}
