"""bench/selection_cost.py: selection blocks against Identity nodes, paired; one-line errors."""
import onnx
import pytest

from adapler.bench.selection_cost import block_graphs, main, time_blocks


def test_graphs_hold_the_deploy_graphs_selection_nodes(tmp_path):
    paths = block_graphs(tmp_path, blocks=2, hidden=16, cp=4)
    sel = [n.op_type for n in onnx.load(str(paths["selection"])).graph.node]
    assert sel == ["MatMul", "BiasGelu", "ContributionDrop"] * 2
    assert [n.op_type for n in onnx.load(str(paths["identity"])).graph.node] == ["Identity"] * 2


def test_time_blocks_reports_each_length(ort_library):
    out = time_blocks([4, 9], blocks=1, hidden=16, cp=4, threads=1, calls=5, rounds=2)
    assert set(out["lengths"]) == {"4", "9"}
    for r in out["lengths"].values():
        assert r["selection_graph_us"] > 0 and r["identity_graph_us"] > 0
        assert r["per_block_us"] == pytest.approx(r["selection_graph_us"] - r["identity_graph_us"])


def test_errors(tmp_path):
    taken = tmp_path / "x.json"
    taken.write_text("{}")
    with pytest.raises(SystemExit, match="already exists"):
        main(["--json", str(taken)])
    with pytest.raises(SystemExit, match="not a comma-separated list of integers"):
        main(["--lengths", "8,x"])
    with pytest.raises(SystemExit, match="positive token counts"):
        main(["--lengths", "0"])
