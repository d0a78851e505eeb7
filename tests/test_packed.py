"""Packed (padding-free) execution: torch path, PackedContributionDrop (reference, ORT kernel), the
packed ORT graph and the bench's padding fraction, each against the padded form."""
import numpy as np
import pytest
import torch

from adapler.encoder import PrunedBertClassifier
from adapler.packed import (UnsupportedForPacked, pack, packed_forward, padding_fraction, padding_index)
from conftest import ragged_batch, tiny_config
from test_encoder import adapler_model, kept_sets


def dense_model(seed=0, pooler=True):
    torch.manual_seed(seed)
    return PrunedBertClassifier(tiny_config(layers=3), 3, pooler=pooler).eval()


# ------------------------------------------------------------------------------------------------ torch

def test_pack_and_padding_index_by_hand():
    hidden = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    x = pack(hidden, mask)
    assert x.hidden.squeeze(1).tolist() == [0, 1, 2, 4, 5]
    assert x.offsets.tolist() == [0, 3, 5] and x.positions.tolist() == [0, 1, 2, 0, 1]
    pad_index, lengths, unpad_index = padding_index(x.offsets)
    assert pad_index.tolist() == [[0, 1, 2], [3, 4, 3]]  # padding slot -> the row's first token
    assert lengths.tolist() == [3, 2] and unpad_index.tolist() == [0, 1, 2, 3, 4]
    padded = x.hidden[pad_index]
    assert torch.equal(padded.reshape(6, 1)[unpad_index], x.hidden)


@pytest.mark.parametrize("batch,length,seed", [(1, 12, 0), (5, 30, 1), (8, 40, 2)])
def test_packed_adapler_matches_padded(batch, length, seed):
    model = adapler_model(seed, eta=0.9)
    ids, mask = ragged_batch(batch, length, seed)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard", track_positions=True)
    got = packed_forward(model, ids, mask, track_positions=True)
    assert ref.kept_lengths[:, -1].sum() < mask.sum()  # the model really drops tokens
    assert torch.equal(got.kept_lengths, ref.kept_lengths)
    for row in range(batch):
        assert kept_sets(got.positions, row) == kept_sets(ref.positions, row)
    assert (got.logits - ref.logits).abs().max() <= 1e-4


@pytest.mark.parametrize("pooler", [True, False])
def test_packed_dense_matches_padded(pooler):
    model = dense_model(pooler=pooler)
    ids, mask = ragged_batch(6, 20, 3)
    with torch.no_grad():
        ref = model(ids, mask, mode="dense")
    got = packed_forward(model, ids, mask)
    assert torch.equal(got.kept_lengths, ref.kept_lengths)
    assert (got.logits - ref.logits).abs().max() <= 1e-4


def test_packed_batch_equals_rows_one_by_one():
    model = adapler_model(4, eta=0.9)
    ids, mask = ragged_batch(4, 24, 4)
    batched = packed_forward(model, ids, mask)
    for row in range(4):
        n = int(mask[row].sum())
        one = packed_forward(model, ids[row:row + 1, :n], mask[row:row + 1, :n])
        assert torch.equal(one.kept_lengths[0], batched.kept_lengths[row])
        assert (one.logits[0] - batched.logits[row]).abs().max() <= 1e-5


def test_pack_refuses_an_empty_row():
    with pytest.raises(ValueError, match="row 1 has no token .*at least its \\[CLS\\]"):
        pack(torch.zeros(2, 3, 4), torch.tensor([[1, 1, 0], [0, 0, 0]]))


def test_methods_without_packed_path_are_refused():
    from adapler.selectors import build_selector
    cfg = tiny_config(layers=2)
    model = PrunedBertClassifier(cfg, 2, build_selector("power-bert", cfg, {"retention": [8, 4]}))
    ids, mask = ragged_batch(2, 10, 0)
    with pytest.raises(UnsupportedForPacked, match="'power-bert' has no packed path.*padded"):
        packed_forward(model, ids, mask)


def test_padding_fraction_by_hand():
    kept = torch.tensor([[4, 2], [2, 2], [2, 1]])
    # layer 0: 8 real of 3 * 4 slots; layer 1: 5 real of 3 * 2
    np.testing.assert_allclose(padding_fraction(kept).numpy(), [1 - 8 / 12, 1 - 5 / 6], rtol=1e-6)


