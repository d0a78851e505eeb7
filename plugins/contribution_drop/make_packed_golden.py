"""Write ``golden_packed.npz``: inputs and reference outputs of PackedContributionDrop.

Run ``python -m adapler.plugins.contribution_drop.make_packed_golden`` after a spec change; the file is committed.
The cases are ContributionDrop's golden cases (``make_golden.golden_cases``) with their rows packed, so
both files describe the same selections.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..golden import read_golden, write_golden

from .make_golden import golden_cases
from .packed_reference import PACKED_OUTPUTS, packed_contribution_drop_reference

GOLDEN_PACKED = Path(__file__).with_name("golden_packed.npz")


def packed_golden_cases(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    cases = {}
    for name, a in golden_cases(seed).items():
        alive = a["mask"] == 1
        lengths = alive.sum(axis=1)
        inputs = {"hidden": a["hidden"][alive], "cp_hidden": a["cp_hidden"][alive], "w2": a["w2"],
                  "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), "eta": a["eta"]}
        cases[name] = {**inputs, **dict(zip(PACKED_OUTPUTS, packed_contribution_drop_reference(**inputs)))}
    return cases


def load_packed_golden() -> dict[str, dict[str, np.ndarray]]:
    """``{case: {input and output name: array}}`` from the committed file (no pickle)."""
    return read_golden(GOLDEN_PACKED)


def main() -> None:
    print(write_golden(GOLDEN_PACKED, packed_golden_cases()))


if __name__ == "__main__":
    main()
