"""User-facing error classes shared by the API and the CLI, and the small checks that raise them.

The CLI maps each class to one line on stderr and a distinct exit code (README, "Exit codes"):
usage errors 2, data 3, model/checkpoint 4, output conflicts 5. ``DataError`` (data.py) and
``ModelError`` (models.py) live with their modules; the classes here are shared by several modules.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class UsageError(ValueError):
    """A bad option or setting value: names the option, the value and what is allowed."""


class CheckpointError(ValueError):
    """One-line problem with a checkpoint directory: names the file and the mismatch."""


class OutputError(CheckpointError):
    """An output that exists (and --overwrite was not given), a --out that is not a directory, or a
    --resume whose data or options differ from the interrupted run's."""


class ExportError(ValueError):
    """One-line, user-facing export problem (raised by adapler.export; here so lower layers can raise it too)."""


class RunAborted(Exception):
    """A training run stopped by something outside it (a process of a torchrun launch died or was killed);
    finished epochs are kept and --resume continues."""


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise UsageError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_range(name: str, value: Any, lo: float | None = None, hi: float | None = None,
                strict_lo: bool = False) -> None:
    """``lo <= value <= hi`` (``lo < value`` with ``strict_lo``); numbers only, bool is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # value != value: NaN
        raise UsageError(f"{name} must be a number, got {value!r}")
    if lo is not None and (value <= lo if strict_lo else value < lo):
        raise UsageError(f"{name} must be {'>' if strict_lo else '>='} {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise UsageError(f"{name} must be <= {hi:g}, got {value!r}")
