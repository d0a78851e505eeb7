"""int8 with chosen nodes left float: the candidate list, ``only`` / ``keep_float``, the node ranking and its probe."""
import collections

import numpy as np
import onnx
import pytest

from adapler.export.deploy import DeployError, int8_candidates, quantize_int8
from adapler.export.int8_sensitivity import divergence, quantize_keeping_float, rank_nodes
from adapler.export.ort_graph import write_ort_graph
from conftest import adapler_model, ragged_batch

QUANTIZED = ("MatMulInteger", "QAttention", "DynamicQuantizeMatMul")


def _quantized(path) -> list[str]:
    """Names of the float nodes that became int8 nodes (the quantizer names them ``<node>_quant``)."""
    return sorted(n.name.removesuffix("_quant") for n in onnx.load(str(path)).graph.node if n.op_type in QUANTIZED)


def _feeds(n_batches=3, seed=0):
    feeds = []
    for i in range(n_batches):
        ids, mask = ragged_batch(6, 24, seed + i)
        feeds.append({"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    return feeds


@pytest.fixture
def fused(tmp_path, ort_library):
    return write_ort_graph(adapler_model(2, eta=0.9), tmp_path / "model.ort.onnx")


def test_candidates_are_the_encoder_nodes(fused):
    nodes = {n.name: n.op_type for n in onnx.load(str(fused)).graph.node}
    cands = int8_candidates(fused)
    assert cands and not any(".cp." in c for c in cands)  # the Contribution Predictors stay float
    ops = collections.Counter(nodes.get(c, "Gemm") for c in cands)
    assert ops["Attention"] == 4  # one fused attention per layer
    assert set(cands) >= {n for n, op in nodes.items() if op == "MatMul" and ".cp." not in n}
    # the head's Gemms, under the name the quantizer gives them when it rewrites them as MatMul + Add
    assert {c for c in cands if c not in nodes} == {n + "_MatMul" for n, op in nodes.items() if op == "Gemm"}
    assert _quantized(quantize_int8(fused, fused.with_name("q.onnx"))) == sorted(cands)  # and nothing else


def test_only_and_keep_float_choose_the_nodes(fused, tmp_path):
    cands = int8_candidates(fused)
    one = quantize_int8(fused, tmp_path / "one.onnx", only=[cands[3]])
    assert _quantized(one) == [cands[3]]
    rest = quantize_int8(fused, tmp_path / "rest.onnx", keep_float=cands[:2])
    assert _quantized(rest) == sorted(cands[2:])
    with pytest.raises(ValueError, match="encoder-only"):
        quantize_int8(fused, tmp_path / "x.onnx", encoder_only=False, keep_float=cands[:1])


def test_divergence():
    a = np.array([[2.0, 0.0], [0.0, 1.0]])
    assert divergence(a, a) == pytest.approx(0.0, abs=1e-12)
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    want = (p * np.log(p / q)).sum()
    assert divergence(np.log(p)[None], np.log(q)[None]) == pytest.approx(want)


def test_ranking_and_keeping_every_node_float_is_the_float_graph(fused, tmp_path):
    from adapler.plugins.token_drop.ort_session import create_session
    feeds = _feeds()
    ranking = rank_nodes(fused, feeds, threads=1)
    assert sorted(r["node"] for r in ranking) == sorted(int8_candidates(fused))
    kls = [r["kl"] for r in ranking]
    assert kls == sorted(kls, reverse=True) and min(kls) >= 0 and max(kls) > 0
    assert all(0 <= r["flips"] <= 1 and 0 <= r["kept_lengths_identical"] <= 1 for r in ranking)
    # the top node's row is what quantizing it alone does
    top = quantize_int8(fused, tmp_path / "top.onnx", only=[ranking[0]["node"]])
    ref, got = (np.concatenate([create_session(p, threads=1).run(["logits"], f)[0] for f in feeds])
                for p in (fused, top))
    assert divergence(ref, got) == pytest.approx(ranking[0]["kl"], rel=1e-6)
    # all of them float: no int8 node is left and the logits are the float graph's
    kept = quantize_keeping_float(fused, tmp_path / "all.onnx", ranking, len(ranking))
    assert kept == [r["node"] for r in ranking] and _quantized(tmp_path / "all.onnx") == []
    same = np.concatenate([create_session(tmp_path / "all.onnx", threads=1).run(["logits"], f)[0] for f in feeds])
    np.testing.assert_allclose(same, ref, atol=1e-6)
    quantize_keeping_float(fused, tmp_path / "two.onnx", ranking, 2)
    assert _quantized(tmp_path / "two.onnx") == sorted(r["node"] for r in ranking[2:])
    with pytest.raises(DeployError, match=f"cannot keep {len(ranking) + 1} nodes in float.*choose 0 to"):
        quantize_keeping_float(fused, tmp_path / "x.onnx", ranking, len(ranking) + 1)


def test_probe_report_and_errors(tmp_path, pruned_export_dir, sentiment_csv):
    """bench/int8_float_nodes.py: ranked on dev, each k scored on dev and test and timed; one-line errors."""
    import json

    from adapler.bench.int8_float_nodes import main
    export_dir = pruned_export_dir
    out_file = tmp_path / "float_nodes.json"
    dense_int8 = quantize_int8(export_dir / "model.ort.onnx", tmp_path / "other.onnx", encoder_only=False)
    main([str(export_dir), "--data", sentiment_csv, "--keep", "2,0", "--texts", "3", "--batches", "1",
          "--repeats", "2", "--threads", "1", "--reference", str(dense_int8), "--json", str(out_file)])
    out = json.loads(out_file.read_text())
    ranking = [r["node"] for r in out["ranking"]]
    assert ranking and sorted(ranking) == sorted(int8_candidates(export_dir / "model.ort.onnx"))
    assert list(out["keep"]) == ["0", "2"]
    assert out["keep"]["0"]["float_nodes"] == [] and out["keep"]["2"]["float_nodes"] == ranking[:2]
    for row in out["keep"].values():
        for split in ("dev", "test"):
            assert 0 <= row[split]["argmax_agreement"] <= 1
        assert row["batch_1_ms"] > 0 and row["batch_32_ms"] > 0
    assert out["fp32_batch_1_ms"] > 0 and out["batch_1_inputs"] == 3
    assert out["reference_batch_1_ms"] > 0 and out["reference_batch_32_ms"] > 0
    with pytest.raises(SystemExit, match="already exists"):
        main([str(export_dir), "--data", sentiment_csv, "--json", str(out_file)])
    with pytest.raises(SystemExit, match="is not an export folder"):
        main([str(tmp_path), "--data", sentiment_csv])
    with pytest.raises(SystemExit, match="--reference .* is not a file"):
        main([str(export_dir), "--data", sentiment_csv, "--reference", str(tmp_path / "none.onnx")])
    with pytest.raises(SystemExit, match="not a comma-separated list of integers"):
        main([str(export_dir), "--data", sentiment_csv, "--keep", "two"])
    with pytest.raises(SystemExit, match=f"out of range: the graph has {len(ranking)} int8 candidate nodes"):
        main([str(export_dir), "--data", sentiment_csv, "--keep", f"0,{len(ranking) + 1}"])
