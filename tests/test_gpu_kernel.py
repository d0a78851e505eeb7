"""Device implementations of adapler::TokenDrop vs the NumPy reference.

CPU: the vectorised torch version (what the pruned encoder uses on CUDA too), dispatch, and the CUDA
kernel library (compiled with nvcc when present, loaded with ctypes; not run without a GPU).
CUDA-only tests skip without a GPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cuda_library_for_this_gpu, TOKEN_DROP_CASES, assert_token_drop_outputs, random_token_drop_inputs, token_drop_inputs
from adapler.plugins.token_drop.cuda_library import build_cuda_kernel_library, cuda_architectures, load_cuda_kernel_library
from adapler.plugins.token_drop.gpu import token_drop_gpu
from adapler.plugins.token_drop.reference import token_drop_reference
from adapler.plugins.token_drop.torch_impl import token_drop_torch
from adapler.plugins.token_drop.triton_impl import TRITON_AVAILABLE, TRITON_UNAVAILABLE_REASON, token_drop_triton

CUDA = torch.cuda.is_available()
NO_CUDA = "no CUDA GPU on this machine (torch.cuda.is_available() is False)"
NVCC = shutil.which("nvcc") or (Path("/usr/local/cuda/bin/nvcc").exists() and "/usr/local/cuda/bin/nvcc")
ragged = random_token_drop_inputs


def check(impl, arrays, device="cpu"):
    """``impl`` on torch tensors of ``arrays`` equals the reference exactly."""
    out = impl(*(torch.from_numpy(a).to(device) for a in arrays))
    assert_token_drop_outputs(out, token_drop_reference(*arrays))
    return out


def run_golden(impl, case, device="cpu"):
    assert_token_drop_outputs(impl(*(torch.from_numpy(a).to(device) for a in token_drop_inputs(case))), case)


@pytest.mark.parametrize("case", TOKEN_DROP_CASES)
def test_torch_and_dispatch_match_golden(case):
    run_golden(token_drop_torch, case)
    run_golden(token_drop_gpu, case)


@pytest.mark.parametrize("seed", range(150))
def test_torch_matches_reference_random_ragged(seed):
    check(token_drop_torch, ragged(seed))


@pytest.mark.parametrize("seed", range(20))
def test_torch_single_row_matches_reference(seed):
    """The one-row path (no padding slots in the output): padded input, NaN scores, per-row or [1] threshold."""
    hidden, scores, mask, threshold = ragged(seed, b=1)
    scores[0, ::3] = np.nan
    hidden_c, mask_c, _ = check(token_drop_torch, (hidden, scores, mask, threshold))
    assert mask_c.eq(1).all() and hidden_c.shape[1] == mask_c.shape[1]


@pytest.mark.parametrize("seed", range(20))
def test_torch_matches_reference_fp16(seed):
    check(token_drop_torch, ragged(seed, dtype=np.float16))


def test_all_but_cls_dropped():
    hidden, scores, mask, _ = ragged(1, b=4, t=16, d=8)
    out = check(token_drop_torch, (hidden, scores, mask, np.array([np.inf], np.float32)))
    assert out[0].shape == (4, 1, 8)
    assert out[2][:, 0].tolist() == [0, 0, 0, 0]
    assert out[1].tolist() == [[1]] * 4


def test_nothing_dropped():
    hidden, scores, _, _ = ragged(2, b=3, t=10, d=5)
    mask = np.ones((3, 10), np.int64)
    hidden_c, mask_c, index = check(token_drop_torch, (hidden, scores, mask, np.array([-np.inf], np.float32)))
    assert torch.equal(hidden_c, torch.from_numpy(hidden))
    assert mask_c.eq(1).all() and index.tolist() == [list(range(10))] * 3


def test_single_token():
    hidden, scores, mask, threshold = ragged(3, b=3, t=1, d=4)
    hidden_c, mask_c, index = check(token_drop_torch, (hidden, scores, mask, threshold))
    assert hidden_c.shape == (3, 1, 4) and index.tolist() == [[0]] * 3


def test_threshold_broadcast_equals_per_row():
    hidden, scores, mask, _ = ragged(4, b=5, t=20, d=6)
    one = np.array([0.4], np.float32)
    a = token_drop_torch(*(torch.from_numpy(x) for x in (hidden, scores, mask, one)))
    b = token_drop_torch(*(torch.from_numpy(x) for x in (hidden, scores, mask, np.repeat(one, 5))))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    check(token_drop_torch, (hidden, scores, mask, one))


def test_nan_scores_dropped_and_nan_hidden_copied_exactly():
    hidden, scores, mask, threshold = ragged(5, b=3, t=12, d=4, per_row_threshold=True)
    mask[:] = 1
    scores[:, ::2] = np.nan  # includes position 0: [CLS] is kept anyway
    hidden[0, 1, :] = np.nan
    hidden_c, _, index = check(token_drop_torch, (hidden, scores, mask, threshold))
    assert (index[:, 0] == 0).all()
    assert not np.isin(index.numpy(), np.arange(2, 12, 2)).any()


def test_padding_and_mask_values_other_than_one():
    hidden, scores, mask, _ = ragged(6, b=2, t=8, d=3)
    scores[:] = 1.0
    mask = np.array([[1, 1, 0, 1, 2, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]], np.int64)
    _, mask_c, index = check(token_drop_torch, (hidden, scores, mask, np.array([0.5], np.float32)))
    assert index.tolist() == [[0, 1, 3, 5], [0, -1, -1, -1]]
    assert mask_c.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]


def test_empty_batch():
    hidden = np.zeros((0, 5, 3), np.float32)
    check(token_drop_torch, (hidden, np.zeros((0, 5), np.float32), np.zeros((0, 5), np.int64),
                             np.array([0.5], np.float32)))


def test_bad_shapes_raise():
    h, s, m, t = (torch.from_numpy(x) for x in ragged(7, b=2, t=5, d=3))
    with pytest.raises(ValueError):
        token_drop_torch(h[0], s, m, t)
    with pytest.raises(ValueError):
        token_drop_torch(h, s[:, :3], m, t)
    with pytest.raises(ValueError):
        token_drop_torch(h, s, m, torch.zeros(3))


def test_gpu_dispatch_on_cpu_uses_torch():
    check(token_drop_gpu, ragged(8))


@pytest.mark.skipif(NVCC is None, reason="nvcc not found: cannot compile the CUDA kernel library")
def test_cuda_kernel_library_compiles_and_loads(tmp_path):
    assert cuda_architectures() == ("90a", "87")  # cuda/architectures.txt, the list CMake reads too
    assert cuda_architectures({"ADAPLER_CUDA_ARCHS": "80 86"}) == ("80", "86")
    lib_path = build_cuda_kernel_library(tmp_path / "libadapler_token_drop_cuda.so")
    lib = load_cuda_kernel_library(lib_path)
    assert lib.version() == "adapler-token-drop-cuda 1"
    # order int32[B*T] and counts int64[B], each rounded up to 256 bytes
    assert lib.workspace_size(4, 128) == 2048 + 256
    assert lib.workspace_size(3, 5) == 256 + 256


def test_load_missing_library_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_cuda_kernel_library(tmp_path / "missing.so")


# ------------------------------------------------------------------------------------------------
# CUDA only
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("case", TOKEN_DROP_CASES)
def test_cuda_implementations_match_golden(case):
    run_golden(token_drop_torch, case, device="cuda")
    run_golden(token_drop_gpu, case, device="cuda")
    if TRITON_AVAILABLE:
        run_golden(token_drop_triton, case, device="cuda")


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("case", TOKEN_DROP_CASES)
def test_cuda_kernel_library_matches_golden(cuda_lib, case):
    run_golden(cuda_lib, case, device="cuda")


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("seed", range(40))
def test_torch_on_cuda_matches_reference(seed):
    check(token_drop_torch, ragged(seed, dtype=np.float16 if seed % 3 == 0 else np.float32), device="cuda")


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("seed", range(20))
def test_gpu_dispatch_on_cuda_matches_reference(seed):
    check(token_drop_gpu, ragged(seed), device="cuda")


@pytest.mark.skipif(not (CUDA and TRITON_AVAILABLE), reason=NO_CUDA if not CUDA else TRITON_UNAVAILABLE_REASON)
@pytest.mark.parametrize("seed", range(20))
def test_triton_matches_reference(seed):
    check(token_drop_triton, ragged(seed, dtype=np.float16 if seed % 2 else np.float32), device="cuda")


@pytest.fixture(scope="module")
def cuda_lib(tmp_path_factory):
    return cuda_library_for_this_gpu(build_cuda_kernel_library, load_cuda_kernel_library,
                                     tmp_path_factory.mktemp("cu") / "libadapler_token_drop_cuda.so")


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("seed", range(30))
def test_cuda_kernel_library_matches_reference(cuda_lib, seed):
    # odd D with fp16 exercises the 2-byte copy path, D % 4 == 0 the 16-byte path
    d = [3, 8, 16, 7, 64][seed % 5]
    check(cuda_lib, ragged(seed, d=d, dtype=np.float16 if seed % 2 else np.float32), device="cuda")


@pytest.mark.skipif(not CUDA, reason=NO_CUDA)
def test_cuda_kernel_library_long_rows_and_extremes(cuda_lib):
    hidden, scores, mask, _ = ragged(99, b=3, t=700, d=32)  # > 256 tokens: several scan chunks per row
    check(cuda_lib, (hidden, scores, mask, np.array([0.3], np.float32)), device="cuda")
    check(cuda_lib, (hidden, scores, mask, np.array([np.inf], np.float32)), device="cuda")
    check(cuda_lib, (hidden, scores, np.ones_like(mask), np.array([-np.inf], np.float32)), device="cuda")
