"""The ONNX Runtime C++ kernel of adapler::TokenDrop against the NumPy reference (exact equality).

The library is built once per session (headers from Debian trixie, see
plugins/token_drop/build.py); when that is impossible (no network, no apt) the kernel tests skip.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from plugins.token_drop.build import PluginBuildError, build_ort_library  # noqa: E402
from plugins.token_drop.ort_session import (  # noqa: E402
    TokenDropLibraryMissing,
    create_session,
    model_uses_token_drop,
)
from plugins.token_drop.reference import token_drop_reference  # noqa: E402
from plugins.token_drop.schema import plugin_attributes  # noqa: E402

_ELEM = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}


def make_token_drop_model(path: Path, dtype=np.float32) -> Path:
    """A model holding one TokenDrop node, inputs/outputs named as in the op spec."""
    elem = _ELEM[dtype]
    node = helper.make_node(
        "TokenDrop", ["hidden", "scores", "mask", "threshold"], ["hidden_c", "mask_c", "index"],
        domain="adapler", **plugin_attributes(),
    )
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        [node], "token_drop",
        [vi("hidden", elem, ["B", "T", "D"]), vi("scores", TensorProto.FLOAT, ["B", "T"]),
         vi("mask", TensorProto.INT64, ["B", "T"]), vi("threshold", TensorProto.FLOAT, ["N"])],
        [vi("hidden_c", elem, ["B", "L", "D"]), vi("mask_c", TensorProto.INT64, ["B", "L"]),
         vi("index", TensorProto.INT64, ["B", "L"])],
    )
    model = helper.make_model(
        graph, ir_version=10,  # onnx 1.23 defaults to IR 14, which ORT rejects
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("adapler", 1)],
    )
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def library() -> Path:
    try:
        return build_ort_library()
    except PluginBuildError as exc:
        pytest.skip(f"TokenDrop ORT library could not be built: {exc}")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("token_drop")
    return {dt: make_token_drop_model(root / f"td_{np.dtype(dt).name}.onnx", dt)
            for dt in (np.float32, np.float16)}


@pytest.fixture(scope="module")
def sessions(library, models) -> dict:
    return {dt: create_session(path, library=library) for dt, path in models.items()}


def _inputs(rng, b, t, d, dtype=np.float32, ragged=True, threshold="row"):
    hidden = rng.standard_normal((b, t, d)).astype(dtype)
    scores = rng.random((b, t)).astype(np.float32)
    mask = np.ones((b, t), np.int64)
    if ragged:
        for row, n in enumerate(rng.integers(1, t + 1, size=b)):
            mask[row, n:] = 0
    thr = rng.random(b if threshold == "row" else 1).astype(np.float32)
    return hidden, scores, mask, thr


def _run_and_compare(sessions, hidden, scores, mask, thr):
    sess = sessions[hidden.dtype.type]
    got = sess.run(None, {"hidden": hidden, "scores": scores, "mask": mask, "threshold": thr})
    want = token_drop_reference(hidden, scores, mask, thr)
    for name, g, w in zip(("hidden_c", "mask_c", "index"), got, want):
        assert g.dtype == w.dtype, name
        assert g.shape == w.shape, f"{name}: {g.shape} != {w.shape}"
        np.testing.assert_array_equal(g, w, err_msg=name)
    return got


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("threshold", ["row", "broadcast"])
@pytest.mark.parametrize(("b", "t", "d"), [(1, 16, 8), (3, 12, 5), (5, 40, 16), (8, 33, 1)])
def test_random_ragged_batches(sessions, dtype, threshold, b, t, d) -> None:
    rng = np.random.default_rng(b * 1000 + t * 10 + d)
    _run_and_compare(sessions, *_inputs(rng, b, t, d, dtype, threshold=threshold))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_all_but_cls_dropped(sessions, dtype) -> None:
    h, s, m, _ = _inputs(np.random.default_rng(1), 4, 20, 6, dtype)
    hc, mc, idx = _run_and_compare(sessions, h, s, m, np.full(4, 2.0, np.float32))
    assert hc.shape == (4, 1, 6) and idx.tolist() == [[0]] * 4


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nothing_dropped(sessions, dtype) -> None:
    h, s, m, _ = _inputs(np.random.default_rng(2), 4, 20, 6, dtype)
    hc, mc, _ = _run_and_compare(sessions, h, s, m, np.array([-1.0], np.float32))
    assert hc.shape[1] == m.sum(axis=1).max()
    full = _inputs(np.random.default_rng(3), 2, 9, 4, dtype, ragged=False)[:3]
    hc, _, _ = _run_and_compare(sessions, *full, np.array([-1.0], np.float32))
    np.testing.assert_array_equal(hc, full[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_single_token(sessions, dtype) -> None:
    h, s, _, thr = _inputs(np.random.default_rng(4), 3, 1, 7, dtype)
    _run_and_compare(sessions, h, s, np.array([[1], [0], [1]], np.int64), thr)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_nan_scores(sessions, dtype) -> None:
    h, s, m, thr = _inputs(np.random.default_rng(5), 4, 30, 8, dtype)
    s[:, ::3] = np.nan  # includes position 0: [CLS] is kept anyway
    s[2, :] = np.nan
    hc, _, idx = _run_and_compare(sessions, h, s, m, thr)
    assert idx[2, 0] == 0 and np.all(idx[2, 1:] == -1)


@pytest.mark.parametrize(("b", "t", "d"), [(0, 4, 3), (2, 4, 0)])
def test_empty_batch_and_zero_width(sessions, b, t, d) -> None:
    h, s, m, _ = _inputs(np.random.default_rng(8), b, t, d, ragged=False)
    _run_and_compare(sessions, h, s, m, np.array([0.5], np.float32))


def test_kernel_rejects_bad_threshold_shape(sessions) -> None:
    h, s, m, _ = _inputs(np.random.default_rng(6), 3, 5, 2)
    with pytest.raises(Exception, match=r"threshold must be \[B\] = \[3\] or \[1\]"):
        sessions[np.float32].run(
            None, {"hidden": h, "scores": s, "mask": m, "threshold": np.zeros(2, np.float32)}
        )


def test_missing_library_message(models) -> None:
    with pytest.raises(TokenDropLibraryMissing) as info:
        create_session(models[np.float32], library=None)
    message = str(info.value)
    assert "\n" not in message
    assert "adapler::TokenDrop" in message and "python cli.py build-plugins" in message
    assert "make plugins" in message and "model.std.onnx" in message


def test_model_uses_token_drop(models, tmp_path) -> None:
    assert model_uses_token_drop(models[np.float32])
    vi = helper.make_tensor_value_info
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [1])])
    std = tmp_path / "model.std.onnx"
    onnx.save(helper.make_model(graph, ir_version=10,
                                opset_imports=[helper.make_opsetid("", 17)]), str(std))
    assert not model_uses_token_drop(std)
    sess = create_session(std, library=None)  # standard-op models never need the plugin
    np.testing.assert_array_equal(sess.run(None, {"x": np.ones(1, np.float32)})[0], [1.0])


@pytest.mark.parametrize(("b", "t", "d"), [(4, 128, 768), (32, 64, 384)])
def test_kernel_timing_report(sessions, b, t, d) -> None:
    """Prints the per-call time (run() overhead included); no assertion on speed."""
    h, s, m, _ = _inputs(np.random.default_rng(7), b, t, d, ragged=False)
    feeds = {"hidden": h, "scores": s, "mask": m, "threshold": np.array([0.5], np.float32)}
    sess = sessions[np.float32]
    for _ in range(20):
        sess.run(None, feeds)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        sess.run(None, feeds)
    per_call = (time.perf_counter() - start) / n * 1e6
    print(f"\nTokenDrop ORT B={b} T={t} D={d}: {per_call:.0f} us per run() call")


def test_find_ort_library_env_override(monkeypatch, tmp_path) -> None:
    from plugins.token_drop import build

    fake = tmp_path / "libcustom.so"
    fake.write_bytes(b"")
    monkeypatch.setenv(build.ENV_LIBRARY, str(fake))
    assert build.find_ort_library() == fake.resolve()
    monkeypatch.setenv(build.ENV_LIBRARY, str(tmp_path / "missing.so"))
    assert build.find_ort_library() is None


def test_build_error_is_one_line_with_fix(monkeypatch, tmp_path) -> None:
    from plugins.token_drop import build

    monkeypatch.setattr(build.shutil, "which", lambda name: None)  # no apt-get / dpkg
    with pytest.raises(PluginBuildError) as info:
        build.fetch_ort_headers(tmp_path)
    assert "\n" not in str(info.value) and "model.std.onnx" in str(info.value)


def test_build_is_incremental(library) -> None:
    before = library.stat().st_mtime_ns
    assert build_ort_library() == library
    assert library.stat().st_mtime_ns == before
