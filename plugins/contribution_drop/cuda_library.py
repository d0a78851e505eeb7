"""The CUDA kernel library ``libadapler_contribution_drop_cuda.so``: its build (nvcc) and its ctypes binding.

    python -m adapler.plugins.contribution_drop.cuda_library [--out PATH] [--arch 90a --arch 87]

Compiles ``cuda/contribution_drop_kernel.cu`` (which includes TokenDrop's CUDA compaction,
``plugins/token_drop/cuda/compact.cuh``) for the architectures TokenDrop's library uses
(``plugins/token_drop/cuda/architectures.txt``). Needs only nvcc: no GPU, no TensorRT. Calling it needs
CUDA tensors on a GPU; ``tests/test_contribution_drop_cuda.py`` checks it against ``reference.py`` there.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch import Tensor

from ..token_drop.cuda_library import build_cuda_kernel_library, build_main

__all__ = [
    "CONTRIBUTION_DROP_SOURCE",
    "CudaContributionDropLibrary",
    "build_contribution_drop_cuda_library",
    "default_contribution_drop_cuda_path",
    "load_contribution_drop_cuda_library",
]

CONTRIBUTION_DROP_SOURCE = Path(__file__).resolve().parent / "cuda" / "contribution_drop_kernel.cu"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_MASK_TYPES = {torch.int64: 0, torch.int32: 1}
_DTYPES = {torch.float32: 0, torch.float16: 1}


def default_contribution_drop_cuda_path() -> Path:
    """Where :func:`build_contribution_drop_cuda_library` puts the .so by default."""
    return _REPO_ROOT / "build" / "contribution_drop_cuda" / "libadapler_contribution_drop_cuda.so"


def build_contribution_drop_cuda_library(out_path: str | Path | None = None, archs: tuple[str, ...] | None = None,
                                         nvcc: str | None = None, timeout: float = 300.0) -> Path:
    """Compile the kernel into a shared library; ``RuntimeError`` when nvcc is missing or fails."""
    out = Path(out_path) if out_path is not None else default_contribution_drop_cuda_path()
    return build_cuda_kernel_library(out, archs, nvcc, timeout, source=CONTRIBUTION_DROP_SOURCE)


def check_inputs(hidden: Tensor, cp_hidden: Tensor, w2: Tensor, mask: Tensor, eta: Tensor) -> tuple[int, int, int, int]:
    """``(B, T, D, H)`` after the spec's shape and type rules; ``ValueError`` naming the input otherwise."""
    if hidden.dim() != 3:
        raise ValueError(f"ContributionDrop: hidden must be [B, T, D], got {tuple(hidden.shape)}")
    b, t, d = hidden.shape
    if cp_hidden.dim() != 3 or tuple(cp_hidden.shape[:2]) != (b, t):
        raise ValueError(f"ContributionDrop: cp_hidden must be [B, T, H] with [B, T] = [{b}, {t}], "
                         f"got {tuple(cp_hidden.shape)}")
    h = cp_hidden.shape[2]
    if cp_hidden.dtype != hidden.dtype:
        raise ValueError(f"ContributionDrop: cp_hidden must have hidden's type {hidden.dtype}, got {cp_hidden.dtype}")
    if tuple(w2.shape) != (h,):
        raise ValueError(f"ContributionDrop: w2 must be [H] = [{h}], got {tuple(w2.shape)}")
    if tuple(mask.shape) != (b, t) or mask.dtype not in _MASK_TYPES:
        raise ValueError(f"ContributionDrop: mask must be int64 or int32 [B, T] = [{b}, {t}], "
                         f"got {mask.dtype} {tuple(mask.shape)}")
    if eta.numel() != 1:
        raise ValueError(f"ContributionDrop: eta must have one element, got {tuple(eta.shape)}")
    if b > 0 and (t < 1 or h < 1):
        raise ValueError(f"ContributionDrop: T and H must be >= 1, got T = {t}, H = {h}")
    return b, t, d, h


