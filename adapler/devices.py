"""Which device a command computes on, and which process of a torchrun launch this is.

Core (below the trainers): evaluation and the API resolve ``--device`` here too; the training-only parts
(precision, process groups, gradient all-reduce) are in ``adapler/training/distributed.py``.
"""
from __future__ import annotations

import os

import torch

from .errors import UsageError

DEFAULT_DEVICE = "auto"  # what a command uses when it is given no device


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process: from torch.distributed once it is set up, else from
    torchrun's environment, else a single process."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return (torch.distributed.get_rank(), torch.distributed.get_world_size(),
                int(os.environ.get("LOCAL_RANK", 0)))
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def is_main_process() -> bool:
    return world()[0] == 0


def resolve_device(device: str | None = None) -> torch.device:
    """``auto`` (a GPU when torch sees one), ``cpu``, ``cuda`` or ``cuda:N``; under torchrun ``cuda`` and
    ``auto`` mean this process's GPU (LOCAL_RANK). Bad values are a one-line UsageError naming the fix."""
    device = (device or DEFAULT_DEVICE).strip().lower()
    _, size, local = world()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return torch.device("cpu")
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise UsageError(f"--device {device}: torch sees no GPU ({why}); use --device cpu (or auto)")
    count = torch.cuda.device_count()
    if size > 1:
        if index:
            raise UsageError(f"--device {device}: under torchrun each process takes its own GPU (LOCAL_RANK); "
                             "use --device cuda, and CUDA_VISIBLE_DEVICES to choose the GPUs")
        index = str(local)
    n = int(index or 0)
    if n >= count:
        raise UsageError(f"--device cuda:{n}: torch sees {count} GPU(s) (cuda:0 to cuda:{count - 1}); "
                         f"use one of those" + (" or fewer processes per node" if size > 1 else ""))
    return torch.device("cuda", n)
