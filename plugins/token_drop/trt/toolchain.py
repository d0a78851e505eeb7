"""Find TensorRT headers, the CUDA toolkit and compilers to compile-check the C++ plugin without TensorRT.

Header sets, first match wins:

1. ``TRT_ROOT``: a real TensorRT install (``include/NvInfer.h`` and ``lib/libnvinfer.so``); used instead of
   the vendored copies, and its ``libnvinfer`` is linked instead of a stub.
2. ``ADAPLER_TRT_HEADERS``: a folder of ``<version>/include/NvInfer.h`` sets, or one include folder.
3. ``<repo>/../shared/vendor/tensorrt-headers/<version>/include`` (the CI layout: ``shared/`` beside the clone).

Nothing here needs TensorRT or a GPU; callers skip with the returned reason when something is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

__all__ = [
    "PLUGIN_DIR", "CUDA_DIR", "TrtHeaders", "CompileResult", "find_trt_headers", "find_cuda_root", "find_cxx",
    "find_nvcc", "trt_version", "run_tool",
]

PLUGIN_DIR = Path(__file__).resolve().parent          # token_drop_plugin.{h,cpp}, CMakeLists.txt
CUDA_DIR = PLUGIN_DIR.parent / "cuda"                  # token_drop_kernel.{cu,h}
REPO_ROOT = PLUGIN_DIR.parents[2]
VENDORED_HEADERS = Path("shared") / "vendor" / "tensorrt-headers"   # relative to the repo's parent folder


@dataclass(frozen=True)
class TrtHeaders:
    """One TensorRT header set; ``lib_dir`` only for a real install (TRT_ROOT)."""
    label: str
    version: str
    include_dir: Path
    lib_dir: Path | None = None

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass
class CompileResult:
    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout + stderr, stripped: a compiler's diagnostics."""
        return (self.stdout + self.stderr).strip()


def trt_version(include_dir: str | Path) -> str:
    """``MAJOR.MINOR.PATCH`` from ``NvInferVersion.h`` (10.x names them NV_TENSORRT_*, 11.x TRT_*_ENTERPRISE)."""
    text = (Path(include_dir) / "NvInferVersion.h").read_text(errors="replace")
    parts = {}
    for key in ("MAJOR", "MINOR", "PATCH"):
        m = (re.search(rf"#define\s+TRT_{key}_ENTERPRISE\s+(\d+)", text)
             or re.search(rf"#define\s+NV_TENSORRT_{key}\s+(\d+)", text))
        if m is None:
            raise ValueError(f"{include_dir}/NvInferVersion.h: no TensorRT {key.lower()} version found")
        parts[key] = m.group(1)
    return f"{parts['MAJOR']}.{parts['MINOR']}.{parts['PATCH']}"


def _include_sets(folder: Path) -> list[TrtHeaders]:
    """``folder`` itself as an include dir, or each ``folder/<version>/include``."""
    if (folder / "NvInfer.h").is_file():
        return [TrtHeaders(folder.name, trt_version(folder), folder)]
    return [TrtHeaders(sub.name, trt_version(sub / "include"), sub / "include")
            for sub in sorted(folder.iterdir()) if (sub / "include" / "NvInfer.h").is_file()]


def find_trt_headers(environ: Mapping[str, str] | None = None,
                     repo_root: Path = REPO_ROOT) -> tuple[list[TrtHeaders], str]:
    """Header sets to compile against and, when there are none, the reason (for a pytest skip)."""
    env = os.environ if environ is None else environ
    root = env.get("TRT_ROOT", "")
    if root:
        base = Path(root)
        # the SDK tarball layout, or the Debian packages' (JetPack: TRT_ROOT=/usr)
        include = next((p for p in [base / "include", *sorted(base.glob("targets/*/include")),
                                    *sorted(base.glob("include/*-linux-gnu"))] if (p / "NvInfer.h").is_file()), None)
        lib = next((p for p in [base / "lib", base / "lib64", *sorted(base.glob("targets/*/lib")),
                                *sorted(base.glob("lib/*-linux-gnu"))] if any(p.glob("libnvinfer.so*"))), None)
        if include is None or lib is None:
            return [], f"TRT_ROOT={root} has no include/NvInfer.h or lib/libnvinfer.so"
        return [TrtHeaders("trt_root", trt_version(include), include, lib)], ""
    folder = env.get("ADAPLER_TRT_HEADERS", "")
    if folder:
        sets = _include_sets(Path(folder)) if Path(folder).is_dir() else []
        return sets, "" if sets else f"ADAPLER_TRT_HEADERS={folder} holds no NvInfer.h header set"
    vendored = repo_root.parent / VENDORED_HEADERS
    sets = _include_sets(vendored) if vendored.is_dir() else []
    return sets, "" if sets else (f"no TensorRT headers: set TRT_ROOT or ADAPLER_TRT_HEADERS, or put the vendored "
                                  f"headers at {vendored}")


def find_cuda_root(environ: Mapping[str, str] | None = None) -> Path | None:
    """A CUDA toolkit folder with ``include/cuda_runtime_api.h`` (CUDA_HOME, CUDA_PATH, /usr/local/cuda*)."""
    env = os.environ if environ is None else environ
    candidates = [Path(env[k]) for k in ("CUDA_HOME", "CUDA_PATH") if env.get(k)]
    candidates += [Path("/usr/local/cuda")] + sorted(Path("/usr/local").glob("cuda-*"), reverse=True)
    return next((c for c in candidates if (c / "include" / "cuda_runtime_api.h").is_file()), None)


def find_cxx() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")


def find_nvcc(cuda_root: Path | None = None) -> str | None:
    if cuda_root is not None and (cuda_root / "bin" / "nvcc").is_file():
        return str(cuda_root / "bin" / "nvcc")
    return shutil.which("nvcc")


def run_tool(cmd: Sequence[str | Path], cwd: Path | None = None, timeout: float = 300) -> CompileResult:
    """Run a compiler/linker; keep its diagnostics for the caller to assert on."""
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    return CompileResult(cmd, proc.returncode, proc.stdout, proc.stderr)
