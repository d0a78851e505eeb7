"""adapler::ContributionDrop's CUDA kernel library against the reference.

Without a GPU: nvcc builds it (when present), it loads, its workspace arithmetic and input checks hold.
With a CUDA GPU: the golden file and random ragged batches (both mask types, fp32 and fp16) give the
reference's outputs exactly. Those tests skip here with the reason; `make gpu-check` runs the same check.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cuda_library_for_this_gpu

from adapler.plugins.contribution_drop.cuda_library import (
    build_contribution_drop_cuda_library, check_inputs, load_contribution_drop_cuda_library)
from adapler.plugins.contribution_drop.make_golden import load_golden, random_cases, reference_outputs

CUDA = torch.cuda.is_available()
NO_CUDA = "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
NVCC = shutil.which("nvcc") or (Path("/usr/local/cuda/bin/nvcc").exists() and "/usr/local/cuda/bin/nvcc")
INPUTS = ("hidden", "cp_hidden", "w2", "mask", "eta")
OUTPUTS = ("hidden_c", "mask_c", "index")


def tensors(a: dict, device: str = "cpu") -> list[torch.Tensor]:
    return [torch.from_numpy(a[k]).to(device) for k in INPUTS]


def assert_outputs(got, want, what: str) -> None:
    for name, g, w in zip(OUTPUTS, got, want):
        g = g.cpu().numpy()
        assert g.dtype == w.dtype, f"{what}/{name}: {g.dtype} != {w.dtype}"
        np.testing.assert_array_equal(g, w, err_msg=f"{what}/{name}")


@pytest.mark.skipif(NVCC is None, reason="nvcc not found: cannot compile the CUDA kernel library")
def test_library_compiles_and_loads(tmp_path):
    lib = load_contribution_drop_cuda_library(
        build_contribution_drop_cuda_library(tmp_path / "libadapler_contribution_drop_cuda.so", archs=("87",)))
    assert lib.version() == "adapler-contribution-drop-cuda 1"
    # scores float32[B*T], thresholds float32[B], then TokenDrop's order int32[B*T] and counts int64[B],
    # each rounded up to 256 bytes
    assert lib.workspace_size(4, 128) == 2048 + 256 + 2048 + 256
    assert lib.workspace_size(3, 5) == 4 * 256
    a = load_golden()["ragged"]
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        lib(*tensors(a))


def test_load_missing_library_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="build it with"):
        load_contribution_drop_cuda_library(tmp_path / "missing.so")


def test_input_checks_name_the_input():
    a = load_golden()["ragged"]
    h, c, w, m, e = tensors(a)
    assert check_inputs(h, c, w, m, e) == (4, 12, 8, 5)
    for args, message in [((h[0], c, w, m, e), "hidden must be \\[B, T, D\\]"),
                          ((h, c[:, :5], w, m, e), "cp_hidden must be \\[B, T, H\\]"),
                          ((h, c.half(), w, m, e), "cp_hidden must have hidden's type"),
                          ((h, c, w[:-1], m, e), "w2 must be \\[H\\] = \\[5\\]"),
                          ((h, c, w, m.to(torch.int16), e), "mask must be int64 or int32"),
                          ((h, c, w, m, torch.ones(2)), "eta must have one element")]:
        with pytest.raises(ValueError, match=message):
            check_inputs(*args)


def test_random_cases_stay_away_from_the_threshold():
    """The random batches the GPU tests use keep the same tokens under any float32 summation order."""
    from adapler.plugins.contribution_drop.reference import contribution_scores_reference
    for a in random_cases(10, seed=1):
        scores, thr = contribution_scores_reference(a["cp_hidden"], a["w2"], a["mask"], a["eta"])
        alive = a["mask"] == 1
        alive[:, 0] = False
        if alive.any():
            assert (np.abs(scores - thr[:, None]) / thr[:, None])[alive].min() > 1e-3


# ------------------------------------------------------------------------------------------------ CUDA only

@pytest.fixture(scope="module")
def cuda_lib(tmp_path_factory):
    return cuda_library_for_this_gpu(build_contribution_drop_cuda_library, load_contribution_drop_cuda_library,
                                     tmp_path_factory.mktemp("cu") / "libadapler_contribution_drop_cuda.so")


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("mask_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("case", ["ragged", "batch1", "keep_all", "cls_only"])
def test_cuda_kernel_matches_golden(cuda_lib, case, mask_dtype):
    g = load_golden()[case]
    a = dict(g, mask=g["mask"].astype(mask_dtype))
    want = (g["hidden_c"], g["mask_c"].astype(mask_dtype), g["index"])
    assert_outputs(cuda_lib(*tensors(a, "cuda")), want, case)


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("mask_dtype", [np.int64, np.int32])
def test_cuda_kernel_matches_reference_on_random_batches(cuda_lib, dtype, mask_dtype):
    for i, a in enumerate(random_cases(25, seed=7, dtype=dtype, mask_dtype=mask_dtype, max_t=700)):
        assert_outputs(cuda_lib(*tensors(a, "cuda")), reference_outputs(a), f"case {i}")
