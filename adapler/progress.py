"""Progress bars (rich) that stay quiet when output is not a terminal or ADAPLER_QUIET is set."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")
console = Console(stderr=True)


def _enabled() -> bool:
    return not os.environ.get("ADAPLER_QUIET") and sys.stderr.isatty()


def progress_bar(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    if not _enabled():
        yield from _plain_progress(items, desc, total)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        task = prog.add_task(desc, total=total)
        for item in items:
            yield item
            prog.advance(task)


def log(msg: str) -> None:
    """One status line on stderr (kept out of JSON written to stdout)."""
    if not os.environ.get("ADAPLER_QUIET"):
        console.print(msg, highlight=False, soft_wrap=True)  # one line in logs too: the terminal wraps it


def _plain_progress(items: Iterable[T], desc: str, total: int | None) -> Iterator[T]:
    """Without a terminal (logs, CI): a line at every 25 % of long loops, so progress is still visible."""
    import time
    quiet = bool(os.environ.get("ADAPLER_QUIET")) or not total or total < 20
    t0, next_mark = time.perf_counter(), 0.25
    for i, item in enumerate(items, 1):
        yield item
        if not quiet and i / total >= next_mark:
            spent = time.perf_counter() - t0
            left = f", about {_duration(spent * (total - i) / i)} left" if i < total else ""
            print(f"{desc}: {i}/{total} ({spent:.0f} s{left})", file=sys.stderr, flush=True)
            next_mark += 0.25


def _duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2.3 h``: a remaining time at the precision a log reader needs."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
