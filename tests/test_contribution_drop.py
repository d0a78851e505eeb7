"""adapler::ContributionDrop: the reference against the spec, the ORT kernel and the torch model against
the reference, all through the one golden file."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from adapler.plugins.contribution_drop.make_golden import golden_cases, load_golden
from adapler.plugins.contribution_drop.reference import (contribution_drop_reference, contribution_scores_reference,
                                                         kept_reference)
from adapler.plugins.token_drop.reference import token_drop_reference

INPUTS = ("hidden", "cp_hidden", "w2", "mask", "eta")
OUTPUTS = ("hidden_c", "mask_c", "index")


@pytest.fixture(scope="module")
def golden():
    return load_golden()


def test_golden_file_is_current(golden):
    """The committed file equals what the reference computes now (regenerate with make_golden)."""
    fresh = golden_cases()
    assert golden.keys() == fresh.keys()
    for case, arrays in fresh.items():
        for k, v in arrays.items():
            np.testing.assert_array_equal(golden[case][k], v, err_msg=f"{case}/{k}")


def test_reference_by_hand():
    # one row, 4 alive tokens of 5; z = cp_hidden . w2 = [0, ln 4, 0, ln 2, 9]; the 5th is padding
    z = np.array([0.0, np.log(4), 0.0, np.log(2), 9.0], np.float32)
    cp_hidden = z[None, :, None].copy()
    mask = np.array([[1, 1, 1, 1, 0]], np.int64)
    scores, thr = contribution_scores_reference(cp_hidden, np.ones(1, np.float32), mask, np.array([1.0], np.float32))
    np.testing.assert_allclose(scores, [[1 / 8, 4 / 8, 1 / 8, 2 / 8, 0.0]], rtol=1e-6)  # padding gets 0
    assert thr.tolist() == [0.25]  # eta / 4 alive tokens
    _, mask_c, index = contribution_drop_reference(np.zeros((1, 5, 2), np.float32), cp_hidden,
                                                   np.ones(1, np.float32), mask, np.array([1.0], np.float32))
    assert index.tolist() == [[0, 1, 3]]  # [CLS] always, 4/8 and 2/8 >= 1/4, 1/8 < 1/4
    assert mask_c.tolist() == [[1, 1, 1]]


def test_reference_is_token_drop_of_the_scores(golden):
    for case, a in golden.items():
        scores, thr = contribution_scores_reference(a["cp_hidden"], a["w2"], a["mask"], a["eta"])
        for got, want in zip(token_drop_reference(a["hidden"], scores, a["mask"], thr),
                             (a["hidden_c"], a["mask_c"], a["index"])):
            np.testing.assert_array_equal(got, want, err_msg=case)


def test_reference_rejects_bad_shapes(golden):
    a = golden["ragged"]
    with pytest.raises(ValueError, match="w2 must be float32 \\[H\\]"):
        contribution_drop_reference(a["hidden"], a["cp_hidden"], a["w2"][:-1], a["mask"], a["eta"])
    with pytest.raises(ValueError, match="mask must be int64 or int32"):
        contribution_drop_reference(a["hidden"], a["cp_hidden"], a["w2"], a["mask"].astype(np.int16), a["eta"])


def test_reference_int32_mask_changes_only_the_mask_type(golden):
    """An int32 mask gives the int64 result with mask_c in int32 (the form the fused ORT graph uses)."""
    for case, a in golden.items():
        got = contribution_drop_reference(a["hidden"], a["cp_hidden"], a["w2"], a["mask"].astype(np.int32), a["eta"])
        assert got[1].dtype == np.int32 and got[2].dtype == np.int64
        for value, name in zip(got, OUTPUTS):
            np.testing.assert_array_equal(value, a[name], err_msg=f"{case}/{name}")


def test_torch_selector_keeps_the_reference_set():
    """The torch model's hard-mode selection (CP + masked softmax + eta/n + token_drop) equals the op."""
    from adapler.encoder import EncoderState, _bias_from_mask
    from conftest import adapler_model
    from conftest import ragged_batch
    model = adapler_model(1, eta=0.9)
    ids, mask = ragged_batch(6, 20, 1)
    hidden = model.embed(ids, None).detach()
    cp = model.selector.cps[0]
    state = EncoderState(hidden, mask, _bias_from_mask(mask), "hard")
    with torch.no_grad():
        model.selector.before_layer(0, state)
        cp_hidden = cp.act(cp.fc1(hidden))
    ref = contribution_drop_reference(hidden.numpy(), cp_hidden.numpy(), cp.fc2.weight[0].detach().numpy(),
                                      mask.numpy(), model.selector.eta[:1].detach().numpy())
    np.testing.assert_array_equal(state.mask.numpy(), ref[1])
    np.testing.assert_array_equal(state.hidden.numpy(), ref[0])
    assert ref[1].sum() < mask.sum()  # something was dropped


