"""ONNX export: custom-op graph and standard-op graph against torch (logits and kept lengths)."""
import json
import shutil

import numpy as np
import pytest
import torch

from adapler.checkpoint import save_checkpoint
from conftest import ragged_batch
from adapler.export.onnx import ExportError, export_graph, write_export_dir
from conftest import adapler_model


def pruned_checkpoint(tmp_path, tiny_bert_dir):
    """(model, checkpoint dir): a 4-layer AdapLeR model with sharpened CPs, saved with the MiniLM tokenizer."""
    from transformers import AutoTokenizer
    model = adapler_model(2, eta=0.9)
    return model, save_checkpoint(model, tmp_path / "ckpt", tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
                                  label_names=["a", "b", "c"], max_length=32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = adapler_model(3, eta=0.9, sharpness=8.0)
    d = tmp_path_factory.mktemp("onnx")
    return model, export_graph(model, d / "model.onnx", std=False), export_graph(model, d / "model.std.onnx", std=True)


def _run(path, ids, mask, library):
    from adapler.plugins.token_drop.ort_session import create_session
    sess = create_session(path, library=library)
    return sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})


@pytest.mark.parametrize("batch,length,seed", [(1, 12, 0), (5, 30, 1), (8, 40, 2), (3, 3, 3)])
def test_both_graphs_match_torch(exported, ort_library, batch, length, seed):
    model, custom, std = exported
    ids, mask = ragged_batch(batch, length, seed)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    assert ref.kept_lengths[:, -1].sum() < mask.sum() or length <= 3
    for path, lib in ((custom, ort_library), (std, None)):
        logits, kept = _run(path, ids, mask, lib)
        assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4
        np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())


def test_graph_contents(exported):
    import onnx
    _, custom, std = exported
    c, s = onnx.load(custom), onnx.load(std)
    drops = [n for n in c.graph.node if n.op_type == "TokenDrop"]
    assert len(drops) == 4 and all(n.domain == "adapler" for n in drops)
    attrs = {a.name: a.s.decode() for a in drops[0].attribute}
    assert attrs == {"plugin_namespace": "adapler", "plugin_version": "1"}
    assert not any(n.domain == "adapler" for n in s.graph.node)
    assert {"TopK", "GatherElements"} <= {n.op_type for n in s.graph.node}
    assert [o.name for o in c.graph.output] == ["logits", "kept_lengths"]


def test_custom_graph_without_library_names_the_fix(exported):
    from adapler.plugins.token_drop.ort_session import TokenDropLibraryMissing, create_session
    with pytest.raises(TokenDropLibraryMissing, match="model.std.onnx"):
        create_session(exported[1], library=None)


