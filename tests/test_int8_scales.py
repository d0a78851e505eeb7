"""bench/int8_scales.py: the export's int8 graph quantized per tensor and per channel, scored and timed."""
import json

import pytest
from conftest import weight_scale_shapes

from adapler.bench.int8_scales import main, quantized_copy


def test_the_two_copies_differ_only_in_scale_granularity(pruned_export_dir, tmp_path):
    tensor = quantized_copy(pruned_export_dir, tmp_path / "t", per_channel=False)
    channel = quantized_copy(pruned_export_dir, tmp_path / "c", per_channel=True)
    t, c = (list(weight_scale_shapes(d / "model.ort.int8.onnx").values()) for d in (tensor, channel))
    assert len(t) == len(c) >= 8
    assert all(d == [] for d in t) and all(len(d) == 1 and d[0] > 1 for d in c)
    assert (pruned_export_dir / "model.ort.onnx").read_bytes() == (tensor / "model.ort.onnx").read_bytes()


def test_report_and_errors(pruned_export_dir, tmp_path, sentiment_csv):
    out_file = tmp_path / "scales.json"
    main([str(pruned_export_dir), "--data", sentiment_csv, "--texts", "3", "--batches", "1", "--repeats", "2",
          "--threads", "1", "--json", str(out_file)])
    out = json.loads(out_file.read_text())
    assert list(out["scales"]) == ["per-tensor", "per-channel"] and out["batch_1_inputs"] == 3
    t, c = out["scales"]["per-tensor"], out["scales"]["per-channel"]
    assert t["accuracy"]["accuracy_fp32"] == c["accuracy"]["accuracy_fp32"]  # the same fp32 graph
    for s in (t, c):
        assert 0 <= s["accuracy"]["argmax_agreement"] <= 1 and s["batch_1_ms"] > 0 and s["batch_32_ms"] > 0
    with pytest.raises(SystemExit, match="already exists"):
        main([str(pruned_export_dir), "--data", sentiment_csv, "--json", str(out_file)])
    with pytest.raises(SystemExit, match="is not an export folder"):
        main([str(tmp_path), "--data", sentiment_csv])
