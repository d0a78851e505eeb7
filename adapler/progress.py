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
    if not _enabled():
        yield from items
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as prog:
        task = prog.add_task(desc, total=total)
        for item in items:
            yield item
            prog.advance(task)


def log(msg: str) -> None:
    """One status line on stderr (kept out of JSON written to stdout)."""
    if not os.environ.get("ADAPLER_QUIET"):
        console.print(msg, highlight=False)