def test_export_dir_errors(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer
    model = adapler_model(0)
    ckpt = save_checkpoint(model, tmp_path / "ckpt", tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
                           label_names=["a", "b", "c"], max_length=32)
    with pytest.raises(ExportError, match="opset 11 is not supported"):
        write_export_dir(ckpt, tmp_path / "o1", opset=11)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="--overwrite"):
        write_export_dir(ckpt, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "x"
    with pytest.raises(ExportError, match="not an adapler checkpoint"):
        write_export_dir(tiny_bert_dir, tmp_path / "o2")
    dense = save_checkpoint(type(model)(model.config, 3), tmp_path / "dense", label_names=["a", "b", "c"], max_length=32)
    with pytest.raises(ExportError, match="not a pruned model"):
        write_export_dir(dense, tmp_path / "o3")
    with pytest.raises(ExportError, match="a quantized export of it prunes nothing"):
        write_export_dir(dense, tmp_path / "o3", quantize="int8")
    with pytest.raises(ExportError, match="--quantize 'int4' is not supported; use one of none, int8"):
        write_export_dir(ckpt, tmp_path / "o4", quantize="int4")
    with pytest.raises(ExportError, match="--precision 'bf16' is not supported; use one of fp32, fp16"):
        write_export_dir(ckpt, tmp_path / "o4", precision="bf16")
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()  # refused before writing anything


def test_int8_export_and_its_report(tmp_path, tiny_bert_dir, ort_library, sentiment_csv):
    """--quantize int8: the int8 ORT graph, and verify's whole-split report against fp32."""
    from adapler.data import load_dataset
    from adapler.export.verify import quantization_report
    model, ckpt = pruned_checkpoint(tmp_path, tiny_bert_dir)
    meta = write_export_dir(ckpt, tmp_path / "export", custom=False, std=False, quantize="int8")
    assert meta["files"] == {"ort": "model.ort.onnx", "ort-int8": "model.ort.int8.onnx"}
    test = load_dataset(sentiment_csv).test
    reports = quantization_report(tmp_path / "export", test, batch_size=5)
    assert set(reports) == {"int8"}
    rep = reports["int8"]
    assert rep["n_examples"] == len(test) and rep["file"] == "model.ort.int8.onnx"
    assert 0 <= rep["argmax_agreement"] <= 1 and 0 <= rep["kept_lengths_identical_share"] <= 1
    assert rep["accuracy_change_points"] == pytest.approx(100 * (rep["accuracy"] - rep["accuracy_fp32"]))
    lo, hi = rep["accuracy_change_ci95_points"]  # paired interval of the change (adapler/stats.py)
    assert lo <= rep["accuracy_change_points"] <= hi and 0 <= rep["mcnemar_p"] <= 1
    assert len(rep["mean_kept_lengths"]) == 4
    assert rep["max_abs_diff_logits"] > 0  # int8 really changed the arithmetic


def test_fp16_export_runs_and_is_reported(tmp_path, tiny_bert_dir, ort_library, sentiment_csv):
    """--precision fp16: a float16 TokenDrop graph next to model.onnx; verify compares it on the whole split."""
    import onnx
    from adapler.data import load_dataset
    from adapler.export.verify import quantization_report
    model, ckpt = pruned_checkpoint(tmp_path, tiny_bert_dir)
    meta = write_export_dir(ckpt, tmp_path / "export", std=False, ort=False, precision="fp16")
    assert meta["files"] == {"custom": "model.onnx", "fp16": "model.fp16.onnx"}
    graph = onnx.load(str(tmp_path / "export" / "model.fp16.onnx")).graph
    floats = {i.data_type for i in graph.initializer if len(i.dims) == 2} & {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    assert floats == {onnx.TensorProto.FLOAT16}  # every weight matrix is float16
    rep = quantization_report(tmp_path / "export", load_dataset(sentiment_csv).test, batch_size=5)["fp16"]
    assert rep["max_abs_diff_logits"] < 0.05 and rep["argmax_agreement"] > 0.9
    assert next(model.parameters()).dtype == torch.float32  # the export did not convert the caller's model


def test_export_dir_and_verify(pruned_export_dir, sentiment_csv):
    """The default export folder (conftest's pruned_export_dir: write_export_dir with no options) and verify."""
    from adapler.data import load_dataset
    from adapler.export.verify import verify_export
    saved = json.loads((pruned_export_dir / "export.json").read_text())
    assert saved["files"] == {"custom": "model.onnx", "std": "model.std.onnx", "ort": "model.ort.onnx"}
    assert saved["opset"] == 23 and saved["token_drop_domain"] == "adapler" and saved["max_length"] == 32
    assert (pruned_export_dir / "tokenizer" / "tokenizer.json").exists()
    report = verify_export(pruned_export_dir, load_dataset(sentiment_csv).test)
    assert report["max_abs_diff_logits"] <= 1e-4 and report["kept_lengths_identical"]
    assert report["batch_sizes"] == [1, 1, 1, 8] and set(report["runners"]) == {"ort-custom-op", "ort-std-ops", "ort-fused"}


def test_profile_roles_of_an_export(tmp_path, pruned_export_dir, sentiment_csv):
    """bench/profile_ort.py: every profiled node gets a role, shares sum to 1, selection is visible."""
    from adapler.bench.profile_ort import main
    main([str(pruned_export_dir), "--data", sentiment_csv, "--single", "2", "--batches", "1", "--repeats", "1",
          "--threads", "1", "--json", str(tmp_path / "profile.json")])
    out = json.loads((tmp_path / "profile.json").read_text())
    assert set(out) == {"model.onnx", "model.std.onnx", "model.ort.onnx"}
    for prof in out.values():
        assert abs(sum(prof["share"].values()) - 1) < 1e-9
        assert prof["share"]["selection"] > 0 and prof["share"]["layers"] > 0
    assert prof["share"].get("unattributed", 0) == 0  # every fused-graph node has a role by its name
    fused = out["model.ort.onnx"]
    assert list(fused["layer_time_us_per_run"]) == ["l0", "l1", "l2", "l3"]  # the tiny model's layers, in order
    assert sum(fused["layer_time_us_per_run"].values()) < sum(fused["node_time_us_per_run"].values())
    assert {"Attention", "ContributionDrop"} <= set(fused["op_time_us_per_run"])
    nodes = fused["selection_nodes_us_per_run"]  # the selection role, node by node: the fused graph's 3 per layer
    assert {n.split(" (")[1] for n in nodes} == {"MatMul)", "BiasGelu)", "ContributionDrop)"} and len(nodes) == 3 * 4
    assert abs(sum(nodes.values()) - fused["node_time_us_per_run"]["selection"]) < 1e-6
    with pytest.raises(SystemExit, match="already exists"):
        main([str(pruned_export_dir), "--data", sentiment_csv, "--json", str(tmp_path / "profile.json")])


def test_profile_layers_against_dense(tmp_path, pruned_export_dir, tiny_bert_dir, sentiment_csv):
    """--dense: per layer, the pruned graph's kept lengths give the FLOPs ratio that scales the dense layer."""
    from transformers import AutoTokenizer

    from adapler.bench.profile_ort import layers_against_dense, test_feeds
    from adapler.encoder import PrunedBertClassifier
    from conftest import tiny_config
    pruned = pruned_export_dir
    ckpt = save_checkpoint(PrunedBertClassifier(tiny_config(), 2), tmp_path / "dense",
                           tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)), label_names=["a", "b"],
                           max_length=32)
    dense = tmp_path / "dense-export"  # only the fused graph is compared (built directly, no torch export)
    write_export_dir(ckpt, dense, allow_dense=True, custom=False, std=False)
    feeds = test_feeds(pruned, sentiment_csv, 3, 0)
    out = layers_against_dense(pruned, dense, feeds, repeats=1, threads=1)
    assert out["inputs"] == 3 and list(out["layers"]) == ["l0", "l1", "l2", "l3"]
    for row in out["layers"].values():
        assert 0 < row["flops_ratio"] < 1  # eta 0.9 drops tokens before each layer
        assert row["excess_us"] == pytest.approx(row["measured_us"] - row["flops_proportional_us"])
    with pytest.raises(ValueError, match="batch-1"):
        layers_against_dense(pruned, dense, test_feeds(pruned, sentiment_csv, 0, 1, 4))
    no_fused = tmp_path / "no-fused"  # an export of a method without a fused graph: export.json lists none
    shutil.copytree(pruned, no_fused)
    meta = json.loads((no_fused / "export.json").read_text())
    del meta["files"]["ort"]
    (no_fused / "export.json").write_text(json.dumps(meta))
    from adapler.bench.profile_ort import main
    with pytest.raises(SystemExit, match="no-fused has no fused ORT graph"):  # refused before any profiling
        main([str(pruned), "--data", sentiment_csv, "--dense", str(no_fused)])


