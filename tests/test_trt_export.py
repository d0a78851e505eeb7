"""`cli.py export --target trt`: the TensorRT bundle of an export directory (export.json drives it)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto as TP

from adapler.checkpoint import save_checkpoint
from export.trt import write_trt_bundle_for_export
from test_encoder import adapler_model
from test_trt import good_model

ROOT = Path(__file__).resolve().parents[1]


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}


@pytest.mark.slow
def test_cli_trt_bundle_of_a_sentence_pair_export(tmp_path):
    """Real input names (token_type_ids), real file paths, and the fp16 ONNX in the bundle."""
    ckpt = save_checkpoint(adapler_model(2, eta=0.9), tmp_path / "ckpt", label_names=["a", "b", "c"], max_length=32,
                           extra={"pair": True})
    out = tmp_path / "export"
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "export", str(ckpt), "--target", "trt", "--out",
                           str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={"ADAPLER_QUIET": "1", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                               "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model.fp16.trt.onnx" in proc.stdout
    bundle = json.loads((out / "trt" / "bundle.json").read_text())
    build = shlex.split(bundle["commands"]["trtexec_build"])
    names = ("input_ids", "attention_mask", "token_type_ids")
    assert f"--minShapes={','.join(f'{n}:1x2' for n in names)}" in build
    assert f"--maxShapes={','.join(f'{n}:8x32' for n in names)}" in build  # export.json max_length
    doc = (out / "trt" / "BUILD_ENGINE.md").read_text()
    std = str(out / "model.std.onnx")
    assert std in bundle["commands"]["polygraphy_ort_compare_std"] and std in doc and "MODEL.std.onnx" not in doc
    assert "--val-range 'input_ids:[0,999]' 'attention_mask:[1,1]' 'token_type_ids:[0,0]'" in doc
    assert bundle["commands"]["trtexec_build_fp16"] in doc
    assert json.loads((out / "trt" / "lint.json").read_text()) == []
    assert json.loads((out / "trt" / "lint.fp16.json").read_text()) == []  # fp16 rule: it has fp16 tensors
    fp16 = onnx.load(str(out / "trt" / "model.fp16.trt.onnx"))
    assert [i.name for i in fp16.graph.input] == list(names) and not fp16.functions
    types = _types(fp16)
    drops = [n for n in fp16.graph.node if n.op_type == "TokenDrop"]
    assert drops and all({a.name for a in n.attribute} >= {"plugin_namespace", "plugin_version"} for n in drops)
    for node in drops:  # what the plugin accepts: hidden fp16, scores/threshold fp32, mask int64
        assert [types.get(i) for i in node.input] == [TP.FLOAT16, TP.FLOAT, TP.INT64, TP.FLOAT], node.name
    assert types["logits"] == TP.FLOAT16


def test_bundle_for_export_reads_export_json(tmp_path):
    exp = tmp_path / "export"
    exp.mkdir()
    onnx.save(good_model(), str(exp / "model.onnx"))
    (exp / "export.json").write_text(json.dumps({"inputs": ["x", "scores", "mask"], "max_length": 64,
                                                 "files": {"custom": "model.onnx", "std": "model.std.onnx"}}))
    report = write_trt_bundle_for_export(exp, fp16=False)
    assert report.out_dir == exp / "trt" and report.fp16_trt_onnx is None
    build = shlex.split(report.commands["trtexec_build"])
    assert "--optShapes=x:1x64,scores:1x64,mask:1x64" in build and "--maxShapes=x:8x64,scores:8x64,mask:8x64" in build
    assert str(exp / "model.std.onnx") in report.commands["polygraphy_ort_compare_std"]
    # an export that is already fp16 is its own fp16 ONNX (no second export, no checkpoint needed)
    onnx.save(good_model(fp16=True), str(exp / "model.onnx"))
    report = write_trt_bundle_for_export(exp, tmp_path / "b16")
    assert report.fp16_trt_onnx == tmp_path / "b16" / "model.fp16.trt.onnx" and report.fp16_lint_issues == []


def test_bundle_for_export_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="export.json not found"):
        write_trt_bundle_for_export(tmp_path)
    (tmp_path / "export.json").write_text(json.dumps({"files": {"std": "model.std.onnx"}}))
    with pytest.raises(FileNotFoundError, match="no custom-op ONNX"):
        write_trt_bundle_for_export(tmp_path)
    onnx.save(good_model(), str(tmp_path / "model.onnx"))
    (tmp_path / "export.json").write_text(json.dumps({"files": {"custom": "model.onnx"},
                                                      "source_checkpoint": str(tmp_path / "gone")}))
    with pytest.raises(FileNotFoundError, match="source checkpoint .* no longer exists"):
        write_trt_bundle_for_export(tmp_path)