# ------------------------------------------------------------------------------------------------ the op

from adapler.plugins.contribution_drop.make_packed_golden import load_packed_golden, packed_golden_cases  # noqa: E402
from adapler.plugins.contribution_drop.packed_reference import (PACKED_INPUTS, PACKED_OUTPUTS,  # noqa: E402
                                                        packed_contribution_drop_reference, padding_index_reference)
from adapler.plugins.contribution_drop.reference import contribution_drop_reference  # noqa: E402


@pytest.fixture(scope="module")
def golden():
    return load_packed_golden()


def test_packed_golden_file_is_current(golden):
    fresh = packed_golden_cases()
    assert sorted(golden) == sorted(fresh)
    for case, arrays in fresh.items():
        for name, value in arrays.items():
            np.testing.assert_array_equal(golden[case][name], value, err_msg=f"{case}/{name}")


def test_packed_reference_is_the_padded_op_repacked(golden):
    """The kept tokens, in order, are ContributionDrop's on the padded rows."""
    a = golden["ragged"]
    offsets = a["offsets"]
    lengths = np.diff(offsets)
    T = int(lengths.max())
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int64)
    hidden = np.zeros((len(lengths), T, a["hidden"].shape[1]), np.float32)
    cp = np.zeros((len(lengths), T, a["cp_hidden"].shape[1]), np.float32)
    hidden[mask == 1], cp[mask == 1] = a["hidden"], a["cp_hidden"]
    hidden_c, mask_c, index = contribution_drop_reference(hidden, cp, a["w2"], mask, a["eta"])
    assert a["lengths_c"].tolist() == mask_c.sum(1).tolist() and 0 < a["hidden_c"].shape[0] < a["hidden"].shape[0]
    np.testing.assert_array_equal(a["hidden_c"], hidden_c[mask_c == 1])
    for b in range(len(lengths)):  # pad_index / unpad_index address the kept tokens of row b
        n, start = a["lengths_c"][b], a["offsets_c"][b]
        np.testing.assert_array_equal(a["pad_index"][b, :n], start + np.arange(n))
        assert (a["pad_index"][b, n:] == start).all()
        L = a["pad_index"].shape[1]
        np.testing.assert_array_equal(a["unpad_index"][start:start + n], b * L + np.arange(n))


def test_padding_index_reference_matches_torch():
    offsets = np.array([0, 3, 4, 9], np.int64)
    lengths, pad_index, unpad_index = padding_index_reference(offsets)
    t_pad, t_len, t_unpad = padding_index(torch.from_numpy(offsets))
    assert lengths.tolist() == t_len.tolist() and pad_index.tolist() == t_pad.tolist()
    assert unpad_index.tolist() == t_unpad.tolist()


def test_packed_reference_rejects_empty_rows(golden):
    a = {k: golden["ragged"][k] for k in PACKED_INPUTS}
    a["offsets"] = np.array([0, 12, 12, 22, 32], np.int64)
    with pytest.raises(ValueError, match="PackedContributionDrop: offsets must rise .*every row keeps its \\[CLS\\]\\), got"):
        packed_contribution_drop_reference(**a)


@pytest.fixture(scope="module")
def packed_op_session():
    import tempfile

    import onnx
    from onnx import TensorProto, helper

    from adapler.plugins.token_drop.build import PluginBuildError, build_ort_library
    from adapler.plugins.token_drop.ort_session import create_session
    try:
        build_ort_library()
    except PluginBuildError as e:
        pytest.skip(f"ORT custom-op library unavailable: {e}")
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    ins = [helper.make_tensor_value_info("hidden", f32, ["N", "D"]), helper.make_tensor_value_info("cp_hidden", f32, ["N", "H"]),
           helper.make_tensor_value_info("w2", f32, ["H"]), helper.make_tensor_value_info("offsets", i64, ["B1"]),
           helper.make_tensor_value_info("eta", f32, [1])]
    outs = [helper.make_tensor_value_info(n, t, None)
            for n, t in zip(PACKED_OUTPUTS, (f32, i64, TensorProto.INT32, i64, i64))]
    node = helper.make_node("PackedContributionDrop", list(PACKED_INPUTS), list(PACKED_OUTPUTS), domain="adapler")
    model = helper.make_model(helper.make_graph([node], "g", ins, outs),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("adapler", 1)], ir_version=8)
    path = tempfile.NamedTemporaryFile(suffix=".onnx", delete=False).name
    onnx.save(model, path)
    return create_session(path, threads=1)


