"""Write ``golden.npz``: inputs and reference outputs of TokenDrop that every backend's test reads.

Run ``python -m adapler.plugins.token_drop.make_golden`` after a spec change; the file is committed and
``tests/test_token_drop_reference.py`` checks that it is current. One case per rule of the spec
(README.md "Semantics" and "Shape rules"):

| case | what it pins down |
|---|---|
| ragged | per-row threshold `[B]`, ragged padding, stable order, zeros / -1 in padding slots |
| broadcast | threshold `[1]` applied to every row |
| float16 | float16 `hidden` copied exactly (scores and threshold stay float32) |
| cls_only | every score under the threshold: `L = 1`, `[CLS]` kept even when masked |
| keep_all | threshold -inf: `L` = longest real row, padding never kept, mask values other than 1 are padding |
| nan | NaN scores are dropped, a NaN threshold keeps only `[CLS]`, a NaN in a kept hidden row is copied |
| single_token | `T = 1` |
| ties | scores equal to the threshold are kept (`>=`) |
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..golden import read_golden, write_golden

from .reference import token_drop_reference

GOLDEN = Path(__file__).with_name("golden.npz")
INPUTS = ("hidden", "scores", "mask", "threshold")
OUTPUTS = ("hidden_c", "mask_c", "index")

__all__ = ["GOLDEN", "INPUTS", "OUTPUTS", "golden_cases", "load_golden"]


def _mask(t: int, lengths: list[int]) -> np.ndarray:
    return (np.arange(t)[None] < np.array(lengths)[:, None]).astype(np.int64)


def _case_inputs(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    f32 = np.float32
    cases = {}

    def add(name, b, t, d, lengths, threshold, dtype=f32):
        cases[name] = {"hidden": rng.standard_normal((b, t, d)).astype(dtype),
                       "scores": rng.random((b, t)).astype(f32), "mask": _mask(t, lengths),
                       "threshold": np.asarray(threshold, f32)}
        return cases[name]

    add("ragged", 4, 12, 8, [12, 7, 3, 10], [0.5, 0.3, 0.9, 0.6])
    add("broadcast", 3, 10, 5, [10, 6, 8], [0.45])
    add("float16", 3, 9, 6, [9, 4, 7], [0.4, 0.6, 0.5], dtype=np.float16)
    c = add("cls_only", 2, 6, 4, [6, 5], [2.0])
    c["mask"][1, 0] = 0  # [CLS] is kept even when its mask says padding
    c = add("keep_all", 3, 7, 3, [5, 7, 2], [-np.inf])
    c["mask"][1, 3] = 2  # only mask == 1 is alive
    c = add("nan", 3, 8, 4, [8, 6, 8], [0.3, 0.3, np.nan])
    c["scores"][0, [2, 5]] = np.nan
    c["scores"][1, 1] = 0.9
    c["hidden"][1, 1, 0] = np.nan  # kept: the NaN must arrive unchanged
    add("single_token", 2, 1, 5, [1, 1], [0.5])
    c = add("ties", 2, 6, 3, [6, 6], [0.25, 0.5])
    c["scores"][:] = np.array([[0.1, 0.25, 0.2, 0.25, 0.3, 0.24],
                               [0.5, 0.5, 0.49, 0.51, 0.5, 0.0]], np.float32)
    return cases


def golden_cases(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """``{case: {input and output name: array}}`` computed by the reference now."""
    cases = _case_inputs(np.random.default_rng(seed))
    for arrays in cases.values():
        arrays.update(zip(OUTPUTS, token_drop_reference(*(arrays[k] for k in INPUTS))))
    return cases


def load_golden() -> dict[str, dict[str, np.ndarray]]:
    """``{case: {input and output name: array}}`` from the committed file (no pickle)."""
    return read_golden(GOLDEN)


def main() -> None:
    print(write_golden(GOLDEN, golden_cases()))


if __name__ == "__main__":
    main()
