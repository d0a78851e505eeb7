"""Write ``golden.npz``: inputs and reference outputs of ContributionDrop that every backend's test reads.

Run ``python -m adapler.plugins.contribution_drop.make_golden`` after a spec change; the file is committed.
Cases: a ragged batch (padding, drops), batch 1, a row whose tokens all survive, and ``eta`` so high
that only ``[CLS]`` survives.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..golden import read_golden, write_golden

from .reference import contribution_drop_reference, contribution_scores_reference

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


def random_cases(n: int, seed: int = 0, dtype: type = np.float32, mask_dtype: type = np.int64,
                 max_t: int = 300, margin: float = 1e-3) -> list[dict[str, np.ndarray]]:
    """``n`` random ragged inputs (B, T, D, H, padding, eta) whose scores are all at least ``margin``
    (relative) away from their row's threshold, so that any float32 summation order keeps the same tokens
    (the spec's boundary note); ``dtype`` is hidden's and cp_hidden's type (the reference reads float32)."""
    rng = np.random.default_rng(seed)
    cases: list[dict[str, np.ndarray]] = []
    while len(cases) < n:
        b, t = int(rng.integers(1, 7)), int(rng.integers(1, max_t))
        d, h = [3, 7, 8, 16, 64, 384][len(cases) % 6], int(rng.integers(1, 40))
        lengths = rng.integers(1, t + 1, size=b)
        a = {"hidden": rng.standard_normal((b, t, d)).astype(dtype),
             "cp_hidden": (1.5 * rng.standard_normal((b, t, h))).astype(dtype),
             "w2": rng.standard_normal(h).astype(np.float32),
             "mask": (np.arange(t)[None] < lengths[:, None]).astype(mask_dtype),
             "eta": np.array([rng.uniform(0.05, 1.5)], np.float32)}
        scores, thr = contribution_scores_reference(a["cp_hidden"].astype(np.float32), a["w2"], a["mask"], a["eta"])
        alive = a["mask"] == 1
        alive[:, 0] = False  # [CLS] is kept whatever its score
        gap = np.abs(scores - thr[:, None]) / thr[:, None]
        if not alive.any() or gap[alive].min() > margin:
            cases.append(a)
    return cases


def reference_outputs(a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference's outputs for a case of :func:`random_cases` (float16 inputs are read as float32 and
    ``hidden_c`` returned in float16: exact, every value is a copied input or zero)."""
    f32 = {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in a.items()}
    hidden_c, mask_c, index = contribution_drop_reference(**f32)
    return hidden_c.astype(a["hidden"].dtype), mask_c, index


def load_golden() -> dict[str, dict[str, np.ndarray]]:
    """``{case: {input and output name: array}}`` from the committed file (no pickle)."""
    return read_golden(GOLDEN)


def main() -> None:
    print(write_golden(GOLDEN, golden_cases()))


if __name__ == "__main__":
    main()
