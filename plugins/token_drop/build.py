"""Build the ONNX Runtime custom-op library ``libadapler_ops.so`` (``adapler::TokenDrop``).

The pip ``onnxruntime`` wheel ships no C/C++ headers, so they are taken from Debian trixie's
``libonnxruntime-dev`` .deb, downloaded with a *private* apt configuration into the build
directory and unpacked with ``dpkg -x`` — nothing is installed on the system
(docs/deploy.md §4.1). The library is compiled with one ``g++`` call (§4.2); it does not link
to libonnxruntime: the API arrives at run time through ``OrtApiBase``.

Usage::

    python -m adapler.plugins.token_drop.build [--build-dir build/token_drop] [--force]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "PluginBuildError",
    "REPO_ROOT",
    "DEFAULT_BUILD_DIR",
    "LIBRARY_NAME",
    "ENV_LIBRARY",
    "fetch_ort_headers",
    "build_ort_library",
    "find_ort_library",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).resolve().parent / "ort" / "token_drop.cc"
# Everything the library is compiled from: a change to any of them triggers a rebuild.
SOURCES = (SOURCE, SOURCE.parent / "compact.h",
           Path(__file__).resolve().parents[1] / "contribution_drop" / "ort" / "contribution_drop.h",
           Path(__file__).resolve().parents[1] / "contribution_drop" / "ort" / "packed_contribution_drop.h")
DEFAULT_BUILD_DIR = "build/token_drop"
LIBRARY_NAME = "libadapler_ops.so"
ENV_LIBRARY = "ADAPLER_ORT_LIBRARY"

# Debian archive already configured on the host (bookworm) and its keyring; trixie is the first
# Debian release with libonnxruntime-dev (1.21.0, ORT_API_VERSION 21).
DEBIAN_URI = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEBIAN_SUITE = "trixie"
HEADERS_PACKAGE = "libonnxruntime-dev"
HEADER_SUBDIR = Path("deb/usr/include/onnxruntime")
REQUIRED_HEADERS = ("onnxruntime_cxx_api.h", "onnxruntime_lite_custom_op.h", "onnxruntime_float16.h")

_NO_PLUGIN_HINT = "the ONNX standard-op graph model.std.onnx works without the plugin"


class PluginBuildError(RuntimeError):
    """A step of the plugin build failed; the message names the step and a fix (one line)."""


def _log(msg: str) -> None:
    print(f"[token_drop] {msg}", file=sys.stderr, flush=True)


def _resolve(build_dir: str | os.PathLike) -> Path:
    path = Path(build_dir)
    return path if path.is_absolute() else REPO_ROOT / path


def _run(cmd: list[str], step: str, fix: str, cwd: Path | None = None, timeout: float = 300) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False,
                              timeout=timeout)
    except FileNotFoundError as exc:
        raise PluginBuildError(f"{step}: `{cmd[0]}` not found; {fix}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PluginBuildError(f"{step} timed out after {timeout:.0f} s; {fix}") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        # apt's first "E:" line names the cause (e.g. "Could not resolve ..."); the compiler's
        # first "error:" line is the first real error.
        first = [ln for ln in lines if ln.startswith("E:") or "error:" in ln]
        detail = (first or lines or [f"exit code {proc.returncode}"])[0]
        raise PluginBuildError(f"{step} failed ({detail}); {fix}")


def _headers_ok(include_dir: Path) -> bool:
    return all((include_dir / name).is_file() for name in REQUIRED_HEADERS)


def fetch_ort_headers(build_dir: str | os.PathLike) -> Path:
    """Download and unpack Debian trixie's ``libonnxruntime-dev`` headers into ``build_dir``.

    Returns:
        The include directory (``<build_dir>/deb/usr/include/onnxruntime``). Reused when present.

    Raises:
        PluginBuildError: apt/dpkg missing, no network, or the package vanished from trixie.
    """
    build = _resolve(build_dir)
    include_dir = build / HEADER_SUBDIR
    if _headers_ok(include_dir):
        return include_dir
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise PluginBuildError(
            "fetching ORT headers needs apt-get and dpkg (Debian/Ubuntu); "
            f"on other systems, use {_NO_PLUGIN_HINT}"
        )
    if not Path(DEBIAN_KEYRING).is_file():
        raise PluginBuildError(
            f"Debian archive keyring {DEBIAN_KEYRING} is missing; install debian-archive-keyring, "
            f"or use {_NO_PLUGIN_HINT}"
        )
    (build / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (build / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (build / "none").mkdir(parents=True, exist_ok=True)  # empty SourceParts: ignore host lists
    sources = build / "sources.list"
    sources.write_text(f"deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_URI} {DEBIAN_SUITE} main\n")
    apt_opts = [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", f"Dir::Etc::SourceParts={build / 'none'}",
        "-o", f"Dir::State::Lists={build / 'lists'}",
        "-o", f"Dir::Cache={build / 'cache'}",
        "-o", "Acquire::Retries=1", "-o", "Acquire::http::Timeout=30",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        apt_opts += ["-o", "APT::Sandbox::User=root"]  # silences the "unsandboxed as root" notice

    fix = (
        f"could not download {HEADERS_PACKAGE} headers from Debian {DEBIAN_SUITE} (no network?); "
        f"{_NO_PLUGIN_HINT}"
    )
    for old in build.glob(f"{HEADERS_PACKAGE}_*.deb"):
        old.unlink()
    _log(f"downloading {HEADERS_PACKAGE} headers from Debian {DEBIAN_SUITE} into {build}")
    # --error-on=any: without it a failed index download only warns, and the real cause is lost.
    _run(["apt-get", "-q", *apt_opts, "--error-on=any", "update"],
         f"apt-get update (Debian {DEBIAN_SUITE})", fix)
    _run(["apt-get", "-q", *apt_opts, "download", HEADERS_PACKAGE],
         f"apt-get download {HEADERS_PACKAGE}", fix, cwd=build)
    debs = sorted(glob.glob(str(build / f"{HEADERS_PACKAGE}_*.deb")))
    if not debs:
        raise PluginBuildError(f"apt-get download produced no {HEADERS_PACKAGE} .deb; {fix}")
    _run(["dpkg", "-x", debs[-1], str(build / "deb")], f"dpkg -x {Path(debs[-1]).name}",
         f"the downloaded .deb may be corrupt; delete {build} and retry, or use {_NO_PLUGIN_HINT}")
    if not _headers_ok(include_dir):
        raise PluginBuildError(
            f"{Path(debs[-1]).name} lacks {', '.join(REQUIRED_HEADERS)} under {include_dir}; "
            f"the Debian package layout changed; {_NO_PLUGIN_HINT}"
        )
    _log(f"headers ready: {include_dir}")
    return include_dir


def build_ort_library(
    build_dir: str | os.PathLike = DEFAULT_BUILD_DIR, force: bool = False
) -> Path:
    """Compile ``ort/token_drop.cc`` (TokenDrop and ContributionDrop) into ``<build_dir>/libadapler_ops.so``.

    Rebuilds only when the library is missing, older than the source, or ``force`` is set.

    Returns:
        Absolute path of the shared library.

    Raises:
        PluginBuildError: headers unobtainable, no C++ compiler, or compilation failed.
    """
    build = _resolve(build_dir)
    library = build / LIBRARY_NAME
    if (not force and library.is_file()
            and all(library.stat().st_mtime >= src.stat().st_mtime for src in SOURCES)):
        return library
    include_dir = fetch_ort_headers(build)
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise PluginBuildError(
            f"C++ compiler `{cxx}` not found; install g++ (apt-get install g++) or set CXX, "
            f"or use {_NO_PLUGIN_HINT}"
        )
    build.mkdir(parents=True, exist_ok=True)
    tmp = build / f"{LIBRARY_NAME}.{os.getpid()}.tmp"  # per-process: parallel builds do not clash
    cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", f"-I{include_dir}",
           str(SOURCE), "-o", str(tmp)]
    _log(f"compiling {SOURCE.relative_to(REPO_ROOT)} -> {library}")
    _run(cmd, f"compiling {SOURCE.name}",
         f"check the compiler output with: {' '.join(cmd)}; or use {_NO_PLUGIN_HINT}")
    tmp.replace(library)  # atomic: a concurrent reader never sees a half-written library
    _log(f"built {library}")
    return library


def find_ort_library() -> Path | None:
    """Locate a built library: ``$ADAPLER_ORT_LIBRARY`` if set, else the default build location.

    Returns:
        The path, or None when nothing is built (an env var naming a missing file also gives None).
    """
    env = os.environ.get(ENV_LIBRARY)
    if env:
        path = Path(env).expanduser()
        return path.resolve() if path.is_file() else None
    path = _resolve(DEFAULT_BUILD_DIR) / LIBRARY_NAME
    return path if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adapler.plugins.token_drop.build",
        description="Build the ONNX Runtime custom-op library for adapler::TokenDrop.",
    )
    parser.add_argument("--build-dir", default=DEFAULT_BUILD_DIR,
                        help=f"build directory, relative to the repo root (default {DEFAULT_BUILD_DIR})")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args(argv)
    try:
        library = build_ort_library(args.build_dir, force=args.force)
    except PluginBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(library)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
