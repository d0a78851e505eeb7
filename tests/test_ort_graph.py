"""model.ort.onnx (fused ONNX Runtime graph) and the deploy steps (standard dense export, optimizer, int8)."""
import collections

import numpy as np
import onnx
import pytest
import torch

from adapler.encoder import PrunedBertClassifier
from conftest import ragged_batch, tiny_config, weight_scale_shapes
from adapler.export.ort_graph import UnsupportedForOrtGraph, build_ort_graph, write_ort_graph
from conftest import adapler_model


def _session(path):
    from adapler.plugins.token_drop.ort_session import create_session
    return create_session(path, threads=1)


def _feed(sess, ids, mask, types=None):
    full = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
            "token_type_ids": (types if types is not None else torch.zeros_like(ids)).numpy()}
    return {i.name: full[i.name] for i in sess.get_inputs()}


def dense_model(seed=0, pooler=True, act="gelu"):
    torch.manual_seed(seed)
    cfg = tiny_config(layers=3)
    cfg.hidden_act = act
    return PrunedBertClassifier(cfg, 3, pooler=pooler).eval()


@pytest.mark.parametrize("batch,length,seed", [(1, 12, 0), (5, 30, 1), (8, 40, 2)])
def test_adapler_graph_matches_torch(tmp_path, ort_library, batch, length, seed):
    model = adapler_model(seed, eta=0.9)
    sess = _session(write_ort_graph(model, tmp_path / "model.ort.onnx"))
    ids, mask = ragged_batch(batch, length, seed)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    logits, kept = sess.run(["logits", "kept_lengths"], _feed(sess, ids, mask))
    assert ref.kept_lengths[:, -1].sum() < mask.sum()  # the model really drops tokens
    np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4


@pytest.mark.parametrize("pooler,act,types", [(True, "gelu", False), (False, "gelu_new", True), (True, "relu", True)])
def test_dense_graph_matches_torch(tmp_path, pooler, act, types):
    model = dense_model(pooler=pooler, act=act)
    graph = build_ort_graph(model, token_types=types)
    path = tmp_path / "m.onnx"
    onnx.save(graph, str(path))
    sess = _session(path)
    ids, mask = ragged_batch(4, 20, 0)
    tt = (torch.arange(20)[None] >= 10).long().expand(4, 20) * mask if types else None
    with torch.no_grad():
        ref = model(ids, mask, tt, mode="dense")
    logits, kept = sess.run(["logits", "kept_lengths"], _feed(sess, ids, mask, tt))
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4
    np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
    assert "adapler" not in {o.domain for o in graph.opset_import}  # a dense graph needs no plugin


def test_one_selection_node_per_layer():
    """The selection costs MatMul + activation + ContributionDrop per layer, nothing else: the int32 mask
    the op passes on feeds the next attention directly (no Cast per layer)."""
    dense = collections.Counter(n.op_type for n in build_ort_graph(dense_model()).graph.node)
    model = adapler_model(0, layers=3)
    pruned = collections.Counter(n.op_type for n in build_ort_graph(model).graph.node)
    extra = pruned - dense
    assert extra == collections.Counter({"MatMul": 3, "BiasGelu": 3, "ContributionDrop": 3})
    drops = [n for n in build_ort_graph(model).graph.node if n.op_type == "ContributionDrop"]
    attention = [n for n in build_ort_graph(model).graph.node if n.op_type == "Attention"]
    assert [d.output[1] for d in drops] == [a.input[3] for a in attention]  # each layer's kept mask, uncast
    assert {"Attention", "SkipLayerNormalization", "EmbedLayerNormalization"} <= set(pruned)


def test_methods_without_ort_graph_are_refused():
    from adapler.selectors import build_selector
    cfg = tiny_config(layers=2)
    model = PrunedBertClassifier(cfg, 2, build_selector("power-bert", cfg, {"retention": [8, 4]}))
    with pytest.raises(UnsupportedForOrtGraph, match="'power-bert' has no fused ORT graph.*model.onnx"):
        build_ort_graph(model)


def test_int8_graph_keeps_the_selection_float(tmp_path, ort_library):
    from adapler.export.deploy import quantize_int8
    model = adapler_model(2, eta=0.9)
    src = write_ort_graph(model, tmp_path / "model.ort.onnx")
    dst = quantize_int8(src, tmp_path / "model.ort.int8.onnx")
    nodes = onnx.load(str(dst)).graph.node
    ops = collections.Counter(n.op_type for n in nodes)
    assert ops["QAttention"] == 4 and ops["MatMulInteger"] >= 12 and ops["ContributionDrop"] == 4
    cp = [n for n in nodes if ".cp." in n.name and n.op_type.startswith("MatMul")]
    assert len(cp) == 4 and all(n.op_type == "MatMul" for n in cp)  # CP layers stay float
    # one weight scale per output channel (the library's default is one per tensor, see the dense reference)
    shapes = weight_scale_shapes(dst)
    assert len(shapes) >= 16 and all(len(d) == 1 and d[0] > 1 for d in shapes.values()), shapes
    ids, mask = ragged_batch(6, 24, 2)
    sess = _session(dst)
    logits, kept = sess.run(["logits", "kept_lengths"], _feed(sess, ids, mask))
    assert logits.shape == (6, 3) and np.isfinite(logits).all() and kept.shape == (6, 4)


def test_standard_dense_export_and_optimizer(tmp_path):
    """The reference users deploy: HF export + ORT's optimizer fuses it and keeps the logits."""
    from adapler.export.deploy import dense_reference_graphs
    model = dense_model()
    files = dense_reference_graphs(model, tmp_path)
    ops = collections.Counter(n.op_type for n in onnx.load(str(files["hf-opt"])).graph.node)
    assert ops["Attention"] == 3 and ops["SkipLayerNormalization"] >= 5
    ids, mask = ragged_batch(4, 20, 0)
    with torch.no_grad():
        ref = model(ids, mask, mode="dense").logits.numpy()
    for key in ("hf", "hf-opt"):
        sess = _session(files[key])
        assert np.abs(sess.run(["logits"], _feed(sess, ids, mask))[0] - ref).max() <= 1e-4
    sess = _session(files["hf-opt-int8"])
    assert sess.run(["logits"], _feed(sess, ids, mask))[0].shape == (4, 3)
    shapes = weight_scale_shapes(files["hf-opt-int8"])  # the one-line default a user writes: per tensor
    assert shapes and all(d == [] for d in shapes.values()), shapes



def test_dense_without_pooler_has_no_hf_reference(tmp_path):
    from adapler.export.deploy import DeployError, export_hf_dense
    with pytest.raises(DeployError, match="no pooler"):
        export_hf_dense(dense_model(pooler=False), tmp_path / "m.onnx")


def test_unknown_optimizer_model_type_is_a_one_line_error(tmp_path):
    """ORT's optimizer has no DistilBERT type (adapters say "bert"); a wrong one is named, not a traceback."""
    from adapler.export.deploy import DeployError, optimize_dense
    with pytest.raises(DeployError, match=r"no model type 'distilbert'; it has .*\bbert\b"):
        optimize_dense(tmp_path / "m.onnx", tmp_path / "o.onnx", num_heads=4, hidden_size=64, model_type="distilbert")
