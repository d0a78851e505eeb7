"""Packaging: one installed name (`adapler`), a console script, and no generic top-level packages."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT

SUBPACKAGES = ("export", "bench", "plugins")


def test_subpackages_are_links_into_the_adapler_package():
    for name in SUBPACKAGES:
        link = ROOT / "adapler" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve(), link


def test_no_module_imports_the_old_top_level_names():
    """`export`, `bench` and `plugins` are only importable as adapler.export etc. once installed."""
    bad = re.compile(r"^\s*(from|import) (export|bench|plugins)\b", re.M)
    files = [ROOT / "cli.py", *(p for d in ("adapler", "tests", *SUBPACKAGES) for p in (ROOT / d).rglob("*.py")
                                if not p.is_relative_to(ROOT / "adapler" / "export")
                                and not p.is_relative_to(ROOT / "adapler" / "bench")
                                and not p.is_relative_to(ROOT / "adapler" / "plugins"))]
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in files for m in bad.finditer(p.read_text())]
    assert not offenders, offenders


def test_pyproject_installs_only_adapler_and_the_console_script():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["scripts"] == {"adapler": "adapler.cli:main"}
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["adapler*"]


def test_console_script_runs():
    script = Path(sys.executable).parent / "adapler"
    if not script.exists():
        pytest.skip("the `adapler` console script is not installed in this environment (re-run `make install`)")
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for command in ("train", "export", "bench"):
        assert command in proc.stdout


def test_every_adapler_module_is_in_the_layer_contract():
    """A module missing from the contract's layers is not checked at all (import-linter ignores it)."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    layers = next(c for c in meta["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    named = {m.strip() for layer in layers for m in layer.split(":")}
    modules = {f"adapler.{p.stem}" for p in (ROOT / "adapler").glob("*.py") if p.stem != "__init__"}
    packages = {f"adapler.{p.name}" for p in (ROOT / "adapler").iterdir() if (p / "__init__.py").exists()}
    assert sorted((modules | packages) - named) == []
