"""Device implementations of ``adapler::TokenDrop`` v1 (torch, optional Triton, CUDA .so via ctypes).

Semantics (``plugins/token_drop/README.md``, ``docs/deploy.md`` §1.2)::

    keep[b,t] = (t == 0) or (mask[b,t] == 1 and scores[b,t] >= threshold[b])   # NaN -> dropped
    L = max_b sum_t keep[b,t];  kept tokens compacted to the front in original order;
    padding slots: hidden_c = 0, mask_c = 0, index = -1.

- :func:`token_drop_torch`: vectorised torch (cumsum + scatter stable partition, gather); runs on
  CPU and CUDA with exactly one device->host sync (reading ``L``).
- :func:`token_drop_triton`: optional Triton kernels (``TRITON_AVAILABLE``); CUDA tensors only.
- :func:`token_drop_gpu`: Triton on CUDA when available (checked once per device/dtype against the
  torch version; falls back on any mismatch), torch otherwise.
- :func:`load_cuda_kernel_library`: ctypes wrapper of ``cuda/token_drop_kernel.cu`` built as a .so.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import warnings
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "TRITON_AVAILABLE",
    "TRITON_UNAVAILABLE_REASON",
    "CudaTokenDropLibrary",
    "build_cuda_kernel_library",
    "default_cuda_kernel_library_path",
    "keep_flags_torch",
    "load_cuda_kernel_library",
    "token_drop_gpu",
    "token_drop_torch",
    "token_drop_triton",
]

try:  # optional dependency
    import triton
    import triton.language as tl

    TRITON_AVAILABLE = True
    TRITON_UNAVAILABLE_REASON = ""
except Exception as exc:  # ImportError, or a broken install
    triton = None
    tl = None
    TRITON_AVAILABLE = False
    TRITON_UNAVAILABLE_REASON = f"Triton not installed ({type(exc).__name__}: {exc})"

_CUDA_DIR = Path(__file__).resolve().parent / "cuda"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def _check_inputs(hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor) -> tuple[int, int, int]:
    if hidden.dim() != 3:
        raise ValueError(f"TokenDrop: hidden must be [B, T, D], got shape {tuple(hidden.shape)}")
    if not hidden.is_floating_point():
        raise ValueError(f"TokenDrop: hidden must be float32 or float16, got {hidden.dtype}")
    b, t, d = hidden.shape
    if t < 1:
        raise ValueError(f"TokenDrop: sequence length T must be >= 1 (position 0 is [CLS]), got T={t}")
    if tuple(scores.shape) != (b, t) or tuple(mask.shape) != (b, t):
        raise ValueError(
            f"TokenDrop: scores and mask must be [B, T] = [{b}, {t}], got {tuple(scores.shape)}, {tuple(mask.shape)}"
        )
    if threshold.numel() not in (1, b) or threshold.dim() > 1:
        raise ValueError(f"TokenDrop: threshold must be [B] = [{b}] or [1], got shape {tuple(threshold.shape)}")
    return b, t, d


def keep_flags_torch(scores: Tensor, mask: Tensor, threshold: Tensor) -> Tensor:
    """Boolean ``keep[B, T]``: position 0 always; otherwise ``mask == 1`` and ``scores >= threshold``.

    The one copy of the keep rule: ``adapler.ops`` (and so the standard-op ONNX graph) uses it too.
    Compared in float32 as the spec says (float16 scores widen exactly); no in-place write, so it traces
    to plain ONNX ops.
    """
    thr = threshold.reshape(-1, 1).to(device=scores.device, dtype=torch.float32)
    keep = (mask == 1) & (scores.to(torch.float32) >= thr)  # NaN >= x is False
    first = torch.zeros_like(keep)
    first[:, 0] = True  # [CLS] rule
    return keep | first


def token_drop_torch(
    hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Vectorised stable compaction; same results as ``token_drop_reference`` (exact hidden copy).

    Works on CPU and CUDA. The only device->host synchronisation is reading ``L``.
    Returns ``hidden_c [B, L, D]`` (dtype of hidden), ``mask_c [B, L]`` int64, ``index [B, L]`` int64.
    """
    b, t, d = _check_inputs(hidden, scores, mask, threshold)
    device = hidden.device
    keep = keep_flags_torch(scores, mask, threshold)
    pos = torch.arange(t, device=device, dtype=torch.int64)
    csum = keep.to(torch.int64).cumsum(dim=1)  # inclusive count of kept positions
    count = csum[:, -1]  # kept_b
    # Stable partition as a permutation: kept -> csum-1, dropped -> count + (#dropped before t).
    dest = torch.where(keep, csum - 1, count.unsqueeze(1) + pos - csum)
    order = torch.empty((b, t), dtype=torch.int64, device=device).scatter_(1, dest, pos.expand(b, t))
    length = int(count.max()) if b > 0 else 1  # the one sync
    idx = order[:, :length]
    valid = pos[:length].unsqueeze(0) < count.unsqueeze(1)  # [B, L]
    index = torch.where(valid, idx, torch.full_like(idx, -1))
    gathered = torch.gather(hidden, 1, idx.unsqueeze(-1).expand(b, length, d))
    hidden_c = gathered.masked_fill(~valid.unsqueeze(-1), 0)  # exact: no multiply by the mask
    return hidden_c, valid.to(torch.int64), index


