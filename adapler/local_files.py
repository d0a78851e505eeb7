"""Local CSV, TSV and JSONL files (one file split 80/10/10, or a directory of train/dev/test files) read into
labelled examples; which column is which is settled by ``columns.py``. Entry point: ``data.load_dataset``."""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .columns import (LABEL_COLUMNS, SAMPLE_ROWS, TEXT_COLUMNS, describe, header_is_data, infer_columns,
                      resolve_by_name)
from .data import (_EXTS, _SPLIT_80_10_10, DataError, Example, _check_columns, _label_key, _sorted_labels,
                   _stratified)


def _lift_csv_field_limit() -> None:
    """The csv module refuses fields over 128 KiB; long documents are truncated at tokenisation instead."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # C long is 32-bit on some platforms
            limit //= 2


def _csv_delimiter(text: str) -> str:
    """``,`` unless the first line has none and has ``;``, a tab or ``|`` (spreadsheets in many locales save
    ``text;label``): then the most frequent of those."""
    first = text.split("\n", 1)[0]
    if "," in first:
        return ","
    counts = {d: first.count(d) for d in ";\t|"}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_records(path: Path, encoding: str) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    """The file's column names (a CSV's first line, a JSON file's first record's keys) and its records as
    (line, values in column order)."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") and encoding.replace("-", "").replace("_", "").lower() == "utf8":
        encoding = "utf-16"  # a UTF-16 byte-order mark (spreadsheets' "Unicode text") says what the file is
    try:
        text = data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        guess = "utf-16" if data[:4096].count(0) > 64 else "latin-1"  # NUL bytes everywhere: 16-bit text
        raise DataError(f"{path}: line {line} is not valid {encoding} text ({e.reason}); "
                        f"pass --encoding {guess} (or the file's real encoding)") from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}; pass e.g. --encoding utf-8 or --encoding latin-1") from None
    if path.suffix.lower() in (".csv", ".tsv"):
        _lift_csv_field_limit()
        tsv = path.suffix.lower() == ".tsv"  # TSV as in GLUE: no quoting, quotes are literal text
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if tsv else _csv_delimiter(text),
                            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        rows: list[tuple[int, list[Any]]] = []
        try:
            header = [h.strip() for h in next(reader, [])]
            start = reader.line_num + 1
            for rec in reader:
                if any(f.strip() for f in rec):
                    rows.append((start, rec))
                start = reader.line_num + 1
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({e})") from None
        if not header:
            raise DataError(f"{path} is empty; expected a header row such as text,label")
        return header, rows
    whole = _whole_json(text)
    if whole is not None:
        return whole
    records: list[tuple[int, Any]] = []
    for i, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                records.append((i, json.loads(line)))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: line {i} is not valid JSON ({e.msg}); expected one object per line") from None
    if any(not isinstance(r, dict) for _, r in records):
        raise DataError(f"{path}: every JSON line must be an object such as {{\"text\": ..., \"label\": ...}}")
    if not records:
        raise DataError(f"{path} has no records")
    columns = list(records[0][1])
    return columns, [(i, [r.get(c) for c in columns]) for i, r in records]


def _whole_json(text: str) -> tuple[list[str], list[tuple[int, list[Any]]]] | None:
    """A file that is one JSON document in a table shape: an array of records (``to_json(orient="records")``;
    record N stands for line N in messages) or columns (``{"text": [...], "label": [...]}``, or pandas'
    default ``{"text": {"0": ...}, ...}``). None for anything else, which is then read as JSON lines."""
    if text.lstrip()[:1] not in ("[", "{"):
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(doc, list):
        if not doc or not all(isinstance(r, dict) for r in doc):
            return None
        columns = list(dict.fromkeys(k for r in doc for k in r))
        return columns, [(i, [r.get(c) for c in columns]) for i, r in enumerate(doc, 1)]
    if not isinstance(doc, dict) or not doc:
        return None
    cols = list(doc.values())
    if all(isinstance(c, list) for c in cols) and len({len(c) for c in cols}) == 1:
        return list(doc), [(i + 1, [c[i] for c in cols]) for i in range(len(cols[0]))]
    if all(isinstance(c, dict) for c in cols):
        index = list(dict.fromkeys(k for c in cols for k in c))
        return list(doc), [(i, [c.get(k) for c in cols]) for i, k in enumerate(index, 1)]
    return None


