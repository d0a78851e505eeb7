"""The method registry: one ``Method`` object per token-dropping method, one file each.

    from adapler import methods
    m = methods.get("power-bert")          # one-line UsageError listing the choices for an unknown name
    cfg = m.config(knob=5e-2, epochs=1)    # the trainer's config
    m.train(data, "runs/ft", "runs/pb", cfg)

The CLI, the sweep, the recipes, the bench and the exporters ask this registry; nothing outside this
package compares method names. Adding a method: one file here (plus its selector in
``adapler/selectors/`` when it needs a new one, since checkpoint loading sits below the trainers) and
one import line below. ``adapler.methods`` sits above ``adapler.training`` (it points at the trainers) and
below the exporters, recipes, bench and CLI (docs/design.md, "Layers").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from .base import Method

_REGISTRY: dict[str, Method] = {}

MAIN = "adapler"  # the method this project is about: what `demo` trains and `bench` compares the others with
DEFAULT_BASELINE = "power-bert"  # what `bench` adds by default


def register(method: Method) -> Method:
    """Add ``method``; a second method of the same name is refused (``Method.problems`` is checked by the tests:
    it imports the selectors, which listing the CLI's choices must not)."""
    if method.name in _REGISTRY:
        raise ValueError(f"method {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The method called ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown method {name!r}; choose one of {', '.join(_REGISTRY)}") from None


def names(trainable: bool = False, pruning: bool = False) -> list[str]:
    """Registered names in registration order; ``trainable``: those `train` makes, ``pruning``: those that
    drop tokens."""
    return [n for n, m in _REGISTRY.items() if (not trainable or m.trainable) and (not pruning or m.prunes)]


def all_methods() -> list[Method]:
    return list(_REGISTRY.values())


def dense() -> Method:
    """The method that drops nothing: the fine-tuned reference every speedup is measured against."""
    return next(m for m in _REGISTRY.values() if not m.prunes)


def train_method(name: str, data, init: str | Path, out: str | Path, knob: float | None = None,
                 epochs: int | None = None, lr: float | None = None, batch_size: int = 32, seed: int = 42,
                 overwrite: bool = False, resume: bool = False, **options: Any) -> Path:
    """``get(name).train`` with the config built from the same arguments as ``Method.config``."""
    m = get(name)
    return m.train(data, init, out, m.config(knob, epochs, lr, batch_size, seed, **options), overwrite=overwrite,
                   resume=resume)


# Registration order is the order of CLI choices, bench tables and plots.
from . import bert, adapler, power_bert, tr_bert, keep_first  # noqa: E402,F401  (each file registers its method)

__all__ = ["DEFAULT_BASELINE", "MAIN", "Method", "all_methods", "dense", "get", "names", "register", "train_method"]
