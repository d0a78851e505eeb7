"""Where a benchmark ran: threads, CPU, library versions, git commit, ORT spinning, date."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "onnxruntime", "onnx", "transformers", "numpy", "polygraphy")


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The ``model name`` line of /proc/cpuinfo (None where there is none, e.g. non-Linux)."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_state(repo: str | Path = REPO_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` (dirty: tracked files differ from HEAD)."""
    def git(*args: str) -> str | None:
        try:
            p = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return p.stdout.strip() if p.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cuda_device() -> str | None:
    try:
        import torch
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # a broken driver must not stop a CPU benchmark
        return None


def collect_environment(*, torch_threads: int | None = None, ort_threads: int | None = None,
                        ort_spinning: str | None = None) -> dict[str, Any]:
    """The ``environment`` block of results.json (see bench/README.md); ``ort_spinning`` defaults to the
    policy every session gets (``DEFAULT_SPINNING``)."""
    import torch

    from adapler.plugins.token_drop.ort_session import DEFAULT_SPINNING
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "load_average": load,
        "torch_threads": torch_threads if torch_threads is not None else torch.get_num_threads(),
        "ort_intra_op_threads": ort_threads,
        "ort_spinning": str(ort_spinning or DEFAULT_SPINNING),
        "cuda_device": cuda_device(),
        "versions": package_versions(),
        "git": git_state(),
    }
