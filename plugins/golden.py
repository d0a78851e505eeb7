"""The golden-file format every op folder shares: one ``.npz`` whose keys are ``<case>/<array>`` (no pickle).

Each op's ``make_golden`` computes the cases with its reference and writes them with ``write_golden``; every
backend's test reads them with ``read_golden``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

Cases = dict[str, dict[str, np.ndarray]]


def read_golden(path: Path) -> Cases:
    """``{case: {input and output name: array}}`` from a committed golden file."""
    with np.load(path, allow_pickle=False) as z:
        cases: Cases = {}
        for key in z.files:
            case, _, name = key.partition("/")
            cases.setdefault(case, {})[name] = z[key]
    return cases


def write_golden(path: Path, cases: Cases) -> Path:
    np.savez(path, **{f"{c}/{k}": v for c, arrays in cases.items() for k, v in arrays.items()})
    return path
