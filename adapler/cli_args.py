"""What cli.py's options accept and how its errors end: choice Enums, ``--set`` values parsed by the config
field's type, and the exit code of each error class (README, "Exit codes"). Kept apart from cli.py so the
command functions stay a thin layer; nothing here imports torch (nor does the method registry it lists)."""
from __future__ import annotations

import dataclasses
import types
import typing
from enum import Enum
from typing import Any

from . import methods
from .errors import UsageError

# Choices as Enums: typer refuses anything else as a usage error (exit 2) before any work starts.
# The methods `train` and `sweep` accept: every trainable method of the registry, in its order.
Method = Enum("Method", [(name.replace("-", "_"), name) for name in methods.names(trainable=True)], type=str)


def method_choices() -> str:
    """``adapler | power-bert | ...`` for help texts."""
    return " | ".join(methods.names(trainable=True))


def knob_help() -> str:
    """``AdapLeR phi, PoWER-BERT lambda, ...`` for help texts."""
    return ", ".join(f"{m.title} {m.knob}" for m in methods.all_methods() if m.trainable)


class Mode(str, Enum):
    hard = "hard"
    soft = "soft"
    dense = "dense"


class Split(str, Enum):
    train = "train"
    dev = "dev"
    test = "test"


class InitWeights(str, Enum):
    finetuned = "finetuned"
    pretrained = "pretrained"


class LengthLoss(str, Enum):
    absolute = "absolute"
    normalized = "normalized"


class Preset(str, Enum):
    auto = "auto"
    paper = "paper"


class BatchFill(str, Enum):
    masked = "masked"
    topk = "topk"


class LenDenominator(str, Enum):
    padded = "padded"
    real = "real"


class Target(str, Enum):
    onnx = "onnx"
    trt = "trt"


class Quantize(str, Enum):
    none = "none"
    int8 = "int8"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


class TrainPrecision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


# Exit codes (README, "Exit codes"): 0 ok, 1 a check failed (verify parity, bench regressions), 2 usage,
# 3 data, 4 model/checkpoint/export, 5 output conflict, 6 missing runtime piece, 130 interrupted.
EXIT_USAGE, EXIT_DATA, EXIT_MODEL, EXIT_OUTPUT, EXIT_RUNTIME, EXIT_INTERRUPTED = 2, 3, 4, 5, 6, 130


def _exit_codes() -> list[tuple[type[BaseException], int]]:
    """(error class, exit code), most specific first: OutputError is a CheckpointError."""
    from adapler.checkpoint import CheckpointError, OutputError
    from adapler.data import DataError
    from adapler.errors import RunAborted
    from adapler.models import ModelError
    from adapler.bench import BenchError
    from adapler.export.onnx import ExportError
    codes: list[tuple[type[BaseException], int]] = [
        (OutputError, EXIT_OUTPUT), (FileExistsError, EXIT_OUTPUT), (UsageError, EXIT_USAGE),
        (BenchError, EXIT_USAGE), (FloatingPointError, EXIT_USAGE), (DataError, EXIT_DATA),
        (FileNotFoundError, EXIT_DATA), (ModelError, EXIT_MODEL), (CheckpointError, EXIT_MODEL),
        (ExportError, EXIT_MODEL), (RunAborted, EXIT_INTERRUPTED)]
    try:
        from adapler.plugins.token_drop.build import PluginBuildError
        from adapler.plugins.token_drop.ort_session import InputTooLong, TokenDropLibraryMissing
        codes += [(PluginBuildError, EXIT_RUNTIME), (TokenDropLibraryMissing, EXIT_RUNTIME), (InputTooLong, EXIT_DATA)]
    except ImportError:
        pass
    return codes


def exit_code(error: BaseException) -> int | None:
    """The exit code of a known user-facing error, None for anything else (a bug: keep its traceback)."""
    for cls, code in _exit_codes():
        if isinstance(error, cls):
            return code
    return None


def parse_value(key: str, raw: str, kind: Any) -> Any:
    """``raw`` parsed as the field's declared type (int, float, bool, str, or X | None)."""
    args = typing.get_args(kind)
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if raw.lower() in ("none", "null"):
            return None
        kind = next(a for a in args if a is not type(None))
    if kind is bool:
        low = raw.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise UsageError(f"--set {key}={raw}: {key} takes true or false")
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise UsageError(f"--set {key}={raw}: {key} takes {what}, e.g. {key}=1") from None
    return raw


def parse_settings(items: list[str], config_cls: type, method: str) -> dict:
    """KEY=VALUE strings -> dict of values parsed by each field's type; keys must be fields of ``config_cls``."""
    fields = sorted(f.name for f in dataclasses.fields(config_cls))
    hints = typing.get_type_hints(config_cls)
    unknown = sorted({item.partition("=")[0] for item in items} - set(fields) - {""})
    if unknown:
        raise UsageError(f"unknown {method} option(s) {', '.join(unknown)} in --set; known: {', '.join(fields)}")
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        out[key] = parse_value(key, raw, hints[key])
    return out
