"""The CUDA kernel library ``libadapler_token_drop_cuda.so``: its one build (nvcc) and its ctypes binding.

    python -m adapler.plugins.token_drop.cuda_library [--out PATH] [--arch 90a --arch 87]

Compiles ``cuda/token_drop_kernel.cu`` for the architectures in ``cuda/architectures.txt`` (the list the
TensorRT plugin's CMake build reads too). Needs only nvcc: no GPU, no TensorRT. Calling the library needs
CUDA tensors on a GPU.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .keep_rule import check_inputs

__all__ = [
    "ARCHITECTURES_FILE",
    "TOKEN_DROP_SOURCE",
    "CudaTokenDropLibrary",
    "build_cuda_kernel_library",
    "cuda_architectures",
    "default_cuda_kernel_library_path",
    "load_cuda_kernel_library",
    "nvcc_command",
]

CUDA_DIR = Path(__file__).resolve().parent / "cuda"
ARCHITECTURES_FILE = CUDA_DIR / "architectures.txt"
ENV_ARCHS = "ADAPLER_CUDA_ARCHS"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def cuda_architectures(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """``$ADAPLER_CUDA_ARCHS`` (space separated) if set, else the entries of ``cuda/architectures.txt``."""
    env = os.environ if environ is None else environ
    if env.get(ENV_ARCHS, "").strip():
        return tuple(env[ENV_ARCHS].split())
    lines = (ln.strip() for ln in ARCHITECTURES_FILE.read_text().splitlines())
    return tuple(ln for ln in lines if ln and not ln.startswith("#"))


def default_cuda_kernel_library_path() -> Path:
    """Where :func:`build_cuda_kernel_library` puts the .so by default (``build/token_drop_cuda/``)."""
    return _REPO_ROOT / "build" / "token_drop_cuda" / "libadapler_token_drop_cuda.so"


def _find_nvcc() -> str | None:
    return shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)


TOKEN_DROP_SOURCE = CUDA_DIR / "token_drop_kernel.cu"


def nvcc_command(nvcc: str, out: Path, archs: tuple[str, ...], source: Path = TOKEN_DROP_SOURCE) -> list[str]:
    """The nvcc call: machine code and PTX for every architecture, warnings on, a shared library."""
    cmd = [nvcc, "-O3", "-std=c++17", "-Xcompiler", "-fPIC,-Wall,-Wextra", "-shared"]
    for arch in archs:
        cmd += ["-gencode", f"arch=compute_{arch},code=[sm_{arch},compute_{arch}]"]
    return cmd + [str(source), "-o", str(out)]


def build_cuda_kernel_library(out_path: str | Path | None = None, archs: tuple[str, ...] | None = None,
                              nvcc: str | None = None, timeout: float = 300.0,
                              source: Path = TOKEN_DROP_SOURCE) -> Path:
    """Compile ``source`` (default ``cuda/token_drop_kernel.cu``) into a shared library (``archs``: default
    :func:`cuda_architectures`). ContributionDrop's kernel library is built the same way from its own source.

    Raises ``RuntimeError`` when nvcc is missing or compilation fails.
    """
    nvcc = nvcc or _find_nvcc()
    if nvcc is None:
        raise RuntimeError("nvcc not found (install the CUDA toolkit or put nvcc on PATH)")
    out = Path(out_path) if out_path is not None else default_cuda_kernel_library_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = nvcc_command(nvcc, out, tuple(archs) if archs else cuda_architectures(), source)
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
        b, t, d = check_inputs(hidden, scores, mask, threshold)
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
        raise FileNotFoundError(f"{p} not found: build it with `python -m adapler.plugins.token_drop.cuda_library`")
    return CudaTokenDropLibrary(p)


def build_main(argv: list[str] | None, prog: str, op: str, default_out: str,
               build: Callable[..., Path]) -> int:
    """The command line of a kernel library's build (``--out``, repeatable ``--arch``); one line on failure."""
    parser = argparse.ArgumentParser(prog=prog, description=f"Build the {op} CUDA kernel library with nvcc.")
    parser.add_argument("--out", default=None, help=f"library path (default {default_out})")
    parser.add_argument("--arch", action="append", default=None,
                        help="a CUDA architecture such as 90a or 87 (repeatable; default cuda/architectures.txt)")
    args = parser.parse_args(argv)
    try:
        print(build(args.out, archs=tuple(args.arch) if args.arch else None))
    except RuntimeError as exc:
        print(f"error: {str(exc).splitlines()[0]}; see the nvcc output above or install the CUDA toolkit",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return build_main(argv, "python -m adapler.plugins.token_drop.cuda_library", "TokenDrop",
                      "build/token_drop_cuda/...", build_cuda_kernel_library)


if __name__ == "__main__":
    raise SystemExit(main())
