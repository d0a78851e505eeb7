"""Property-based tests (hypothesis): the data loaders round-trip any text, and ``token_drop`` equals the NumPy
reference on random shapes, masks, scores and thresholds. Derandomised and without an example database, so every
run tries the same examples (hypothesis still keeps its own self-ignored .hypothesis/ cache)."""
import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from adapler.data import load_dataset  # noqa: E402
from adapler.ops import token_drop, token_drop_std  # noqa: E402
from adapler.plugins.token_drop.reference import token_drop_reference  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None)

# Any text a user may have: commas, quotes, tabs, newlines, unicode; no NUL and no bare carriage return
# (a CSV line ending, which the csv module does not keep inside fields either).
TEXT = st.text(st.characters(exclude_characters="\x00\r", exclude_categories=("Cs",)), max_size=40)


@st.composite
def labelled_rows(draw) -> list[tuple[str, str]]:
    """2-3 classes with 3-8 non-blank texts each (a stratified 80/10/10 split needs 3 per class), shuffled."""
    labels = draw(st.lists(st.sampled_from(["neg", "pos", "mid", "7", "-1"]), min_size=2, max_size=3, unique=True))
    rows = [(draw(TEXT.filter(lambda t: t.strip())), lab) for lab in labels
            for _ in range(draw(st.integers(3, 8)))]
    return draw(st.permutations(rows))


def _write(path: Path, rows: list[tuple[str, str]], blanks: int) -> None:
    rows = rows + [("  ", rows[0][1])] * blanks  # blank texts are dropped and counted
    if path.suffix == ".csv":
        buf = io.StringIO(newline="")
        w = csv.writer(buf)
        w.writerow(["text", "label"])
        w.writerows(rows)
        path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    else:
        path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows), encoding="utf-8")


@SETTINGS
@given(rows=labelled_rows(), blanks=st.integers(0, 2), suffix=st.sampled_from([".csv", ".jsonl"]),
       seed=st.integers(0, 3))
def test_loaders_keep_every_text_and_label(rows, blanks, suffix, seed):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"data{suffix}"
        _write(path, rows, blanks)
        ds = load_dataset(str(path), seed=seed)
        again = load_dataset(str(path), seed=seed)
    got = ds.train + ds.dev + ds.test
    assert sorted((e.text, ds.label_names[e.label]) for e in got) == sorted((t.strip(), lab) for t, lab in rows)
    assert len({e.id for e in got}) == len(got)  # splits are disjoint
    assert ds.notes.get("dropped_empty", 0) == blanks
    assert sorted(ds.label_names, key=lambda k: (not k.lstrip("-").isdigit(), int(k) if k.lstrip("-").isdigit() else 0, k)) \
        == ds.label_names
    assert [e.id for e in again.train] == [e.id for e in ds.train]  # seeded: the same split every time
    assert all(any(e.label == c for e in split) for split in (ds.train, ds.dev, ds.test) for c in range(ds.num_labels))


@st.composite
def drop_inputs(draw):
    b, t, d = draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 3))
    # scores from a small set so ties with the threshold and NaN (always dropped) are common
    values = st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0, float("nan")])
    scores = np.array(draw(st.lists(values, min_size=b * t, max_size=b * t)), dtype=np.float32).reshape(b, t)
    mask = np.array(draw(st.lists(st.integers(0, 1), min_size=b * t, max_size=b * t)), dtype=np.int64).reshape(b, t)
    n_thr = draw(st.sampled_from([1, b]))
    threshold = np.array(draw(st.lists(st.sampled_from([-2.0, 0.0, 0.25, 0.5, 2.0]), min_size=n_thr,
                                       max_size=n_thr)), dtype=np.float32)
    hidden = np.arange(b * t * d, dtype=np.float32).reshape(b, t, d) + 1.0  # each slot says where it came from
    return hidden, scores, mask, threshold


@SETTINGS
@given(inputs=drop_inputs())
def test_token_drop_matches_reference(inputs):
    hidden, scores, mask, threshold = inputs
    ref = token_drop_reference(hidden, scores, mask, threshold)
    args = [torch.from_numpy(a.copy()) for a in (hidden, scores, mask, threshold)]
    for label, fn in (("token_drop", token_drop), ("token_drop_std", token_drop_std)):
        got = [x.numpy() for x in fn(*args)]
        for g, r, name in zip(got, ref, ("hidden_c", "mask_c", "index")):
            np.testing.assert_array_equal(g, r, err_msg=f"{label}: {name}")
