"""Writing results safely: atomic file writes (temp file + ``os.replace``), exclusive creation without
--overwrite, and directory replacement that never leaves a moment without a complete copy."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .errors import OutputError


def ensure_out_dir(path: str | Path) -> Path:
    """``path`` may be created as a directory: refuse an existing file (or a file where a parent should be)."""
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise OutputError(f"--out {path}: {p} is a file, not a directory; choose a directory path")
    return path


def ensure_writable(path: str | Path, overwrite: bool, option: str = "--out") -> Path:
    """Refuse to replace existing results unless ``overwrite``; never deletes anything itself. ``option``: the
    command-line option that chose ``path`` (the error names it)."""
    path = Path(path)
    occupied = any(path.iterdir()) if path.is_dir() else path.exists()
    if occupied and not overwrite:
        raise OutputError(f"{path} already exists; pass --overwrite to replace it or choose another {option}")
    return path


def write_text_atomic(path: str | Path, text: str, *, overwrite: bool = True) -> Path:
    """Write ``text`` to a temp file beside ``path`` then move it in, so readers never see half a file.

    Without ``overwrite`` the file is created exclusively: if it appeared meanwhile (another run wrote
    it after our start-up check) nothing is replaced and ``OutputError`` says so."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are ordinary files
        if overwrite:
            os.replace(tmp, path)
        else:
            _create_exclusive(Path(tmp), path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _create_exclusive(tmp: Path, path: Path) -> None:
    exists = OutputError(f"{path} already exists (another run wrote it meanwhile?); nothing was replaced; "
                         "pass --overwrite to replace it or choose another file")
    try:
        os.link(tmp, path)  # atomic create-if-absent with the complete content
    except FileExistsError:
        raise exists from None
    except OSError:  # no hard links on this filesystem: reserve the name exclusively, then move in
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise exists from None
        os.replace(tmp, path)


def write_json_atomic(path: str | Path, obj: Any, *, overwrite: bool = True, **dump_kwargs: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, **dump_kwargs) + "\n", overwrite=overwrite)


def aside(path: Path) -> Path:
    """Where ``replace_dir`` keeps the previous version while the new one moves in."""
    return path.with_name(path.name + ".old")


def replace_dir(new: Path, path: Path, keep_old: bool = False) -> Path:
    """Move the complete directory ``new`` to ``path``: the old one is renamed aside first and deleted only
    after the new one is in place, so a crash at any point leaves a complete copy (``recover_dir``).

    ``keep_old``: leave the aside copy until ``discard_aside`` (a trainer calls it once run_state.json
    records the new epoch, so a crash between the two writes can go back to the copy the state names)."""
    old = aside(path)
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(new, path)
    if not keep_old:
        discard_aside(path)
    return path


def discard_aside(path: Path) -> None:
    if aside(path).exists():
        shutil.rmtree(aside(path), ignore_errors=True)


def recover_dir(path: Path, complete) -> bool:
    """After a crash inside ``replace_dir`` (or an older save that deleted first): if ``path`` is missing,
    put back the aside copy, else a complete temp copy (``complete(dir) -> bool``). True if restored."""
    if path.exists():
        return False
    for candidate in (aside(path), path.with_name(path.name + ".tmp")):
        if candidate.is_dir() and complete(candidate):
            os.replace(candidate, path)
            return True
    return False


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (weights and archives can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