@dataclass
class FileColumns:
    """What the train file of a local dataset settled, for its dev and test files and for the summary line."""
    cols: tuple[str | None, str | None, str | None]
    headerless: bool | None = None  # None: not decided yet (the train file decides)
    note: str = ""


def _settle_columns(path: Path, header: list[str], rows: list[tuple[int, list[Any]]], settled: FileColumns
                    ) -> tuple[list[str], list[tuple[int, list[Any]]], tuple[str, str | None, str]]:
    """The text, pair and label columns of one file: the flags, else known names (``columns.TEXT_COLUMNS``),
    else inferred from the values (``columns.infer_columns``), which is also when a CSV without a header row
    is recognised. Updates ``settled`` the first time (the train file)."""
    given = settled.cols
    cols = resolve_by_name(header, given)
    values = [r for _, r in rows]
    csv_like = path.suffix.lower() in (".csv", ".tsv")
    if settled.headerless is None:
        settled.headerless = False
        # no name fits, or the flags number the columns (--text-col 2): maybe there is no header row at all
        flags = [c for c in (given[0], given[2]) if c is not None]
        numbered = [] if all(c in header for c in flags) else [c for c in flags if c.isdigit() and int(c) > 0]
        by_name = resolve_by_name(header, tuple(None if c in numbered else c for c in given))
        if csv_like and by_name[0] is None and by_name[2] is None:
            label = (int(given[2]) - 1 if given[2] in numbered
                     else infer_columns(values, len(header), False, True, set())[1])
            settled.headerless = label is not None and header_is_data(header, values, label)
    if settled.headerless:
        rows = [(1, list(header))] + rows
        values = [r for _, r in rows]
        header = [str(i + 1) for i in range(max(map(len, values)))]
        cols = resolve_by_name(header, given)
    inferred = []
    if cols[0] is None or cols[2] is None:
        taken = {header.index(c) for c in cols if c is not None and c in header}
        width = max([len(header)] + [len(v) for v in values[:SAMPLE_ROWS]])
        text, label = infer_columns(values, width, cols[0] is None, cols[2] is None, taken)
        names = header + [str(i + 1) for i in range(len(header), width)]
        if text is not None:
            inferred.append(describe(names[text], values, text, "text"))
        if label is not None:
            inferred.append(describe(names[label], values, label, "label"))
        cols = (names[text] if text is not None else cols[0], cols[1],
                names[label] if label is not None else cols[2])
        header = names
    if not settled.note and (inferred or settled.headerless):
        settled.note = ("no header row (columns numbered from 1); " if settled.headerless else "") + (
            f"columns inferred from the values: {', '.join(inferred)}; --text-col / --label-col choose others"
            if inferred else "")
    cols = (cols[0] or TEXT_COLUMNS[0], cols[1], cols[2] or LABEL_COLUMNS[0])  # unresolved: reported below
    _check_columns(str(path), header, cols)
    return header, rows, cols


def _read_file(path: Path, settled: FileColumns, encoding: str,
               notes: dict[str, int]) -> list[tuple[str, str, str | None, str]]:
    """Rows as (id, text, text_pair, label_key); rows with an empty text or no label are dropped and counted
    (as the Hub path drops GLUE's unlabelled test rows). ``settled`` carries the columns the train file settled
    to the dev and test files."""
    header, rows, cols = _settle_columns(path, *_read_records(path, encoding), settled)
    settled.cols = cols
    text_i, label_i = header.index(cols[0]), header.index(cols[2])
    pair_i = header.index(cols[1]) if cols[1] else None
    cell = lambda rec, i: rec[i] if i is not None and i < len(rec) else None  # noqa: E731 (short rows)
    labels = ["" if cell(rec, label_i) is None else _label_key(cell(rec, label_i)) for _, rec in rows]
    no_label = [line for (line, _), label in zip(rows, labels) if not label]
    if rows and len(no_label) * 2 > len(rows):  # mostly empty: the wrong column, not a few unlabelled rows
        raise DataError(f"{path}: label column {cols[2]!r} is empty in {len(no_label)} of {len(rows)} rows "
                        f"(first at line {no_label[0]}); choose the column that holds the labels with --label-col")
    notes["dropped_unlabelled"] = notes.get("dropped_unlabelled", 0) + len(no_label)
    out = []
    for (line, rec), label in zip(rows, labels):
        if not label:
            continue
        text, pair = cell(rec, text_i), cell(rec, pair_i)
        text = "" if text is None else str(text).strip()
        pair = None if pair_i is None else ("" if pair is None else str(pair).strip())
        if not text or pair == "":
            notes["dropped_empty"] = notes.get("dropped_empty", 0) + 1
            continue
        out.append((f"{path.name}:{line}", text, pair, label))
    return out