# ------------------------------------------------------------------------------------------------ ORT kernel

def contribution_drop_model(mask_type: int = TensorProto.INT64, kept: bool = False) -> onnx.ModelProto:
    """One ContributionDrop node, inputs and outputs named as in the op spec (mask and mask_c of ``mask_type``);
    ``kept``: with the optional fourth output."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    ins = [helper.make_tensor_value_info("hidden", f32, ["B", "T", "D"]),
           helper.make_tensor_value_info("cp_hidden", f32, ["B", "T", "H"]),
           helper.make_tensor_value_info("w2", f32, ["H"]), helper.make_tensor_value_info("mask", mask_type, ["B", "T"]),
           helper.make_tensor_value_info("eta", f32, [1])]
    outs = [helper.make_tensor_value_info("hidden_c", f32, None), helper.make_tensor_value_info("mask_c", mask_type, None),
            helper.make_tensor_value_info("index", i64, None)] + ([helper.make_tensor_value_info("kept", i64, None)]
                                                                  if kept else [])
    node = helper.make_node("ContributionDrop", list(INPUTS), list(OUTPUTS) + (["kept"] if kept else []),
                            domain="adapler")
    return helper.make_model(helper.make_graph([node], "g", ins, outs),
                             opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("adapler", 1)],
                             ir_version=8)


@pytest.mark.parametrize("case", ["ragged", "batch1", "keep_all", "cls_only"])
def test_onnx_reference_op_matches_golden(golden, case):
    """The reference registered as an onnx.reference op (plugins/onnx_reference.py) runs the one-node graph."""
    from adapler.plugins.onnx_reference import reference_evaluator
    a = golden[case]
    got = reference_evaluator(contribution_drop_model()).run(list(OUTPUTS), {k: a[k] for k in INPUTS})
    for name, value in zip(OUTPUTS, got):
        np.testing.assert_array_equal(value, a[name], err_msg=f"{case}/{name}")


@pytest.fixture(scope="module")
def session(ort_library, tmp_path_factory):
    from adapler.plugins.token_drop.ort_session import create_session
    path = tmp_path_factory.mktemp("contribution_drop") / "contribution_drop.onnx"
    onnx.save(contribution_drop_model(), str(path))
    return create_session(path, library=ort_library, threads=1)


@pytest.fixture(scope="module")
def session_i32(ort_library, tmp_path_factory):
    """The same node with an int32 mask: ORT picks the library's int32 kernel by the mask's type."""
    from adapler.plugins.token_drop.ort_session import create_session
    path = tmp_path_factory.mktemp("contribution_drop") / "contribution_drop_i32.onnx"
    onnx.save(contribution_drop_model(TensorProto.INT32), str(path))
    return create_session(path, library=ort_library, threads=1)


@pytest.mark.parametrize("mask_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("case", ["ragged", "batch1", "keep_all", "cls_only"])
def test_ort_kernel_matches_golden(session, session_i32, golden, case, mask_dtype):
    a = dict(golden[case], mask=golden[case]["mask"].astype(mask_dtype))
    got = (session if mask_dtype == np.int64 else session_i32).run(list(OUTPUTS), {k: a[k] for k in INPUTS})
    assert got[1].dtype == mask_dtype
    for name, value in zip(OUTPUTS, got):
        np.testing.assert_array_equal(value, golden[case][name], err_msg=f"{case}/{name}")


@pytest.mark.parametrize("mask_dtype", [np.int64, np.int32])
def test_ort_kernel_matches_reference_on_random_batches(session, session_i32, mask_dtype):
    rng = np.random.default_rng(3)
    for _ in range(20):
        b, t, d, h = rng.integers(1, 6), rng.integers(1, 30), rng.integers(1, 9), rng.integers(1, 6)
        lengths = rng.integers(1, t + 1, size=b)
        a = {"hidden": rng.standard_normal((b, t, d)).astype(np.float32),
             "cp_hidden": rng.standard_normal((b, t, h)).astype(np.float32),
             "w2": rng.standard_normal(h).astype(np.float32),
             "mask": (np.arange(t)[None] < lengths[:, None]).astype(mask_dtype),
             "eta": np.array([rng.uniform(0.05, 1.5)], np.float32)}
        sess = session if mask_dtype == np.int64 else session_i32
        for got, want in zip(sess.run(list(OUTPUTS), a), contribution_drop_reference(**a)):
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want)


def test_kept_reference_counts_each_rows_kept_slots():
    mask_c = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], np.int32)
    kept = kept_reference(mask_c)
    assert kept.dtype == np.int64 and kept.tolist() == [[3], [1], [4]]


@pytest.fixture(scope="module")
def sessions_with_kept(ort_library, tmp_path_factory):
    """The node with its optional fourth output ``kept``, per mask type."""
    from adapler.plugins.token_drop.ort_session import create_session
    out = {}
    for dtype, proto in ((np.int64, TensorProto.INT64), (np.int32, TensorProto.INT32)):
        path = tmp_path_factory.mktemp("contribution_drop") / f"contribution_drop_kept_{proto}.onnx"
        onnx.save(contribution_drop_model(proto, kept=True), str(path))
        out[dtype] = create_session(path, library=ort_library, threads=1)
    return out


@pytest.mark.parametrize("mask_dtype", [np.int64, np.int32])
def test_ort_kernel_kept_output_matches_reference(sessions_with_kept, golden, mask_dtype):
    """Golden cases and random ragged batches: the three outputs unchanged, ``kept`` the reference count."""
    rng = np.random.default_rng(5)
    feeds = [dict(golden[c], mask=golden[c]["mask"].astype(mask_dtype)) for c in ("ragged", "batch1", "keep_all", "cls_only")]
    for _ in range(20):
        b, t, d, h = rng.integers(1, 6), rng.integers(1, 30), rng.integers(1, 9), rng.integers(1, 6)
        lengths = rng.integers(1, t + 1, size=b)
        feeds.append({"hidden": rng.standard_normal((b, t, d)).astype(np.float32),
                      "cp_hidden": rng.standard_normal((b, t, h)).astype(np.float32),
                      "w2": rng.standard_normal(h).astype(np.float32),
                      "mask": (np.arange(t)[None] < lengths[:, None]).astype(mask_dtype),
                      "eta": np.array([rng.uniform(0.05, 1.5)], np.float32)})
    for a in feeds:
        a = {k: a[k] for k in INPUTS}
        got = sessions_with_kept[mask_dtype].run(list(OUTPUTS) + ["kept"], a)
        want = contribution_drop_reference(**a)
        for g, w in zip(got[:3], want):
            np.testing.assert_array_equal(g, w)
        assert got[3].dtype == np.int64
        np.testing.assert_array_equal(got[3], kept_reference(want[1]))


def test_onnx_reference_op_kept_output(golden):
    from adapler.plugins.onnx_reference import reference_evaluator
    a = golden["ragged"]
    got = reference_evaluator(contribution_drop_model(kept=True)).run(["kept"], {k: a[k] for k in INPUTS})[0]
    np.testing.assert_array_equal(got, kept_reference(a["mask_c"]))
    assert got.shape == (a["mask"].shape[0], 1)


def test_ort_kernel_error_names_the_input(session, golden):
    a = dict(golden["ragged"])
    a["w2"] = a["w2"][:-1]
    with pytest.raises(Exception, match="ContributionDrop: w2 must be \\[H\\]"):
        session.run(list(OUTPUTS), {k: a[k] for k in INPUTS})


def test_missing_library_message_names_the_op_the_model_uses(tmp_path):
    from adapler.plugins.token_drop.ort_session import TokenDropLibraryMissing, create_session
    path = tmp_path / "cd.onnx"
    onnx.save(contribution_drop_model(), str(path))
    with pytest.raises(TokenDropLibraryMissing, match=r"^cd.onnx uses the custom op adapler::ContributionDrop but the "
                                                      r"ONNX Runtime library is not built; run `python cli.py build-plugins`"):
        create_session(path, library=None)


def test_node_the_library_does_not_know_is_a_one_line_rebuild_hint(ort_library, tmp_path):
    """A node with more outputs than the library's kernel declares (what a library built before `kept` sees
    in a graph written since): the session's error names the op and the rebuild command."""
    from adapler.plugins.token_drop.ort_session import PluginLibraryOutdated, TokenDropLibraryMissing, create_session
    model = contribution_drop_model(kept=True)
    model.graph.node[0].output.append("extra")
    model.graph.output.append(helper.make_tensor_value_info("extra", TensorProto.INT64, None))
    path = tmp_path / "five_outputs.onnx"
    onnx.save(model, str(path))
    with pytest.raises(PluginLibraryOutdated, match=r"adapler::ContributionDrop nodes have 5 outputs.*python cli.py "
                                                    r"build-plugins") as err:
        create_session(path, library=ort_library)
    assert isinstance(err.value, TokenDropLibraryMissing) and "\n" not in str(err.value)  # the CLI's one-line error
