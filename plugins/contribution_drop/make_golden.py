"""Write ``golden.npz``: inputs and reference outputs of ContributionDrop that every backend's test reads.

Run ``python -m adapler.plugins.contribution_drop.make_golden`` after a spec change; the file is committed.
Cases: a ragged batch (padding, drops), batch 1, a row whose tokens all survive, and ``eta`` so high
that only ``[CLS]`` survives.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..golden import read_golden, write_golden

from .reference import contribution_drop_reference

GOLDEN = Path(__file__).with_name("golden.npz")


def golden_cases(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cases = {}
    for name, (b, t, d, h, eta, lengths) in {
        "ragged": (4, 12, 8, 5, 0.9, [12, 7, 3, 10]),
        "batch1": (1, 9, 8, 5, 0.3, [9]),
        "keep_all": (2, 6, 4, 3, 1e-6, [6, 4]),
        "cls_only": (2, 6, 4, 3, 1e6, [6, 5]),
    }.items():
        mask = (np.arange(t)[None] < np.array(lengths)[:, None]).astype(np.int64)
        inputs = {"hidden": rng.standard_normal((b, t, d)).astype(np.float32),
                  "cp_hidden": (1.5 * rng.standard_normal((b, t, h))).astype(np.float32),
                  "w2": rng.standard_normal(h).astype(np.float32), "mask": mask,
                  "eta": np.array([eta], np.float32)}
        outs = contribution_drop_reference(**inputs)
        cases[name] = {**inputs, **dict(zip(("hidden_c", "mask_c", "index"), outs))}
    return cases


def load_golden() -> dict[str, dict[str, np.ndarray]]:
    """``{case: {input and output name: array}}`` from the committed file (no pickle)."""
    return read_golden(GOLDEN)


def main() -> None:
    print(write_golden(GOLDEN, golden_cases()))


if __name__ == "__main__":
    main()