def _find(directory: Path, stems: Sequence[str]) -> Path | None:
    hits = [directory / f"{s}{x}" for s in stems for x in _EXTS if (directory / f"{s}{x}").is_file()]
    return hits[0] if hits else None


def load_local(path: Path, cols: tuple[str | None, str | None, str | None], encoding: str,
                seed: int) -> tuple[list[str], list[list[Example]], dict[str, int], str]:
    notes: dict[str, int] = {"dropped_empty": 0, "dropped_unlabelled": 0}
    if path.is_dir():
        files = [_find(path, ["train"]), _find(path, ["dev", "validation"]), _find(path, ["test"])]
        if files[0] is None or files[2] is None:
            raise DataError(f"directory {path} needs train.<ext> and test.<ext> (ext one of "
                            f"{', '.join(_EXTS)}; dev/validation optional)")
    elif path.suffix.lower() in _EXTS:
        files = [path, None, None]
    else:
        raise DataError(f"unsupported file type {path.suffix or '(none)'} for {path}; use {', '.join(_EXTS)}")
    settled = FileColumns(cols)  # the train file settles unset column names; dev and test must use the same ones
    raw = [_read_file(f, settled, encoding, notes) if f else [] for f in files]
    cols = settled.cols
    label_names = _sorted_labels({r[3] for r in raw[0]})
    if not raw[0]:
        empty = notes["dropped_empty"]
        raise DataError(f"{files[0]} has no examples" + (f" ({empty} row(s) with an empty text dropped)" if empty else "")
                        + "; add rows of text and label below the header")
    folded: dict[str, list[str]] = {}
    for k in label_names:
        folded.setdefault(k.casefold(), []).append(k)
    clash = next((ks for ks in folded.values() if len(ks) > 1), None)
    if clash:  # "Positive" and "positive" would silently become two classes
        raise DataError(f"{files[0]}: labels {' and '.join(map(repr, clash))} in column {cols[2]!r} differ only in "
                        f"case, so they would be different classes; write each class one way in the file")
    if len(label_names) < 2:
        raise DataError(f"{files[0]} has {len(label_names)} class(es) ({', '.join(label_names)}) in column "
                        f"{cols[2]!r}; a classifier needs at least two (check --label-col)")
    index = {k: i for i, k in enumerate(label_names)}
    for f, rows in zip(files[1:], raw[1:]):
        for r in rows:
            if r[3] not in index:
                raise DataError(f"{f}: label {r[3]!r} ({r[0]}) does not occur in {files[0]}; "
                                f"the model cannot learn it (train labels: {', '.join(label_names)})")
    splits = [[Example(i, t, index[lab], p) for i, t, p, lab in rows] for rows in raw]
    if files[1] is None and files[2] is None:
        if len(label_names) > max(20, len(raw[0]) // len(_SPLIT_80_10_10)):  # e.g. a column of scores or ids
            raise DataError(f"{path}: label column {cols[2]!r} has {len(label_names)} distinct values in "
                            f"{len(raw[0])} rows, too many to be classes (a split needs 3 examples of each); "
                            f"if it holds scores or ids, bin them into classes or choose another --label-col")
        splits = _stratified(splits[0], _SPLIT_80_10_10, seed, str(path), label_names)
    elif files[1] is None:
        splits[0], splits[1] = _stratified(splits[0], (0.9, 0.1), seed, str(files[0]), label_names)
    return label_names, splits, notes, settled.note