@pytest.mark.parametrize("case", ["ragged", "batch1", "keep_all", "cls_only"])
def test_packed_ort_kernel_matches_golden(packed_op_session, golden, case):
    a = golden[case]
    got = packed_op_session.run(list(PACKED_OUTPUTS), {k: a[k] for k in PACKED_INPUTS})
    for name, value in zip(PACKED_OUTPUTS, got):
        assert value.dtype == a[name].dtype, f"{case}/{name}"
        np.testing.assert_array_equal(value, a[name], err_msg=f"{case}/{name}")


def test_packed_ort_kernel_matches_reference_on_random_batches(packed_op_session):
    rng = np.random.default_rng(5)
    for _ in range(20):
        b, d, h = rng.integers(1, 6), rng.integers(1, 9), rng.integers(1, 6)
        lengths = rng.integers(1, 30, size=b)
        n = int(lengths.sum())
        a = {"hidden": rng.standard_normal((n, d)).astype(np.float32),
             "cp_hidden": rng.standard_normal((n, h)).astype(np.float32),
             "w2": rng.standard_normal(h).astype(np.float32),
             "offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
             "eta": np.array([rng.uniform(0.05, 1.5)], np.float32)}
        for name, got, want in zip(PACKED_OUTPUTS, packed_op_session.run(list(PACKED_OUTPUTS), a),
                                   packed_contribution_drop_reference(**a)):
            np.testing.assert_array_equal(got, want, err_msg=name)


def test_packed_ort_kernel_errors_name_the_input(packed_op_session, golden):
    a = {k: golden["ragged"][k] for k in PACKED_INPUTS}
    bad = dict(a, offsets=np.array([0, 12, 12, 22, 32], np.int64))
    with pytest.raises(Exception, match="PackedContributionDrop: row 1 is empty"):
        packed_op_session.run(list(PACKED_OUTPUTS), bad)
    bad = dict(a, w2=a["w2"][:-1])
    with pytest.raises(Exception, match="PackedContributionDrop: w2 must be \\[H\\]"):
        packed_op_session.run(list(PACKED_OUTPUTS), bad)


# ------------------------------------------------------------------------------------------------ the graph

def _run_graph(path, ids, mask):
    from adapler.plugins.token_drop.ort_session import create_session
    sess = create_session(path, threads=1)
    return sess.run(["logits", "kept_lengths"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})


@pytest.mark.parametrize("batch,length,seed", [(1, 12, 0), (5, 30, 1), (8, 40, 2)])
def test_packed_graph_matches_padded_graph_and_torch(tmp_path, ort_library, batch, length, seed):
    from adapler.export.ort_graph import write_ort_graph
    from adapler.export.packed_graph import write_packed_graph
    model = adapler_model(seed, eta=0.9)
    ids, mask = ragged_batch(batch, length, seed)
    packed = _run_graph(write_packed_graph(model, tmp_path / "model.ort.packed.onnx"), ids, mask)
    padded = _run_graph(write_ort_graph(model, tmp_path / "model.ort.onnx"), ids, mask)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    assert ref.kept_lengths[:, -1].sum() < mask.sum()
    np.testing.assert_array_equal(packed[1], padded[1])
    np.testing.assert_array_equal(packed[1], ref.kept_lengths.numpy())
    assert np.abs(packed[0] - padded[0]).max() <= 1e-4 and np.abs(packed[0] - ref.logits.numpy()).max() <= 1e-4


@pytest.mark.parametrize("pooler", [True, False])
def test_packed_dense_graph_needs_no_plugin(tmp_path, pooler):
    from adapler.export.packed_graph import build_packed_graph
    model = dense_model(pooler=pooler)
    graph = build_packed_graph(model)
    assert "adapler" not in {o.domain for o in graph.opset_import}
    import onnx
    onnx.save(graph, str(tmp_path / "m.onnx"))
    ids, mask = ragged_batch(6, 20, 3)
    logits, kept = _run_graph(tmp_path / "m.onnx", ids, mask)
    with torch.no_grad():
        ref = model(ids, mask, mode="dense")
    np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4


