"""Hand-computed cases for the NumPy reference of adapler::TokenDrop (the oracle of every kernel), and the
committed golden file every backend's test reads (current, and saying what its case names promise)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TOKEN_DROP_GOLDEN
from adapler.plugins.token_drop.make_golden import golden_cases
from adapler.plugins.token_drop.reference import keep_mask_reference, token_drop_reference


def test_golden_file_is_current() -> None:
    """The committed golden.npz equals what the reference computes now (regenerate with make_golden)."""
    fresh = golden_cases()
    assert TOKEN_DROP_GOLDEN.keys() == fresh.keys()
    for case, arrays in fresh.items():
        assert TOKEN_DROP_GOLDEN[case].keys() == arrays.keys()
        for name, value in arrays.items():
            assert TOKEN_DROP_GOLDEN[case][name].dtype == value.dtype, f"{case}/{name}"
            np.testing.assert_array_equal(TOKEN_DROP_GOLDEN[case][name], value, err_msg=f"{case}/{name}")


def test_golden_cases_cover_the_rules() -> None:
    g = TOKEN_DROP_GOLDEN
    assert g["cls_only"]["index"].tolist() == [[0], [0]] and g["cls_only"]["mask"][1, 0] == 0
    keep_all = g["keep_all"]  # every alive token kept: index lists the positions where mask == 1
    for row, index in enumerate(keep_all["index"]):
        assert index[index >= 0].tolist() == np.flatnonzero(keep_all["mask"][row] == 1).tolist()
    assert (keep_all["mask"] == 2).any() and keep_all["index"].shape[1] < keep_all["mask"].shape[1]
    ties = g["ties"]  # a score equal to its row's threshold is kept
    for row, thr in enumerate(ties["threshold"]):
        equal = np.flatnonzero(ties["scores"][row] == thr)
        assert equal.size and set(equal.tolist()) <= set(ties["index"][row].tolist())
    nan = g["nan"]
    assert nan["index"][2].tolist()[0] == 0 and (nan["index"][2][1:] == -1).all()  # NaN threshold: [CLS] only
    assert not set(np.flatnonzero(np.isnan(nan["scores"][0])).tolist()) & set(nan["index"][0].tolist())
    assert np.isnan(nan["hidden_c"]).any()  # a kept NaN hidden value arrives unchanged
    assert g["broadcast"]["threshold"].shape == (1,) and g["single_token"]["hidden"].shape[1] == 1
    assert g["float16"]["hidden_c"].dtype == np.float16


def _hidden(b: int, t: int, d: int, dtype=np.float32) -> np.ndarray:
    # hidden[b, t, :] = 100*b + t + 1 (never 0), so every row says where it came from.
    base = 100 * np.arange(b)[:, None] + np.arange(t)[None, :] + 1
    return np.repeat(base[:, :, None], d, axis=2).astype(dtype)


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def test_stable_ascending_order_and_values() -> None:
    h = _hidden(1, 6, 2)
    scores = _f32([[0.0, 0.9, 0.1, 0.5, 0.7, 0.2]])
    hc, mc, idx = token_drop_reference(h, scores, _i64(np.ones((1, 6))), _f32([0.5]))
    # >= keeps 0.5; order is ascending position, not descending score.
    assert idx.tolist() == [[0, 1, 3, 4]]
    assert mc.tolist() == [[1, 1, 1, 1]]
    assert hc.shape == (1, 4, 2) and hc.dtype == np.float32
    np.testing.assert_array_equal(hc[0, :, 0], [1, 2, 4, 5])


def test_cls_kept_even_if_masked_or_low_score() -> None:
    h = _hidden(2, 3, 1)
    scores = _f32([[-5.0, 0.9, 0.9], [np.nan, 0.0, 0.0]])
    mask = _i64([[0, 1, 1], [0, 1, 1]])
    hc, mc, idx = token_drop_reference(h, scores, mask, _f32([0.5, 0.5]))
    assert idx.tolist() == [[0, 1, 2], [0, -1, -1]]
    assert mc.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert hc[1, 0, 0] == 101


def test_padding_never_kept_and_filled_with_zeros_and_minus_one() -> None:
    h = _hidden(2, 5, 3)
    scores = _f32(np.ones((2, 5)))  # every score passes; only the mask decides
    mask = _i64([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    hc, mc, idx = token_drop_reference(h, scores, mask, _f32([0.5]))
    assert hc.shape == (2, 5, 3)
    assert idx.tolist() == [[0, 1, 2, 3, 4], [0, 1, -1, -1, -1]]
    assert mc.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert np.all(hc[1, 2:] == 0)
    np.testing.assert_array_equal(hc[1, :2, 0], [101, 102])


def test_mask_values_other_than_one_count_as_padding() -> None:
    _, mc, idx = token_drop_reference(
        _hidden(1, 3, 1), _f32([[1, 1, 1]]), _i64([[1, 2, 1]]), _f32([0.0])
    )
    assert idx.tolist() == [[0, 2]] and mc.tolist() == [[1, 1]]


def test_nan_score_is_dropped() -> None:
    scores = _f32([[0.0, np.nan, 0.8, np.nan]])
    _, _, idx = token_drop_reference(_hidden(1, 4, 1), scores, _i64(np.ones((1, 4))), _f32([0.5]))
    assert idx.tolist() == [[0, 2]]


def test_nan_threshold_drops_everything_but_cls() -> None:
    _, _, idx = token_drop_reference(
        _hidden(1, 3, 1), _f32([[1, 1, 1]]), _i64(np.ones((1, 3))), _f32([np.nan])
    )
    assert idx.tolist() == [[0]]


def test_threshold_broadcast_equals_per_row() -> None:
    rng = np.random.default_rng(0)
    h, scores = _hidden(3, 7, 2), rng.random((3, 7)).astype(np.float32)
    mask = _i64(np.ones((3, 7)))
    one = token_drop_reference(h, scores, mask, _f32([0.4]))
    per_row = token_drop_reference(h, scores, mask, _f32([0.4, 0.4, 0.4]))
    for a, b in zip(one, per_row):
        np.testing.assert_array_equal(a, b)


def test_per_row_threshold() -> None:
    scores = _f32([[0.0, 0.3, 0.6], [0.0, 0.3, 0.6]])
    _, mc, idx = token_drop_reference(
        _hidden(2, 3, 1), scores, _i64(np.ones((2, 3))), _f32([0.5, 0.2])
    )
    assert idx.tolist() == [[0, 2, -1], [0, 1, 2]]
    assert mc.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_all_but_cls_dropped_gives_length_one() -> None:
    h = _hidden(3, 8, 4)
    hc, mc, idx = token_drop_reference(
        h, _f32(np.zeros((3, 8))), _i64(np.ones((3, 8))), _f32([1.0])
    )
    assert hc.shape == (3, 1, 4) and mc.shape == (3, 1) and idx.shape == (3, 1)
    assert idx.tolist() == [[0], [0], [0]] and mc.tolist() == [[1], [1], [1]]
    np.testing.assert_array_equal(hc, h[:, :1])


def test_nothing_dropped_gives_max_real_length() -> None:
    h = _hidden(3, 6, 2)
    mask = _i64([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]])
    hc, mc, idx = token_drop_reference(h, _f32(np.ones((3, 6))), mask, _f32([0.0]))
    assert hc.shape == (3, 5, 2)  # longest real row, trailing padding column removed
    np.testing.assert_array_equal(mc, mask[:, :5])
    assert idx.tolist() == [[0, 1, 2, -1, -1], [0, 1, 2, 3, 4], [0, 1, -1, -1, -1]]
    np.testing.assert_array_equal(hc, h[:, :5] * mask[:, :5, None])


def test_single_token_and_float16() -> None:
    h = _hidden(2, 1, 3, np.float16)
    hc, mc, idx = token_drop_reference(h, _f32([[np.nan], [0.0]]), _i64([[0], [1]]), _f32([9.0]))
    assert hc.dtype == np.float16 and hc.shape == (2, 1, 3)
    np.testing.assert_array_equal(hc, h)
    assert mc.tolist() == [[1], [1]] and idx.tolist() == [[0], [0]]


def test_keep_mask_matches_formula() -> None:
    scores = _f32([[0.1, 0.6, np.nan, 0.5]])
    keep = keep_mask_reference(scores, _i64([[0, 1, 1, 0]]), _f32([0.5]))
    assert keep.tolist() == [[True, True, False, False]]


@pytest.mark.parametrize(
    ("hidden", "scores", "mask", "threshold", "message"),
    [
        (np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), np.ones((2, 3), np.int64),
         np.zeros(1, np.float32), r"hidden must be \[B, T, D\]"),
        (np.zeros((2, 3, 4), np.float64), np.zeros((2, 3), np.float32), np.ones((2, 3), np.int64),
         np.zeros(1, np.float32), "float32 or float16"),
        (np.zeros((2, 0, 4), np.float32), np.zeros((2, 0), np.float32), np.ones((2, 0), np.int64),
         np.zeros(1, np.float32), "T must be >= 1"),
        (np.zeros((2, 3, 4), np.float32), np.zeros((2, 4), np.float32), np.ones((2, 3), np.int64),
         np.zeros(1, np.float32), r"scores must be \[B, T\] = \[2, 3\]"),
        (np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.float16), np.ones((2, 3), np.int64),
         np.zeros(1, np.float32), "scores must be float32"),
        (np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.float32), np.ones((3, 3), np.int64),
         np.zeros(1, np.float32), r"mask must be \[B, T\]"),
        (np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.float32), np.ones((2, 3), bool),
         np.zeros(1, np.float32), "mask must be int64"),
        (np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.float32), np.ones((2, 3), np.int64),
         np.zeros(3, np.float32), r"threshold must be \[B\] = \[2\] or \[1\]"),
        (np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.float32), np.ones((2, 3), np.int64),
         np.float32(0.5), r"threshold must be \[B\]"),
        (np.zeros((2, 3, 4), np.float32), np.zeros((2, 3), np.float32), np.ones((2, 3), np.int64),
         np.zeros(2, np.float64), "threshold must be float32"),
    ],
)
def test_validation_errors(hidden, scores, mask, threshold, message) -> None:
    with pytest.raises(ValueError, match=message):
        token_drop_reference(hidden, scores, mask, threshold)
