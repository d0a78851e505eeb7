"""TensorRT bundles: ``write_trt_bundle`` (TRT-ready ONNX, plugin sources, lint, BUILD_ENGINE.md) and
``cli.py export --target trt`` (``write_trt_bundle_for_export``: export.json drives it)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

from adapler.checkpoint import save_checkpoint
from adapler.export.trt import TENSORRT_AVAILABLE, TENSORRT_UNAVAILABLE_REASON, write_trt_bundle, write_trt_bundle_for_export
from conftest import adapler_model, cli_subprocess, const, good_model, make_model, rules, tokendrop_function


def test_write_trt_bundle(tmp_path):
    src = good_model(functions=[tokendrop_function()])
    src_path = tmp_path / "model.custom.onnx"
    onnx.save(src, str(src_path))
    report = write_trt_bundle(src_path, tmp_path / "bundle", std_onnx_path=tmp_path / "model.std.onnx")
    b = tmp_path / "bundle"
    td = "plugin_src/plugins/token_drop/"
    for rel in ("model.trt.onnx", "lint.json", "BUILD_ENGINE.md", "bundle.json", td + "cuda/token_drop_kernel.cu",
                td + "cuda/token_drop_kernel.h", td + "cuda/compact.cuh", td + "trt/token_drop_plugin.cpp", td + "trt/token_drop_plugin.h",
                td + "trt/CMakeLists.txt", td + "trt/qdp.py", td + "gpu.py"):
        assert (b / rel).is_file(), rel
    assert report.trt_onnx == b / "model.trt.onnx" and report.lint_issues == [] and report.lint_errors == []
    assert report.fp16_trt_onnx is None and not (b / "lint.fp16.json").exists()
    assert json.loads((b / "lint.json").read_text()) == []
    assert len(onnx.load(str(report.trt_onnx)).functions) == 0
    doc = (b / "BUILD_ENGINE.md").read_text()
    for key in ("trtexec_build", "trtexec_build_trt10", "trtexec_build_trt10_fp16", "polygraphy_ort_compare_std"):
        assert report.commands[key] in doc, key
    assert "no fp16 ONNX in this bundle" in doc
    assert "cmake -S plugin_src/plugins/token_drop/trt" in doc
    # no ContributionDrop graph given: no CD files, sources or commands (tests/test_cd_export.py has them)
    assert report.cd_trt_onnx is None and not (b / "lint.cd.json").exists() and "This bundle has no ContributionDrop graph" in doc
    assert not (b / "plugin_src/plugins/contribution_drop").exists() and not any(k.startswith("cd_") for k in report.commands)
    assert "$" not in doc.split("## Lint")[0].replace("$ ", "")
    saved = json.loads((b / "bundle.json").read_text())
    assert saved["engine_built"] == report.engine_built
    if not TENSORRT_AVAILABLE:
        assert report.engine_built is False and report.engine_path is None
        assert report.engine_reason == TENSORRT_UNAVAILABLE_REASON
        assert "No engine was built" in doc and "Engine built" not in doc
        assert not list(b.glob("*.engine"))


def test_bundle_python_plugin_is_self_contained(tmp_path):
    """qdp.py and everything it imports load from the bundle alone (run from outside the repository)."""
    report = write_trt_bundle(_saved(tmp_path), tmp_path / "bundle")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import plugins.token_drop.trt.qdp as q, "
            "plugins.token_drop.gpu as g; print(q.__file__); print(g.__file__); print(q.PLUGIN_ID)")
    proc = subprocess.run([sys.executable, "-c", code, str(report.plugin_src)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    qdp_file, gpu_file, plugin_id = proc.stdout.split()
    assert Path(qdp_file).is_relative_to(report.plugin_src) and Path(gpu_file).is_relative_to(report.plugin_src)
    assert plugin_id == "adapler::TokenDrop"


def _saved(tmp_path) -> Path:
    path = tmp_path / "model.custom.onnx"
    onnx.save(good_model(), str(path))
    return path


def test_write_trt_bundle_reports_lint_errors(tmp_path):
    src_path = tmp_path / "bad.onnx"
    onnx.save(make_model([oh.make_node("Compress", ["x", "c"], ["y"], name="cmp")], [const("c", [True], np.bool_)]),
              str(src_path))
    report = write_trt_bundle(src_path, tmp_path / "b", build=True)
    assert rules(report.lint_errors) == ["unsupported-op"]
    assert report.engine_built is False
    assert "cmp" in (tmp_path / "b" / "BUILD_ENGINE.md").read_text()


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}


@pytest.mark.slow
def test_cli_trt_bundle_of_a_sentence_pair_export(tmp_path):
    """Real input names (token_type_ids), real file paths, and the fp16 ONNX in the bundle (2 layers are enough here)."""
    ckpt = save_checkpoint(adapler_model(2, eta=0.9, layers=2), tmp_path / "ckpt", label_names=["a", "b", "c"],
                           max_length=32, extra={"pair": True})
    out = tmp_path / "export"
    proc = cli_subprocess("export", ckpt, "--target", "trt", "--out", out, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model.fp16.trt.onnx" in proc.stdout and "model.cd.trt.onnx" in proc.stdout
    assert json.loads((out / "export.json").read_text())["files"]["cd"] == "model.cd.onnx"  # --target trt writes it
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
    # the ContributionDrop graph of a sentence-pair model: same inputs, a clean lint, both plugins in its command
    assert json.loads((out / "trt" / "lint.cd.json").read_text()) == []
    cd = onnx.load(str(out / "trt" / "model.cd.trt.onnx"))
    assert [i.name for i in cd.graph.input] == list(names)
    assert sum(n.op_type == "ContributionDrop" for n in cd.graph.node) == 2
    assert bundle["commands"]["cd_trtexec_build"].count("--staticPlugins=") == 2


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
