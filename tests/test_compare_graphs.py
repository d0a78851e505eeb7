"""bench/compare_graphs.py: graphs of one model timed paired, refused when their outputs disagree."""
import json
import shutil

import onnx
import pytest

from adapler.bench.compare_graphs import main, summarize


def test_summary_ratios_are_against_the_first_graph():
    out = summarize({"a": [2.0, 4.0, 6.0], "b": [1.0, 4.0, 2.0]})
    assert out["a"]["speedup_vs_first_ratio_of_means"] == 1.0 and out["a"]["speedup_vs_first_median_ratio"] == 1.0
    assert out["b"]["mean_ms"] == pytest.approx(7 / 3)
    assert out["b"]["speedup_vs_first_ratio_of_means"] == pytest.approx(4 / (7 / 3))
    assert out["b"]["speedup_vs_first_median_ratio"] == 2.0  # ratios 2, 1, 3


def test_compare_two_forms_and_errors(tmp_path, pruned_export_dir, sentiment_csv):
    out_file = tmp_path / "cmp.json"
    main([str(pruned_export_dir), "model.ort.onnx", "model.onnx", "--data", sentiment_csv, "--texts", "3",
          "--batches", "1", "--repeats", "2", "--threads", "1", "--json", str(out_file)])
    out = json.loads(out_file.read_text())
    fused, custom = (str(pruned_export_dir / f) for f in ("model.ort.onnx", "model.onnx"))
    assert out["agreement"][custom]["kept_lengths_equal"] is True
    assert out["agreement"][custom]["max_abs_logit_diff"] < 1e-4
    assert list(out["batch_1"]["graphs"]) == [fused, custom] and out["batch_1"]["inputs"] == 3
    assert out["batch_1"]["graphs"][fused]["speedup_vs_first_median_ratio"] == 1.0
    assert out["batch_32"]["inputs"] == 1 and all(g["mean_ms"] > 0 for g in out["batch_32"]["graphs"].values())

    # a graph whose logits differ (the classifier bias shifted) is refused, unless --no-check names it
    model = onnx.load(str(pruned_export_dir / "model.ort.onnx"))
    i, bias = next((i, t) for i, t in enumerate(model.graph.initializer) if t.name == "classifier.b")
    model.graph.initializer[i].CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(bias) + 1.0,
                                                                     "classifier.b"))
    shifted = tmp_path / "shifted.onnx"
    onnx.save(model, str(shifted))
    with pytest.raises(SystemExit, match="shifted.onnx disagrees with .*model.ort.onnx"):
        main([str(pruned_export_dir), "model.ort.onnx", str(shifted), "--data", sentiment_csv, "--texts", "2",
              "--batches", "0", "--repeats", "1", "--threads", "1"])
    main([str(pruned_export_dir), "model.ort.onnx", str(shifted), "--data", sentiment_csv, "--texts", "2",
          "--batches", "0", "--repeats", "1", "--threads", "1", "--no-check", "shifted.onnx",
          "--json", str(tmp_path / "unchecked.json")])
    assert "batch_32" not in json.loads((tmp_path / "unchecked.json").read_text())

    with pytest.raises(SystemExit, match="already exists"):
        main([str(pruned_export_dir), "model.ort.onnx", "--data", sentiment_csv, "--json", str(out_file)])
    with pytest.raises(SystemExit, match="graph model.x.onnx is neither a file nor a file of"):
        main([str(pruned_export_dir), "model.x.onnx", "--data", sentiment_csv])
    with pytest.raises(SystemExit, match="listed twice"):
        main([str(pruned_export_dir), "model.ort.onnx", fused, "--data", sentiment_csv])
    copy = tmp_path / "not_export"
    copy.mkdir()
    shutil.copy(pruned_export_dir / "model.ort.onnx", copy)
    with pytest.raises(SystemExit, match="is not an export folder"):
        main([str(copy), "model.ort.onnx", "--data", sentiment_csv])
