"""The ONNX Runtime C++ kernel of adapler::TokenDrop against the golden file and the NumPy reference
(exact equality).

The library is built once per session (conftest ``ort_library``: headers from Debian trixie, see
plugins/token_drop/build.py); when that is impossible (no network, no apt) the kernel tests skip.
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from conftest import (  # noqa: E402
    TOKEN_DROP_CASES,
    TOKEN_DROP_INPUTS,
    assert_token_drop_outputs,
    token_drop_inputs,
    token_drop_onnx_model,
)
from adapler.plugins.token_drop.build import PluginBuildError, build_ort_library  # noqa: E402
from adapler.plugins.token_drop.ort_session import (  # noqa: E402
    TokenDropLibraryMissing,
    create_session,
    model_uses_token_drop,
)
from adapler.plugins.token_drop.reference import token_drop_reference  # noqa: E402

@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("token_drop")
    paths = {dt: root / f"td_{np.dtype(dt).name}.onnx" for dt in (np.float32, np.float16)}
    for dt, path in paths.items():
        onnx.save(token_drop_onnx_model(dt), str(path))
    return paths


@pytest.fixture(scope="module")
def sessions(ort_library, models) -> dict:
    return {dt: create_session(path, library=ort_library) for dt, path in models.items()}


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
    assert_token_drop_outputs(got, token_drop_reference(hidden, scores, mask, thr))
    return got


@pytest.mark.parametrize("case", TOKEN_DROP_CASES)
def test_kernel_matches_golden(sessions, case) -> None:
    inputs = token_drop_inputs(case)
    got = sessions[inputs[0].dtype.type].run(None, dict(zip(TOKEN_DROP_INPUTS, inputs)))
    assert_token_drop_outputs(got, case)


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


def test_find_ort_library_env_override(monkeypatch, tmp_path) -> None:
    from adapler.plugins.token_drop import build

    fake = tmp_path / "libcustom.so"
    fake.write_bytes(b"")
    monkeypatch.setenv(build.ENV_LIBRARY, str(fake))
    assert build.find_ort_library() == fake.resolve()
    monkeypatch.setenv(build.ENV_LIBRARY, str(tmp_path / "missing.so"))
    assert build.find_ort_library() is None


def test_build_error_is_one_line_with_fix(monkeypatch, tmp_path) -> None:
    from adapler.plugins.token_drop import build

    monkeypatch.setattr(build.shutil, "which", lambda name: None)  # no apt-get / dpkg
    with pytest.raises(PluginBuildError) as info:
        build.fetch_ort_headers(tmp_path)
    assert "\n" not in str(info.value) and "model.std.onnx" in str(info.value)


def test_build_is_incremental(ort_library) -> None:
    before = ort_library.stat().st_mtime_ns
    assert build_ort_library() == ort_library
    assert ort_library.stat().st_mtime_ns == before