class CudaContributionDropLibrary:
    """ctypes binding of ``libadapler_contribution_drop_cuda.so`` (see ``cuda/contribution_drop_kernel.h``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lib = ctypes.CDLL(str(self.path))
        self.lib.adapler_contribution_drop_version.restype = ctypes.c_char_p
        self.lib.adapler_contribution_drop_workspace_size.restype = ctypes.c_size_t
        self.lib.adapler_contribution_drop_workspace_size.argtypes = [ctypes.c_int64, ctypes.c_int64]
        vp, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        self.lib.adapler_contribution_drop_launch.restype = c_int
        self.lib.adapler_contribution_drop_launch.argtypes = [
            c_int, c_int, vp, vp, vp, vp, vp, i64, i64, i64, i64, vp, vp, vp, vp, vp, vp, vp,
        ]

    def version(self) -> str:
        return self.lib.adapler_contribution_drop_version().decode()

    def workspace_size(self, batch: int, seq_len: int) -> int:
        return int(self.lib.adapler_contribution_drop_workspace_size(batch, seq_len))

    def __call__(self, hidden: Tensor, cp_hidden: Tensor, w2: Tensor, mask: Tensor, eta: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor]:
        """Run on the current CUDA stream; outputs are views of upper-bound buffers (one sync, for L)."""
        b, t, d, h = check_inputs(hidden, cp_hidden, w2, mask, eta)
        if not hidden.is_cuda:
            raise ValueError("the CUDA kernel library needs CUDA tensors")
        if hidden.dtype not in _DTYPES:
            raise ValueError(f"the CUDA kernel supports float32/float16 hidden, got {hidden.dtype}")
        dev = hidden.device
        hidden, cp_hidden, mask = hidden.contiguous(), cp_hidden.contiguous(), mask.contiguous()
        w2 = w2.to(device=dev, dtype=torch.float32).contiguous()
        eta = eta.reshape(1).to(device=dev, dtype=torch.float32).contiguous()
        hidden_c = torch.empty(b * t * d, dtype=hidden.dtype, device=dev)
        mask_c = torch.empty(b * t, dtype=mask.dtype, device=dev)
        index = torch.empty(b * t, dtype=torch.int64, device=dev)
        length_dev = torch.empty(1, dtype=torch.int64, device=dev)
        workspace = torch.empty(self.workspace_size(b, t) + 256, dtype=torch.uint8, device=dev)
        ws_ptr = (workspace.data_ptr() + 255) // 256 * 256
        stream = torch.cuda.current_stream(dev).cuda_stream
        rc = self.lib.adapler_contribution_drop_launch(
            _DTYPES[hidden.dtype], _MASK_TYPES[mask.dtype], hidden.data_ptr(), cp_hidden.data_ptr(), w2.data_ptr(),
            mask.data_ptr(), eta.data_ptr(), b, t, d, h, hidden_c.data_ptr(), mask_c.data_ptr(), index.data_ptr(),
            length_dev.data_ptr(), None, ws_ptr, stream,
        )
        if rc != 0:
            raise RuntimeError(f"adapler_contribution_drop_launch failed with code {rc}")
        length = int(length_dev.item()) if b > 0 else 1  # the one sync (also keeps workspace alive)
        if b == 0:
            return hidden.new_zeros((0, 1, d)), mask.new_zeros((0, 1)), torch.full((0, 1), -1, dtype=torch.int64)
        n = b * length
        return hidden_c[: n * d].view(b, length, d), mask_c[:n].view(b, length), index[:n].view(b, length)


def load_contribution_drop_cuda_library(path: str | Path | None = None) -> CudaContributionDropLibrary:
    """Load the .so (default :func:`default_contribution_drop_cuda_path`); works without a GPU.

    Raises ``FileNotFoundError`` if the library does not exist, ``OSError`` if it cannot be loaded.
    """
    p = Path(path) if path is not None else default_contribution_drop_cuda_path()
    if not p.exists():
        raise FileNotFoundError(f"{p} not found: build it with `python -m adapler.plugins.contribution_drop.cuda_library`")
    return CudaContributionDropLibrary(p)


def main(argv: list[str] | None = None) -> int:
    return build_main(argv, "python -m adapler.plugins.contribution_drop.cuda_library", "ContributionDrop",
                      "build/contribution_drop_cuda/...", build_contribution_drop_cuda_library)


if __name__ == "__main__":
    raise SystemExit(main())
