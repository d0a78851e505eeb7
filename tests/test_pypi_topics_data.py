"""bench/pypi_topics_data.py: which projects it keeps and the two files it writes (PyPI replaced by a dict)."""
import csv

import pytest

from adapler.bench import pypi_topics_data as ptd


def test_topic_is_the_one_top_level_topic():
    assert ptd.topic({"classifiers": ["Topic :: Internet :: WWW/HTTP", "Topic :: Internet", "License :: MIT"]}) == "Internet"
    assert ptd.topic({"classifiers": ["Topic :: Internet", "Topic :: System :: Logging"]}) is None
    assert ptd.topic({"classifiers": ["License :: MIT"]}) is None
    assert ptd.topic({}) is None


def test_manifest_run_keeps_long_single_topic_unique_descriptions(tmp_path, monkeypatch):
    long = "x" * 40
    fake = {
        ("a", "1.0"): {"version": "1.0", "description": long + "a", "classifiers": ["Topic :: Internet :: WWW/HTTP"]},
        ("b", "2.0"): {"version": "2.0", "description": "short", "classifiers": ["Topic :: Internet"]},
        ("c", "0.1"): {"version": "0.1", "description": long + "c", "classifiers": ["Topic :: Internet", "Topic :: System"]},
        ("d", "3"): {"version": "3", "description": long + "a", "classifiers": ["Topic :: System"]},  # a's text again
        ("e", "1"): {"version": "1", "description": long + "e", "classifiers": ["Topic :: Games/Entertainment"]},
        ("f", "1"): None,  # deleted from PyPI
        ("g", "5"): {"version": "5", "description": "\n" + long + "g\n", "classifiers": ["Topic :: System :: Shells"]},
    }
    monkeypatch.setattr(ptd, "project", lambda name, version=None: fake[(name, version)])
    manifest = tmp_path / "m.csv"
    manifest.write_text("name,version,label\n" + "".join(f"{n},{v},?\n" for n, v in fake))
    out = tmp_path / "out"
    ptd.main(["--manifest", str(manifest), "--out", str(out), "--min-chars", "30", "--topics", "Internet,System"])
    rows = list(csv.DictReader(open(out / "data.csv", newline="")))
    assert [(r["text"], r["label"]) for r in rows] == [(long + "a", "Internet"), (long + "g", "System")]
    assert list(csv.DictReader(open(out / "manifest.csv", newline=""))) == [
        {"name": "a", "version": "1.0", "label": "Internet"}, {"name": "g", "version": "5", "label": "System"}]
    with pytest.raises(SystemExit, match="already exists; pass --overwrite"):
        ptd.main(["--manifest", str(manifest), "--out", str(out)])


def test_unreadable_manifest_is_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"cannot read --manifest .*missing.csv.*columns name,version,label"):
        ptd.main(["--manifest", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "out")])
    bad = tmp_path / "bad.csv"
    bad.write_text("package,release\na,1\n")
    with pytest.raises(SystemExit, match=r"cannot read --manifest .*'name'"):
        ptd.main(["--manifest", str(bad), "--out", str(tmp_path / "out")])