def test_int8_export_of_a_method_without_fused_graph(tmp_path, tiny_bert_dir, ort_library):
    """PoWER-BERT: no model.ort.onnx (said in a note), int8 comes from model.onnx and runs."""
    from transformers import AutoTokenizer

    from adapler.encoder import PrunedBertClassifier
    from adapler.selectors import build_selector
    from conftest import tiny_config
    from adapler.plugins.token_drop.ort_session import create_session
    cfg = tiny_config(layers=2)
    model = PrunedBertClassifier(cfg, 2, build_selector("power-bert", cfg, {"retention": [8, 4]})).eval()
    ckpt = save_checkpoint(model, tmp_path / "ckpt", tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
                           label_names=["a", "b"], max_length=32)
    meta = write_export_dir(ckpt, tmp_path / "export", std=False, quantize="int8")
    assert meta["files"] == {"custom": "model.onnx", "int8": "model.int8.onnx"}
    assert "no model.ort.onnx" in meta["notes"][0] and "power-bert" in meta["notes"][0]
    ids, mask = ragged_batch(3, 20, 0)
    sess = create_session(tmp_path / "export" / "model.int8.onnx", threads=1)
    logits, kept = sess.run(["logits", "kept_lengths"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert logits.shape == (3, 2) and kept[:, -1].max() <= 4


@pytest.mark.parametrize("batch,length,seed", [(1, 12, 0), (5, 30, 1)])
def test_onnx_reference_runs_both_graphs(exported, ort_library, batch, length, seed):
    """onnx.reference, with TokenDrop registered as its NumPy reference, runs model.onnx without the C++
    library and agrees with torch and with ONNX Runtime + the custom op (and model.std.onnx with torch)."""
    from adapler.plugins.onnx_reference import reference_evaluator
    model, custom, std = exported
    ids, mask = ragged_batch(batch, length, seed)
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    ort_logits, ort_kept = _run(custom, ids, mask, ort_library)
    for path in (custom, std):
        logits, kept = reference_evaluator(path).run(None, feeds)
        assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4
        np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
    logits, kept = reference_evaluator(custom).run(None, feeds)
    assert np.abs(logits - ort_logits).max() <= 1e-5
    np.testing.assert_array_equal(kept, ort_kept)


def test_exported_token_drop_outputs_get_inferred_shapes(exported):
    """The exporter writes value_info for every tensor (TokenDrop's L as torch's unbacked symbol u<N>); without
    it, ONNX shape inference with the registered schema types every TokenDrop output of model.onnx again:
    [batch, <node>_L, hidden] and [batch, <node>_L]."""
    import onnx

    from adapler.plugins.token_drop.schema import register_onnx_schema
    register_onnx_schema()
    model = onnx.load(exported[1])
    model.graph.ClearField("value_info")
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    info = {v.name: v.type.tensor_type for v in graph.value_info}
    drops = [n for n in graph.node if n.op_type == "TokenDrop"]
    for node in drops:
        hidden_c, mask_c, index = (info[o] for o in node.output)
        length = f"{node.name}_L"
        assert [d.dim_param or d.dim_value for d in hidden_c.shape.dim][1:] == [length, 64]
        assert hidden_c.elem_type == onnx.TensorProto.FLOAT and index.elem_type == onnx.TensorProto.INT64
        assert [d.dim_param for d in mask_c.shape.dim][1:] == [d.dim_param for d in index.shape.dim][1:] == [length]
    assert len({n.name for n in drops}) == len(drops) == 4
