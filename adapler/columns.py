"""Which columns of a local file hold the text and the label: by name first, then from the values.

A user's CSV rarely follows one naming scheme (``review_text,polarity``, ``body,stars``) and some have no header
row at all (``-1,<e-mail body>``). When neither a flag nor a known name settles a column, the values do: the
label is the column with the fewest distinct short values, the text the longest non-numeric column. What was
inferred is said in one line (``Dataset.summary``), so a wrong guess is seen before training, and the flags
still win."""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

# Column names tried, in order, when --text-col / --label-col are not given (case-insensitive).
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "comment", "tweet")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "target", "category")

MAX_INFERRED_CLASSES = 100  # more distinct values than this is an id or a free-text column, not a label
MAX_LABEL_CHARS = 40        # a label value is a word or a number, not a sentence
SAMPLE_ROWS = 5000          # values looked at per column: enough to tell ids, labels and texts apart


def resolve_by_name(columns: Sequence[Any], cols: tuple[str | None, str | None, str | None]
                    ) -> tuple[str | None, str | None, str | None]:
    """``cols`` with an unset text or label column replaced by the first of ``TEXT_COLUMNS`` /
    ``LABEL_COLUMNS`` the file has (its own spelling); left ``None`` when the file has none of them."""
    by_lower = {str(c).lower(): str(c) for c in columns}

    def pick(given: str | None, candidates: Sequence[str]) -> str | None:
        if given is not None:
            return given
        return next((by_lower[c] for c in candidates if c in by_lower), None)
    return pick(cols[0], TEXT_COLUMNS), cols[1], pick(cols[2], LABEL_COLUMNS)


def _values(rows: Sequence[Sequence[Any]], i: int) -> list[str]:
    out = []
    for row in rows[:SAMPLE_ROWS]:
        v = row[i] if i < len(row) else None
        if v is not None and str(v).strip():
            out.append(str(v).strip())
    return out


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


class ColumnStats(NamedTuple):
    """What the inference reads from one column's non-empty values (the first ``SAMPLE_ROWS`` rows)."""
    distinct: int
    mean_chars: float
    numeric: bool
    longest: int
    count: int


def column_stats(rows: Sequence[Sequence[Any]], i: int) -> ColumnStats | None:
    vals = _values(rows, i)
    if not vals:
        return None
    return ColumnStats(len(set(vals)), sum(map(len, vals)) / len(vals), all(map(_is_number, vals)),
                       max(map(len, vals)), len(vals))


def infer_columns(rows: Sequence[Sequence[Any]], width: int, want_text: bool, want_label: bool,
                  taken: set[int]) -> tuple[int | None, int | None]:
    """Positions of the text and label columns read from the values (``None`` where nothing fits or nothing is
    wanted). Label: 2 to ``MAX_INFERRED_CLASSES`` distinct values, at most half as many as rows, each at most
    ``MAX_LABEL_CHARS`` long; the fewest distinct values wins. Text: the longest column on average that is not
    all numbers. Columns in ``taken`` (already settled) are never picked."""
    stats = {i: st for i in range(width) if i not in taken and (st := column_stats(rows, i)) is not None}
    label = None
    if want_label:
        fits = [i for i, st in stats.items()
                if 2 <= st.distinct <= min(MAX_INFERRED_CLASSES, max(2, st.count // 2))
                and st.longest <= MAX_LABEL_CHARS]
        label = min(fits, key=lambda i: (stats[i].distinct, stats[i].mean_chars, i), default=None)
    text = None
    if want_text:
        fits = [i for i, st in stats.items() if i != label and not st.numeric]
        text = max(fits, key=lambda i: (stats[i].mean_chars, -i), default=None)
    return text, label


def header_is_data(header: Sequence[str], rows: Sequence[Sequence[Any]], label: int) -> bool:
    """True when the first line of a CSV is a record, not names: its cell in the inferred label column is one
    of that column's values (a file that starts ``-1,<text>`` or ``pos,<text>``)."""
    return label < len(header) and header[label].strip() in set(_values(rows, label))


def describe(name: str, rows: Sequence[Sequence[Any]], i: int, what: str) -> str:
    """``label 'polarity' (2 values)`` or ``text 'body' (mean 812 characters)``, for the summary line."""
    st = column_stats(rows, i)
    shown = name if len(name) <= 30 else name[:27] + "..."
    if what == "label":
        return f"label {shown!r} ({st.distinct if st else 0} values)"
    return f"text {shown!r} (mean {st.mean_chars if st else 0:.0f} characters)"
