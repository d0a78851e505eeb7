"""TensorRT preparation: static lint, TRT-ready ONNX, commands, TensorRT availability.

Bundles: test_trt_bundle.py; the Python plugin against tensorrt.plugin: test_trt_qdp.py; the C++ plugin
against real TensorRT headers: test_trt_plugin_build.py. Everything except the tests marked "TensorRT only"
runs on a CPU-only machine without TensorRT; those skip with TENSORRT_UNAVAILABLE_REASON there.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper as oh

from adapler.export.trt import (
    SUPPORTED_ONNX_OPS,
    TENSORRT_AVAILABLE,
    TENSORRT_UNAVAILABLE_REASON,
    UNSUPPORTED_ONNX_OPS,
    TensorRTUnavailable,
    build_engine,
    compare_with_ort,
    lint_for_tensorrt,
    prepare_trt_onnx,
    trt_commands,
)
from conftest import const, good_model, make_model, rules, token_drop_node, tokendrop_function
from adapler.plugins.token_drop.trt import qdp

needs_trt = pytest.mark.skipif(not TENSORRT_AVAILABLE, reason=TENSORRT_UNAVAILABLE_REASON)
without_trt = pytest.mark.skipif(TENSORRT_AVAILABLE, reason="TensorRT is installed: unavailability path not testable")


# ------------------------------------------------------------------------------------------------
# op tables and lint
# ------------------------------------------------------------------------------------------------
def test_op_tables_are_disjoint():
    """A transcription slip (an op in both the Y and N rows) would make the lint contradict itself."""
    assert SUPPORTED_ONNX_OPS and UNSUPPORTED_ONNX_OPS and not SUPPORTED_ONNX_OPS & UNSUPPORTED_ONNX_OPS


def test_good_graph_passes(tmp_path):
    model = good_model()
    onnx.checker.check_model(model)  # also a valid ONNX graph (custom domain op aside)
    assert lint_for_tensorrt(model) == []
    path = tmp_path / "good.onnx"
    onnx.save(model, str(path))
    assert lint_for_tensorrt(path) == [] and lint_for_tensorrt(str(path)) == []


@pytest.mark.parametrize("op", ["Compress", "Unique"])
def test_unsupported_ops_flagged(op):
    inputs = ["x", "cond"] if op == "Compress" else ["x"]
    model = make_model([oh.make_node(op, inputs, ["y"], name="bad")], [const("cond", [True, False], np.bool_)])
    issues = lint_for_tensorrt(model)
    assert rules(issues) == ["unsupported-op"] and issues[0].op_type == op and issues[0].node == "bad"


def test_unknown_op_and_foreign_domain_flagged():
    model = make_model([oh.make_node("FancyOp", ["x"], ["z"], name="f"),
                        oh.make_node("SkipLayerNormalization", ["x", "x"], ["y"], domain="com.microsoft", name="s")])
    assert rules(lint_for_tensorrt(model)) == ["unknown-op", "domain"]


def test_missing_and_wrong_plugin_attributes():
    issues = lint_for_tensorrt(make_model([token_drop_node(attrs={}, out="y")], [const("thr", [0.5], np.float32)]))
    assert rules(issues) == ["plugin-attrs", "plugin-attrs"]
    assert {i.op_type for i in issues} == {"TokenDrop"} and "plugin_namespace" in issues[0].message
    wrong = token_drop_node(attrs={"plugin_namespace": "adapler", "plugin_version": "2"}, out="y")
    issues = lint_for_tensorrt(make_model([wrong], [const("thr", [0.5], np.float32)]))
    assert rules(issues) == ["plugin-attrs"] and "plugin_version" in issues[0].message


def test_local_function_tokendrop_flagged():
    model = good_model(functions=[tokendrop_function()])
    assert rules(lint_for_tensorrt(model)) == ["local-function"]


def test_non_constant_axes_flagged():
    nodes = [oh.make_node("Shape", ["mask"], ["dyn_axes"], name="shape", start=1),
             oh.make_node("ReduceSum", ["x", "dyn_axes"], ["r"], name="rsum"),
             oh.make_node("Slice", ["x", "starts", "ends", "scores_axes"], ["s"], name="slice"),
             oh.make_node("CumSum", ["x", "dyn_axes"], ["c"], name="cumsum"),
             oh.make_node("Unsqueeze", ["x", "dyn_axes"], ["y"], name="unsq")]
    model = make_model(nodes, [const("starts", [0]), const("ends", [2])])
    model.graph.input.append(oh.make_tensor_value_info("scores_axes", TP.INT64, [1]))
    issues = lint_for_tensorrt(model)
    assert rules(issues) == ["constant-axes"] * 4
    assert [i.node for i in issues] == ["rsum", "slice", "cumsum", "unsq"]


def test_ir_version_11_flagged():
    issues = lint_for_tensorrt(good_model(ir_version=11))
    assert rules(issues) == ["ir-version"] and "11" in issues[0].message


def test_topk_rules():
    def topk(k, **attrs):
        return make_model([oh.make_node("TopK", ["scores", "k"], ["y", "i"], name="topk", **attrs)], [const("k", [k])])

    assert lint_for_tensorrt(topk(16)) == []
    assert rules(lint_for_tensorrt(topk(16, sorted=0))) == ["topk-sorted"]
    assert rules(lint_for_tensorrt(topk(4000))) == ["topk-k"]
    runtime_k = make_model([oh.make_node("ReduceMax", ["mask"], ["k"], name="rmax", keepdims=1),
                            oh.make_node("TopK", ["scores", "k"], ["y", "i"], name="topk")])
    assert lint_for_tensorrt(runtime_k) == []  # K may be a runtime tensor (TensorRT 10.x)


def test_fp16_requested():
    assert rules(lint_for_tensorrt(good_model(), fp16=True)) == ["fp16"]
    assert lint_for_tensorrt(good_model(fp16=True), fp16=True) == []


def test_subgraphs_are_linted():
    then_g = oh.make_graph([oh.make_node("Unique", ["x"], ["u"], name="inner")], "then", [],
                           [oh.make_tensor_value_info("u", TP.FLOAT, None)])
    else_g = oh.make_graph([oh.make_node("Identity", ["x"], ["e"])], "else", [],
                           [oh.make_tensor_value_info("e", TP.FLOAT, None)])
    model = make_model([oh.make_node("If", ["cond"], ["y"], name="if", then_branch=then_g, else_branch=else_g)],
                       [const("cond", True, np.bool_)])
    issues = lint_for_tensorrt(model)
    assert rules(issues) == ["unsupported-op"] and issues[0].node == "inner"


# ------------------------------------------------------------------------------------------------
# prepare_trt_onnx
# ------------------------------------------------------------------------------------------------
def test_prepare_fixes_attributes_and_strips_function(tmp_path):
    src = good_model(functions=[tokendrop_function()])
    del src.graph.node[0].attribute[:]
    src.graph.node[0].attribute.extend([oh.make_attribute("plugin_version", "7")])
    src_path = tmp_path / "model.custom.onnx"
    onnx.save(src, str(src_path))
    assert set(rules(lint_for_tensorrt(src_path))) == {"plugin-attrs", "local-function"}

    prepared = prepare_trt_onnx(src_path, tmp_path / "out" / "model.trt.onnx")
    assert prepared.token_drop_nodes == 1 and prepared.attributes_fixed == 2
    assert prepared.functions_removed == ["adapler.TokenDrop"]
    out = onnx.load(str(prepared.path))
    assert len(out.functions) == 0
    node = out.graph.node[0]
    assert {a.name: a.s.decode() for a in node.attribute} == {"plugin_namespace": "adapler", "plugin_version": "1"}
    assert lint_for_tensorrt(out) == []
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in src.graph.node]
    assert len(onnx.load(str(src_path)).functions) == 1  # source untouched


def test_prepare_keeps_other_functions_and_accepts_model_proto(tmp_path):
    other = oh.make_function("adapler", "Helper", ["a"], ["b"], [oh.make_node("Identity", ["a"], ["b"])],
                             [oh.make_opsetid("", 18)])
    prepared = prepare_trt_onnx(good_model(functions=[other, tokendrop_function()]), tmp_path / "m.onnx")
    assert [f.name for f in onnx.load(str(prepared.path)).functions] == ["Helper"]
    assert prepared.attributes_fixed == 0


# ------------------------------------------------------------------------------------------------
# commands
# ------------------------------------------------------------------------------------------------
def test_trt_commands_shapes_and_plugins(tmp_path):
    lib = tmp_path / "build" / "libadapler_token_drop_trt.so"
    cmds = trt_commands(tmp_path / "model.trt.onnx", tmp_path, (1, 8), (4, 128), (8, 512), lib)
    build = cmds["trtexec_build"]
    for flag in (f"--onnx={tmp_path / 'model.trt.onnx'}", f"--saveEngine={tmp_path / 'model.engine'}",
                 "--minShapes=input_ids:1x8,attention_mask:1x8", "--optShapes=input_ids:4x128,attention_mask:4x128",
                 "--maxShapes=input_ids:8x512,attention_mask:8x512", f"--staticPlugins={lib}", "--skipInference"):
        assert flag in shlex.split(build), flag
    # TensorRT 11: always strongly typed (the flag is ignored), no --fp16; precision comes from the ONNX
    assert "--fp16" not in build and "--stronglyTyped" not in build and "trtexec_build_fp16" not in cmds
    # TensorRT 10.3: strongly typed on request, or weakly typed with --fp16 on the fp32 ONNX
    trt10 = shlex.split(cmds["trtexec_build_trt10"])
    assert "--stronglyTyped" in trt10 and f"--onnx={tmp_path / 'model.trt.onnx'}" in trt10
    trt10_fp16 = shlex.split(cmds["trtexec_build_trt10_fp16"])
    assert "--fp16" in trt10_fp16 and f"--saveEngine={tmp_path / 'model.fp16.engine'}" in trt10_fp16
    fp16 = shlex.split(trt_commands(tmp_path / "model.trt.onnx", tmp_path, (1, 8), (4, 128), (8, 512), lib,
                                    fp16_onnx_path=tmp_path / "model.fp16.trt.onnx")["trtexec_build_fp16"])
    assert f"--onnx={tmp_path / 'model.fp16.trt.onnx'}" in fp16 and "--fp16" not in fp16
    assert f"--saveEngine={tmp_path / 'model.fp16.engine'}" in fp16
    dyn = shlex.split(cmds["trtexec_build_serialized_plugin"])
    assert f"--dynamicPlugins={lib.with_name('libadapler_token_drop_trt_dyn.so')}" in dyn
    assert f"--setPluginsToSerialize={lib.with_name('libadapler_token_drop_trt_dyn.so')}" in dyn
    pg = shlex.split(cmds["polygraphy_run"])
    assert pg[:3] == ["polygraphy", "run", str(tmp_path / "model.trt.onnx")]
    assert {"--trt", "--onnxrt", "--strongly-typed"} <= set(pg)
    i = pg.index("--trt-min-shapes")
    assert pg[i + 1:i + 3] == ["input_ids:[1,8]", "attention_mask:[1,8]"]
    assert pg[pg.index("--plugins") + 1] == str(lib)
    assert "polygraphy_ort_compare_std" not in cmds
    with_std = trt_commands(tmp_path / "m.onnx", tmp_path, {"ids": (1, 4)}, {"ids": (2, 4)}, {"ids": (3, 4)},
                            std_onnx_path=tmp_path / "m.std.onnx")
    assert "--minShapes=ids:1x4" in with_std["trtexec_build"] and "--staticPlugins" not in with_std["trtexec_build"]
    assert str(tmp_path / "m.std.onnx") in with_std["polygraphy_ort_compare_std"]


@pytest.mark.skipif(shutil.which("polygraphy") is None and not (Path(sys.executable).parent / "polygraphy").exists(),
                    reason="polygraphy CLI not found")
@pytest.mark.parametrize("key", ["polygraphy_run", "polygraphy_trt_save"])
def test_polygraphy_commands_parse(tmp_path, key):
    """The Polygraphy CLI accepts the generated command lines (--gen-script: parse and emit, run nothing)."""
    model_path = tmp_path / "model.trt.onnx"
    onnx.save(good_model(), str(model_path))
    lib = tmp_path / "libadapler_token_drop_trt.so"
    lib.write_bytes(b"")
    cmd = shlex.split(trt_commands(model_path, tmp_path, (1, 8), (1, 16), (2, 32), lib)[key])
    exe = shutil.which("polygraphy") or str(Path(sys.executable).parent / "polygraphy")
    proc = subprocess.run([exe] + cmd[1:] + ["--gen-script", str(tmp_path / "gen.py")], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    script = (tmp_path / "gen.py").read_text()
    assert "LoadPlugins" in script and "strongly_typed=True" in script
    assert "Profile().add('input_ids', min=[1, 8], opt=[1, 16], max=[2, 32])" in script


# ------------------------------------------------------------------------------------------------
# TensorRT availability
# ------------------------------------------------------------------------------------------------
def test_qdp_module_imports_without_tensorrt():
    assert isinstance(qdp.TENSORRT_AVAILABLE, bool)
    if qdp.TENSORRT_AVAILABLE:
        assert qdp.TENSORRT_UNAVAILABLE_REASON == ""
    else:
        assert qdp.TENSORRT_UNAVAILABLE_REASON == (
            "TensorRT not installed: full TensorRT (libnvinfer, ONNX parser, builder) is not available from "
            "PyPI/Debian here — the PyPI packages are download stubs; install TensorRT from NVIDIA to run this.")
        assert TENSORRT_UNAVAILABLE_REASON == qdp.TENSORRT_UNAVAILABLE_REASON


@without_trt
def test_tensorrt_functions_raise_when_missing(tmp_path):
    with pytest.raises(RuntimeError, match="TensorRT not installed"):
        qdp.register_qdp()
    with pytest.raises(TensorRTUnavailable, match="TensorRT not installed"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", [{"input_ids": ((1, 8), (1, 8), (1, 8))}])
    with pytest.raises(TensorRTUnavailable):
        compare_with_ort(tmp_path / "m.engine", tmp_path / "m.onnx", {})


# ------------------------------------------------------------------------------------------------
# TensorRT only
# ------------------------------------------------------------------------------------------------
@needs_trt
def test_engine_with_qdp_matches_golden(tmp_path):
    """TensorRT only: a one-node TokenDrop engine through the Python plugin on the golden cases (float32)."""
    import torch

    from conftest import (TOKEN_DROP_CASES, TOKEN_DROP_INPUTS, TOKEN_DROP_OUTPUTS, assert_token_drop_outputs,
                          token_drop_inputs, token_drop_onnx_model)

    if not torch.cuda.is_available():
        pytest.skip("TensorRT is installed but no CUDA GPU is visible")
    path = tmp_path / "td.onnx"
    onnx.save(token_drop_onnx_model(np.float32), str(path))
    cases = [c for c in TOKEN_DROP_CASES if token_drop_inputs(c)[0].dtype == np.float32]
    biggest = np.max([token_drop_inputs(c)[0].shape for c in cases], axis=0).tolist()
    b, t, d = biggest
    shapes = {"hidden": ((1, 1, 1), (b, t, d), (b, t, d)), "scores": ((1, 1), (b, t), (b, t)),
              "mask": ((1, 1), (b, t), (b, t)), "threshold": ((1,), (b,), (b,))}
    engine = build_engine(path, tmp_path / "td.engine", [shapes])
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    with TrtRunner(EngineFromBytes(BytesFromPath(str(engine)))) as runner:
        for case in cases:
            out = runner.infer(dict(zip(TOKEN_DROP_INPUTS, token_drop_inputs(case))))
            assert_token_drop_outputs([np.asarray(out[n]) for n in TOKEN_DROP_OUTPUTS], case)