# ------------------------------------------------------------------------------------------------
# Triton (optional, CUDA only)
# ------------------------------------------------------------------------------------------------
if TRITON_AVAILABLE:

    @triton.jit
    def _td_scan_rows(scores_ptr, mask_ptr, thr_ptr, thr_stride, order_ptr, count_ptr, T, BLOCK_T: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK_T)
        inb = offs < T
        s = tl.load(scores_ptr + row * T + offs, mask=inb, other=0.0)
        m = tl.load(mask_ptr + row * T + offs, mask=inb, other=0)
        thr = tl.load(thr_ptr + row * thr_stride)
        keep = (((m == 1) & (s >= thr)) | (offs == 0)) & inb
        k = keep.to(tl.int32)
        csum = tl.cumsum(k, axis=0)  # inclusive prefix -> stable slot = csum - 1
        tl.store(order_ptr + row * T + (csum - 1), offs, mask=keep)
        tl.store(count_ptr + row, tl.sum(k, axis=0))

    @triton.jit
    def _td_write_rows(hidden_ptr, order_ptr, count_ptr, hidden_c_ptr, mask_c_ptr, index_ptr, T, D, L,
                       BLOCK_D: tl.constexpr):
        slot = tl.program_id(0)
        row = tl.program_id(1)
        valid = slot < tl.load(count_ptr + row)
        src = tl.where(valid, tl.load(order_ptr + row * T + slot), -1).to(tl.int64)
        out_row = row.to(tl.int64) * L + slot
        tl.store(index_ptr + out_row, src)
        tl.store(mask_c_ptr + out_row, valid.to(tl.int64))
        src_base = (row.to(tl.int64) * T + src) * D
        for d0 in range(0, D, BLOCK_D):
            offs = d0 + tl.arange(0, BLOCK_D)
            dm = offs < D
            x = tl.load(hidden_ptr + src_base + offs, mask=dm & valid, other=0.0)
            tl.store(hidden_c_ptr + out_row * D + offs, x, mask=dm)