def test_packed_int8_graph_keeps_the_selection_float(tmp_path, ort_library):
    import collections

    import onnx

    from adapler.export.deploy import quantize_int8
    from adapler.export.packed_graph import write_packed_graph
    model = adapler_model(2, eta=0.9)
    src = write_packed_graph(model, tmp_path / "model.ort.packed.onnx")
    dst = quantize_int8(src, tmp_path / "model.ort.packed.int8.onnx")
    nodes = onnx.load(str(dst)).graph.node
    ops = collections.Counter(n.op_type for n in nodes)
    # per layer: QAttention (QKV + attention on the padded view), MatMulInteger for the output projection and FFN
    assert ops["QAttention"] == 4 and ops["MatMulInteger"] >= 12 and ops["PackedContributionDrop"] == 4
    cp = [n for n in nodes if ".cp." in n.name and n.op_type.startswith("MatMul")]
    assert len(cp) == 4 and all(n.op_type == "MatMul" for n in cp)
    ids, mask = ragged_batch(6, 24, 2)
    logits, kept = _run_graph(dst, ids, mask)
    assert logits.shape == (6, 3) and np.isfinite(logits).all() and kept.shape == (6, 4)


# ------------------------------------------------------------------------------------------------ bench

def test_bench_entry_reports_parity_flops_and_padding(tmp_path, ort_library):
    from adapler.flops import model_flops
    from adapler.bench.packed import build_graphs, markdown, run_batch_size
    from adapler.plugins.token_drop.ort_session import create_session
    models = {"dense": dense_model(), "pruned": adapler_model(1, eta=0.9, layers=3)}
    sessions = {k: create_session(p, threads=1) for k, p in build_graphs(models, tmp_path, int8=False).items()}
    feeds = []
    for seed in (1, 2):
        ids, mask = ragged_batch(5, 30, seed)
        feeds.append({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    entry = run_batch_size(sessions, feeds, models["pruned"], repeats=1, warmup=0)
    assert set(entry["parity"]) == {"dense.packed", "pruned.packed"}
    assert all(p["kept_lengths_equal"] and p["max_abs_logit_diff"] <= 1e-4 for p in entry["parity"].values())
    with torch.no_grad():
        outs = [models["pruned"](torch.from_numpy(f["input_ids"]), torch.from_numpy(f["attention_mask"])) for f in feeds]
    kept = torch.cat([o.kept_lengths for o in outs])
    n = torch.cat([torch.from_numpy(f["attention_mask"]).sum(1) for f in feeds])
    dense_f, pruned_f = model_flops(models["pruned"], n, kept)
    assert entry["flops_speedup"]["fp32"] == pytest.approx(float(dense_f.sum() / pruned_f.sum()), rel=1e-3)
    slots = sum(o.kept_lengths.shape[0] * o.kept_lengths.max(dim=0).values for o in outs)
    want = 1 - kept.sum(0).float() / slots.float()
    np.testing.assert_allclose(entry["padding_fraction"]["pruned"], want.numpy(), atol=1e-4)
    assert set(entry["latency"]) == set(sessions) and set(entry["pruned_vs_dense"]) == {"pruned.padded", "pruned.packed"}
    table = markdown({"set": "t", "max_length": 30, "threads": 1, "uptime": "-", "entries": [entry]})
    assert "| pruned.packed |" in table and "padding fraction per layer" in table


def test_export_packed_writes_both_packed_graphs(tmp_path, tiny_bert_dir, ort_library):
    from adapler.export.onnx import write_export_dir
    from test_export import pruned_checkpoint
    model, ckpt = pruned_checkpoint(tmp_path, tiny_bert_dir)
    meta = write_export_dir(ckpt, tmp_path / "export", custom=False, std=False, quantize="int8", packed=True)
    assert meta["files"] == {"ort": "model.ort.onnx", "ort-int8": "model.ort.int8.onnx",
                             "ort-packed": "model.ort.packed.onnx", "ort-packed-int8": "model.ort.packed.int8.onnx"}
    ids, mask = ragged_batch(4, 20, 5)
    logits, kept = _run_graph(tmp_path / "export" / "model.ort.packed.onnx", ids, mask)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4
    int8_logits, _ = _run_graph(tmp_path / "export" / "model.ort.packed.int8.onnx", ids, mask)
    assert int8_logits.shape == logits.shape and np.isfinite(int8_logits).all()