def token_drop_triton(
    hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Triton kernels (scan per row, then one program per output slot). CUDA tensors only.

    Experimental: not run in CI (no GPU, no Triton there); :func:`token_drop_gpu` verifies it against
    :func:`token_drop_torch` on first use per device/dtype.
    """
    if not TRITON_AVAILABLE:
        raise RuntimeError(TRITON_UNAVAILABLE_REASON)
    b, t, d = _check_inputs(hidden, scores, mask, threshold)
    if not hidden.is_cuda:
        raise ValueError("token_drop_triton needs CUDA tensors")
    hidden = hidden.contiguous()
    scores = scores.to(torch.float32).contiguous()
    mask = mask.to(torch.int64).contiguous()
    thr = threshold.reshape(-1).to(device=hidden.device, dtype=torch.float32).contiguous()
    order = torch.empty((b, t), dtype=torch.int32, device=hidden.device)
    count = torch.empty((b,), dtype=torch.int32, device=hidden.device)
    if b == 0:
        return hidden.new_zeros((0, 1, d)), mask.new_zeros((0, 1)), mask.new_full((0, 1), -1)
    _td_scan_rows[(b,)](scores, mask, thr, 0 if thr.numel() == 1 else 1, order, count, t,
                        BLOCK_T=triton.next_power_of_2(t))
    length = int(count.max())  # the one sync
    hidden_c = torch.empty((b, length, d), dtype=hidden.dtype, device=hidden.device)
    mask_c = torch.empty((b, length), dtype=torch.int64, device=hidden.device)
    index = torch.empty((b, length), dtype=torch.int64, device=hidden.device)
    block_d = min(1024, triton.next_power_of_2(max(d, 1)))
    _td_write_rows[(length, b)](hidden, order, count, hidden_c, mask_c, index, t, d, length, BLOCK_D=block_d)
    return hidden_c, mask_c, index


_TRITON_STATE: dict[tuple[str, torch.dtype], bool] = {}


def _identical(a: Tensor, b: Tensor) -> bool:
    """Same shape, dtype and values (NaN equals NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    same = a == b
    if a.is_floating_point():
        same |= a.isnan() & b.isnan()
    return bool(same.all())


def token_drop_gpu(
    hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Best available implementation: Triton for CUDA tensors when installed, else :func:`token_drop_torch`.

    The first Triton call per (device, dtype) is compared exactly against the torch version; on a
    mismatch or an exception Triton is disabled for that key with a warning.
    """
    if not (TRITON_AVAILABLE and hidden.is_cuda):
        return token_drop_torch(hidden, scores, mask, threshold)
    key = (str(hidden.device), hidden.dtype)
    state = _TRITON_STATE.get(key)
    if state is False:
        return token_drop_torch(hidden, scores, mask, threshold)
    try:
        out = token_drop_triton(hidden, scores, mask, threshold)
    except Exception as exc:  # compile or launch failure
        warnings.warn(f"token_drop_triton failed ({exc!r}); using token_drop_torch", RuntimeWarning, stacklevel=2)
        _TRITON_STATE[key] = False
        return token_drop_torch(hidden, scores, mask, threshold)
    if state is None:
        ref = token_drop_torch(hidden, scores, mask, threshold)
        ok = all(_identical(a, r) for a, r in zip(out, ref))
        _TRITON_STATE[key] = ok
        if not ok:
            warnings.warn("token_drop_triton disagrees with token_drop_torch; using torch", RuntimeWarning,
                          stacklevel=2)
            return ref
    return out


# ------------------------------------------------------------------------------------------------
# CUDA C++ kernel (.so) through ctypes
# ------------------------------------------------------------------------------------------------
def default_cuda_kernel_library_path() -> Path:
    """Where ``cuda/Makefile`` and :func:`build_cuda_kernel_library` put the .so by default."""
    return _REPO_ROOT / "build" / "token_drop_cuda" / "libadapler_token_drop_cuda.so"


def build_cuda_kernel_library(out_path: str | Path | None = None, archs: tuple[str, ...] = ("90a", "87"),
                              nvcc: str | None = None, timeout: float = 300.0) -> Path:
    """Compile ``cuda/token_drop_kernel.cu`` into a shared library with nvcc (no GPU needed).

    Raises ``RuntimeError`` when nvcc is missing or compilation fails.
    """
    nvcc = nvcc or shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists()
                                            else None)
    if nvcc is None:
        raise RuntimeError("nvcc not found (install the CUDA toolkit or put nvcc on PATH)")
    out = Path(out_path) if out_path is not None else default_cuda_kernel_library_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [nvcc, "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-shared"]
    for arch in archs:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    cmd += [str(_CUDA_DIR / "token_drop_kernel.cu"), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return out


class CudaTokenDropLibrary:
    """ctypes binding of ``libadapler_token_drop_cuda.so`` (see ``cuda/token_drop_kernel.h``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.adapler_token_drop_version.restype = ctypes.c_char_p
        self.lib.adapler_token_drop_workspace_size.restype = ctypes.c_size_t
        self.lib.adapler_token_drop_workspace_size.argtypes = [ctypes.c_int64, ctypes.c_int64]
        vp, i64 = ctypes.c_void_p, ctypes.c_int64
        self.lib.adapler_token_drop_launch.restype = ctypes.c_int
        self.lib.adapler_token_drop_launch.argtypes = [
            ctypes.c_int, vp, vp, vp, vp, i64, i64, i64, i64, vp, vp, vp, vp, vp, vp, vp,
        ]

    def version(self) -> str:
        return self.lib.adapler_token_drop_version().decode()

    def workspace_size(self, batch: int, seq_len: int) -> int:
        return int(self.lib.adapler_token_drop_workspace_size(batch, seq_len))

    def __call__(self, hidden: Tensor, scores: Tensor, mask: Tensor, threshold: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
        """Run on the current CUDA stream; outputs are views of upper-bound buffers (one sync for L)."""
        b, t, d = _check_inputs(hidden, scores, mask, threshold)
        if not hidden.is_cuda:
            raise ValueError("the CUDA kernel library needs CUDA tensors")
        if hidden.dtype not in (torch.float32, torch.float16):
            raise ValueError(f"the CUDA kernel supports float32/float16 hidden, got {hidden.dtype}")
        dev = hidden.device
        hidden = hidden.contiguous()
        scores = scores.to(torch.float32).contiguous()
        mask = mask.to(torch.int64).contiguous()
        thr = threshold.reshape(-1).to(device=dev, dtype=torch.float32).contiguous()
        hidden_c = torch.empty(b * t * d, dtype=hidden.dtype, device=dev)
        mask_c = torch.empty(b * t, dtype=torch.int64, device=dev)
        index = torch.empty(b * t, dtype=torch.int64, device=dev)
        length_dev = torch.empty(1, dtype=torch.int64, device=dev)
        workspace = torch.empty(self.workspace_size(b, t) + 256, dtype=torch.uint8, device=dev)
        ws_ptr = (workspace.data_ptr() + 255) // 256 * 256
        stream = torch.cuda.current_stream(dev).cuda_stream
        rc = self.lib.adapler_token_drop_launch(
            0 if hidden.dtype == torch.float32 else 1, hidden.data_ptr(), scores.data_ptr(), mask.data_ptr(),
            thr.data_ptr(), thr.numel(), b, t, d, hidden_c.data_ptr(), mask_c.data_ptr(), index.data_ptr(),
            length_dev.data_ptr(), None, ws_ptr, stream,
        )
        if rc != 0:
            raise RuntimeError(f"adapler_token_drop_launch failed with code {rc}")
        length = int(length_dev.item()) if b > 0 else 1  # the one sync (also keeps workspace alive)
        if b == 0:
            return hidden.new_zeros((0, 1, d)), mask.new_zeros((0, 1)), mask.new_full((0, 1), -1)
        n = b * length
        return hidden_c[: n * d].view(b, length, d), mask_c[:n].view(b, length), index[:n].view(b, length)


def load_cuda_kernel_library(path: str | Path | None = None) -> CudaTokenDropLibrary:
    """Load the CUDA kernel .so (default: :func:`default_cuda_kernel_library_path`).

    Loading works without a GPU (the symbols resolve); calling it needs CUDA tensors.
    Raises ``FileNotFoundError`` if the library does not exist, ``OSError`` if it cannot be loaded.
    """
    p = Path(path) if path is not None else default_cuda_kernel_library_path()
    if not p.exists():
        raise FileNotFoundError(f"{p} not found: build it with `make -C plugins/token_drop/cuda` "
                                "or plugins.token_drop.gpu.build_cuda_kernel_library()")
    return CudaTokenDropLibrary(p)
