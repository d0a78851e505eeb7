"""model.cd.onnx: AdapLeR's selection as one adapler::ContributionDrop node per layer in the dynamo export (the
TensorRT-bound graph), from the torch op to the TensorRT bundle."""
import json
import shlex

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from adapler.checkpoint import save_checkpoint
from adapler.export.onnx import ExportError, export_graph, write_export_dir
from adapler.ops import contribution_drop, contribution_drop_form
from adapler.plugins.contribution_drop.make_golden import load_golden, random_cases
from adapler.plugins.contribution_drop.reference import contribution_drop_reference
from conftest import ROOT, adapler_model, ragged_batch, tiny_config

INPUTS = ("hidden", "cp_hidden", "w2", "mask", "eta")
OUTPUTS = ("hidden_c", "mask_c", "index")
ETA = (0.9, 0.8, 0.95, 0.7)  # one value per layer, so that every node must read its own layer's eta


def _model():
    model = adapler_model(2, eta=0.9)
    with torch.no_grad():
        model.selector.eta.copy_(torch.tensor(ETA))
    return model


def _op(arrays: dict) -> tuple[np.ndarray, ...]:
    out = contribution_drop(*(torch.from_numpy(arrays[k]) for k in INPUTS))
    return tuple(t.numpy() for t in out)


def _assert_same(got, want, what: str) -> None:
    for name, g, w in zip(OUTPUTS, got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, f"{what}/{name}: {g.dtype} {g.shape} != {w.dtype} {w.shape}"
        np.testing.assert_array_equal(g, w, err_msg=f"{what}/{name}")


# ------------------------------------------------------------------------------------------------ the torch op

@pytest.mark.parametrize("case", ["ragged", "batch1", "keep_all", "cls_only"])
def test_torch_op_matches_golden(case):
    """The op's CPU kernel gives the golden kept sets, hidden_c, mask_c and index exactly; an int32 mask
    changes only mask_c's type."""
    a = load_golden()[case]
    want = tuple(a[k] for k in OUTPUTS)
    _assert_same(_op(a), want, case)
    _assert_same(_op({**a, "mask": a["mask"].astype(np.int32)}), (want[0], want[1].astype(np.int32), want[2]),
                 case + "/int32")


def test_torch_op_matches_reference_on_random_batches():
    """Random ragged batches (scores away from the threshold, the spec's boundary note), both mask types."""
    for mask_dtype in (np.int64, np.int32):
        for i, a in enumerate(random_cases(15, seed=7, mask_dtype=mask_dtype, max_t=80)):
            _assert_same(_op(a), contribution_drop_reference(**a), f"{mask_dtype.__name__} case {i}")


def test_contribution_drop_form_matches_hard_mode_on_real_texts(tiny_bert_dir, sentiment_csv):
    """Inside contribution_drop_form() the model keeps the same tokens (lengths and positions per layer) and
    gives the same logits as its normal hard mode, on tokenised texts, padded together and one at a time."""
    from transformers import AutoTokenizer

    from adapler.data import encode, load_dataset
    model = _model()
    examples = load_dataset(sentiment_csv).test
    enc = encode(examples, AutoTokenizer.from_pretrained(str(tiny_bert_dir)), 32)
    batches = [(enc.input_ids, enc.attention_mask)] + [(enc.input_ids[i:i + 1, :int(enc.attention_mask[i].sum())],
                                                        enc.attention_mask[i:i + 1, :int(enc.attention_mask[i].sum())])
                                                       for i in range(3)]
    kept = []
    for ids, mask in batches:
        with torch.no_grad():
            hard = model(ids, mask, mode="hard", track_positions=True)
            with contribution_drop_form():
                cd = model(ids, mask, mode="hard", track_positions=True)
        assert torch.equal(cd.kept_lengths, hard.kept_lengths)
        assert all(torch.equal(a, b) for a, b in zip(cd.positions, hard.positions))
        assert (cd.logits - hard.logits).abs().max() <= 1e-5
        kept.append(hard.kept_lengths)
    assert len(set(enc.attention_mask.sum(1).tolist())) > 1  # a ragged batch
    assert kept[0].shape == (len(examples), 4) and kept[0][:, -1].sum() < enc.attention_mask.sum()  # tokens dropped


# ------------------------------------------------------------------------------------------------ model.cd.onnx

@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """write_export_dir(..., contribution_drop=True) of a 4-layer AdapLeR checkpoint: model.onnx + model.cd.onnx."""
    d = tmp_path_factory.mktemp("cd_export")
    ckpt = save_checkpoint(_model(), d / "ckpt", label_names=["a", "b", "c"], max_length=40)
    meta = write_export_dir(ckpt, d / "export", std=False, ort=False, contribution_drop=True)
    assert meta["files"] == {"custom": "model.onnx", "cd": "model.cd.onnx"}
    assert json.loads((d / "export" / "export.json").read_text())["files"]["cd"] == "model.cd.onnx"
    return d / "export"


def test_cd_graph_has_one_contribution_drop_per_layer(export_dir):
    graph = onnx.load(str(export_dir / "model.cd.onnx")).graph
    drops = [n for n in graph.node if n.op_type == "ContributionDrop"]
    assert len(drops) == 4 and all(n.domain == "adapler" for n in drops)
    assert not any(n.op_type == "TokenDrop" for n in graph.node)
    assert [n for n in graph.node if n.domain == "adapler"] == drops  # no other custom node
    for node in drops:
        assert {a.name: a.s.decode() for a in node.attribute} == {"plugin_namespace": "adapler", "plugin_version": "1"}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    # w2 and eta are weights (TensorRT gives the plugin constants); each layer reads its own eta
    assert all(n.input[2] in inits and n.input[4] in inits for n in drops)
    assert [float(inits[n.input[4]][0]) for n in drops] == pytest.approx(ETA)
    assert [o.name for o in graph.output] == ["logits", "kept_lengths"]
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]


@pytest.mark.parametrize("batch,length,seed", [(1, 12, 0), (6, 24, 1), (8, 40, 2)])
def test_cd_graph_on_ort_matches_model_onnx(export_dir, ort_library, batch, length, seed):
    """ONNX Runtime with the custom-op library: model.cd.onnx keeps the same lengths as model.onnx and torch,
    logits within 1e-4, on ragged batches (different lengths, right padding)."""
    from adapler.plugins.token_drop.ort_session import create_session
    ids, mask = ragged_batch(batch, length, seed)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    logits, kept = create_session(export_dir / "model.onnx", library=ort_library, threads=1).run(None, feed)
    cd_logits, cd_kept = create_session(export_dir / "model.cd.onnx", library=ort_library, threads=1).run(None, feed)
    np.testing.assert_array_equal(cd_kept, kept)
    assert np.abs(cd_logits - logits).max() <= 1e-4
    with torch.no_grad():
        ref = _model()(ids, mask, mode="hard")
    np.testing.assert_array_equal(cd_kept, ref.kept_lengths.numpy())
    assert np.abs(cd_logits - ref.logits.numpy()).max() <= 1e-4
    assert batch == 1 or (len(set(mask.sum(1).tolist())) > 1 and kept[:, -1].sum() < mask.sum())


def test_cd_graph_on_onnx_reference(export_dir):
    """onnx.reference with ContributionDrop as its NumPy reference runs model.cd.onnx without the C++ library."""
    from adapler.plugins.onnx_reference import reference_evaluator
    ids, mask = ragged_batch(4, 20, 3)
    logits, kept = reference_evaluator(export_dir / "model.cd.onnx").run(
        None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        ref = _model()(ids, mask, mode="hard")
    np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4


def test_schema_infers_the_outputs(export_dir):
    """The registered schema types every ContributionDrop output again ([B, <node>_L, D], mask_c of the mask's
    type), in the export and in a one-node graph with an int32 mask."""
    from adapler.plugins.contribution_drop.schema import register_onnx_schema
    register_onnx_schema()
    model = onnx.load(str(export_dir / "model.cd.onnx"))
    model.graph.ClearField("value_info")
    graph = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    info = {v.name: v.type.tensor_type for v in graph.value_info}
    for node in (n for n in graph.node if n.op_type == "ContributionDrop"):
        hidden_c, mask_c, index = (info[o] for o in node.output)
        assert [d.dim_param or d.dim_value for d in hidden_c.shape.dim][1:] == [f"{node.name}_L", 64]
        assert (hidden_c.elem_type, mask_c.elem_type, index.elem_type) == (TensorProto.FLOAT, TensorProto.INT64,
                                                                            TensorProto.INT64)
    vi = helper.make_tensor_value_info
    f32 = TensorProto.FLOAT
    one = helper.make_model(helper.make_graph(
        [helper.make_node("ContributionDrop", list(INPUTS), list(OUTPUTS), domain="adapler", name="cd0")], "g",
        [vi("hidden", f32, ["B", "T", 8]), vi("cp_hidden", f32, ["B", "T", 5]), vi("w2", f32, [5]),
         vi("mask", TensorProto.INT32, ["B", "T"]), vi("eta", f32, [1])], []),
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("adapler", 1)])
    inferred = onnx.shape_inference.infer_shapes(one, strict_mode=True).graph
    info = {v.name: v.type.tensor_type for v in inferred.value_info}
    assert info["mask_c"].elem_type == TensorProto.INT32 and info["index"].elem_type == TensorProto.INT64
    assert [d.dim_param or d.dim_value for d in info["hidden_c"].shape.dim] == ["B", "cd0_L", 8]


def test_schema_leaves_unknown_inputs_alone():
    """Once registered (every export registers it), the schema also runs on model.ort.onnx, where hidden comes
    from com.microsoft ops that ONNX inference cannot type (ORT's int8 quantizer runs that inference): no error,
    mask_c gets the int32 mask's type and hidden_c stays untyped."""
    from adapler.export.ort_graph import build_ort_graph
    from adapler.plugins.contribution_drop.schema import register_onnx_schema
    register_onnx_schema()
    graph = onnx.shape_inference.infer_shapes(build_ort_graph(_model())).graph
    info = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    drops = [n for n in graph.node if n.op_type == "ContributionDrop"]
    assert len(drops) == 4 and all(info[n.output[1]] == TensorProto.INT32 for n in drops)
    assert all(info[n.output[2]] == TensorProto.INT64 and n.output[0] not in info for n in drops)


def test_cd_graph_is_refused_where_it_does_not_exist(tmp_path):
    """Methods without the form, the dense model and std=True get one-line errors or a note, before any export."""
    from adapler.encoder import PrunedBertClassifier
    from adapler.selectors import build_selector
    cfg = tiny_config(layers=2)
    power = PrunedBertClassifier(cfg, 2, build_selector("power-bert", cfg, {"retention": [8, 4]}))
    with pytest.raises(ExportError, match="method 'power-bert' has no ContributionDrop form"):
        export_graph(power, tmp_path / "p.onnx", std=False, contribution_drop=True)
    with pytest.raises(ExportError, match="cannot be combined with std=True"):
        export_graph(_model(), tmp_path / "s.onnx", std=True, contribution_drop=True)
    dense = save_checkpoint(PrunedBertClassifier(cfg, 2), tmp_path / "dense", label_names=["a", "b"], max_length=16)
    meta = write_export_dir(dense, tmp_path / "out", custom=False, std=False, ort=False, allow_dense=True,
                            contribution_drop=True)
    assert meta["files"] == {} and meta["notes"] == [
        "no model.cd.onnx: method 'bert' has no ContributionDrop form; TensorRT uses model.onnx"]
    assert not list(tmp_path.glob("*.onnx"))


def test_fp16_cd_graph_keeps_w2_and_eta_float32(tmp_path):
    """The fp16 graph (TensorRT 11 is strongly typed: fp16 engines come from fp16 ONNX): float16 hidden states into
    every ContributionDrop, w2 and eta float32 initializers (the op's and its plugin's contract), each layer's own
    eta. No CPU runtime has a float16 ContributionDrop kernel, so only the graph is checked here."""
    graph = onnx.load(str(export_graph(_model(), tmp_path / "cd16.onnx", std=False, fp16=True,
                                       contribution_drop=True))).graph
    inits = {i.name: i for i in graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    drops = [n for n in graph.node if n.op_type == "ContributionDrop"]
    assert len(drops) == 4 and not any(n.op_type == "TokenDrop" for n in graph.node)
    for n in drops:
        assert types[n.input[0]] == types[n.input[1]] == TensorProto.FLOAT16 == types[n.output[0]]
        assert inits[n.input[2]].data_type == inits[n.input[4]].data_type == TensorProto.FLOAT
        assert types[n.input[3]] == TensorProto.INT64
    etas = [float(onnx.numpy_helper.to_array(inits[n.input[4]])[0]) for n in drops]
    assert etas == pytest.approx(ETA, abs=1e-3)  # fp16 rounding of the weights, then float32


# ------------------------------------------------------------------------------------------------ TensorRT bundle

def test_bundle_holds_the_cd_graph(export_dir, tmp_path):
    """model.cd.trt.onnx with plugin attributes and a clean lint of its own; both plugins' sources at their
    repository paths; BUILD_ENGINE.md builds the ContributionDrop plugin and loads both plugin libraries."""
    from adapler.export.trt import write_trt_bundle_for_export
    report = write_trt_bundle_for_export(export_dir, tmp_path / "trt", fp16=False)
    b = tmp_path / "trt"
    assert report.cd_trt_onnx == b / "model.cd.trt.onnx" and report.trt_onnx == b / "model.trt.onnx"
    assert report.lint_issues == [] and report.cd_lint_issues == [] and report.cd_lint_errors == []
    assert json.loads((b / "lint.cd.json").read_text()) == [] and json.loads((b / "lint.json").read_text()) == []
    cd = onnx.load(str(report.cd_trt_onnx))
    drops = [n for n in cd.graph.node if n.op_type == "ContributionDrop"]
    assert len(drops) == 4 and not cd.functions and not any(n.op_type == "TokenDrop" for n in cd.graph.node)
    assert all({a.name: a.s.decode() for a in n.attribute} == {"plugin_namespace": "adapler", "plugin_version": "1"}
               for n in drops)
    main = onnx.load(str(report.trt_onnx)).graph
    assert sum(n.op_type == "TokenDrop" for n in main.node) == 4  # model.trt.onnx as before

    src, dst = ROOT / "plugins", b / "plugin_src" / "plugins"
    for sub in ("contribution_drop/cuda", "contribution_drop/trt", "token_drop/cuda", "token_drop/trt"):
        want = {p.relative_to(src / sub) for p in (src / sub).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                and p.suffix not in (".so", ".pyc") and not p.name.endswith(".template.md")}
        assert {p.relative_to(dst / sub) for p in (dst / sub).rglob("*") if p.is_file()} == want, sub
    assert (dst / "contribution_drop/trt/CMakeLists.txt").is_file()  # what the cmake command of BUILD_ENGINE.md reads
    assert (dst / "token_drop/trt/plugin_common.h").is_file() and (dst / "token_drop/cuda/architectures.txt").is_file()
    assert (dst / "contribution_drop/cuda/contribution_drop_kernel.cu").is_file()
    assert (dst / "token_drop/cuda/compact.cuh").is_file()

    td_lib, cd_lib = (b / "plugin_src/build/libadapler_token_drop_trt.so",
                      b / "plugin_src/build_cd/libadapler_contribution_drop_trt.so")
    build = shlex.split(report.commands["cd_trtexec_build"])
    assert f"--onnx={report.cd_trt_onnx}" in build and f"--saveEngine={b / 'model.cd.engine'}" in build
    statics = [a for a in build if a.startswith("--staticPlugins=")]
    assert statics == [f"--staticPlugins={td_lib}", f"--staticPlugins={cd_lib}"]
    dyn = shlex.split(report.commands["cd_trtexec_build_serialized_plugin"])
    assert f"--dynamicPlugins={cd_lib.with_name('libadapler_contribution_drop_trt_dyn.so')}" in dyn
    assert f"--dynamicPlugins={td_lib.with_name('libadapler_token_drop_trt_dyn.so')}" in dyn
    assert f"--saveEngine={b / 'model.engine'}" in shlex.split(report.commands["trtexec_build"])  # no collision
    doc = (b / "BUILD_ENGINE.md").read_text()
    assert "cmake -S plugin_src/plugins/contribution_drop/trt -B plugin_src/build_cd" in doc
    assert "cmake --build plugin_src/build_cd -j" in doc
    for key in ("cd_trtexec_build", "cd_trtexec_build_trt10", "cd_trtexec_benchmark", "trtexec_build"):
        assert report.commands[key] in doc, key
    assert "libadapler_token_drop_trt.so" in doc and "libadapler_contribution_drop_trt.so" in doc
    assert "Not run anywhere yet" in doc and "`model.cd.trt.onnx` (`lint.cd.json`)" in doc
    assert "$" not in doc.split("## Lint")[0].replace("$ ", "")
    saved = json.loads((b / "bundle.json").read_text())
    assert saved["cd_trt_onnx"] == str(report.cd_trt_onnx) and saved["cd_lint_issues"] == []
    assert report.cd_fp16_trt_onnx is None and "cd_trtexec_build_fp16" not in report.commands


def test_bundle_with_fp16_holds_the_fp16_cd_graph(export_dir, tmp_path):
    """fp16=True (the CLI's default) adds model.cd.fp16.trt.onnx, its fp16 lint and the strongly typed fp16 build."""
    from adapler.export.trt import write_trt_bundle_for_export
    b = tmp_path / "trt"
    report = write_trt_bundle_for_export(export_dir, b, fp16=True)
    assert report.cd_fp16_trt_onnx == b / "model.cd.fp16.trt.onnx" and report.cd_fp16_lint_issues == []
    assert json.loads((b / "lint.cd.fp16.json").read_text()) == []
    g = onnx.load(str(report.cd_fp16_trt_onnx)).graph
    assert sum(n.op_type == "ContributionDrop" for n in g.node) == 4
    build = shlex.split(report.commands["cd_trtexec_build_fp16"])
    assert f"--onnx={report.cd_fp16_trt_onnx}" in build and f"--saveEngine={b / 'model.cd.fp16.engine'}" in build
    assert len([a for a in build if a.startswith("--staticPlugins=")]) == 2
    doc = (b / "BUILD_ENGINE.md").read_text()
    assert report.commands["cd_trtexec_build_fp16"] in doc and "`model.cd.fp16.trt.onnx`" in doc


def test_trt_commands_load_several_plugin_libraries(tmp_path):
    from adapler.export.trt import trt_commands
    libs = [tmp_path / "a/libadapler_token_drop_trt.so", tmp_path / "b/libadapler_contribution_drop_trt.so"]
    cmds = trt_commands(tmp_path / "model.cd.trt.onnx", tmp_path, (1, 8), (1, 16), (2, 32), libs)
    pg = shlex.split(cmds["polygraphy_run"])
    i = pg.index("--plugins")
    assert pg[i + 1:i + 3] == [str(lib) for lib in libs]
    assert f"--loadEngine={tmp_path / 'model.cd.engine'}" in shlex.split(cmds["trtexec_benchmark"])
    assert shlex.split(cmds["trtexec_benchmark"]).count(f"--staticPlugins={libs[1]}") == 1
    assert str(tmp_path / "trt_outputs.cd.json") in cmds["polygraphy_trt_save"]


def test_lint_checks_contribution_drop_attributes():
    from adapler.export.trt import lint_for_tensorrt
    from conftest import make_model, rules
    node = helper.make_node("ContributionDrop", ["x", "x", "w2", "mask", "eta"], ["y", "m", "i"], domain="adapler",
                            name="cd0")
    inits = [onnx.numpy_helper.from_array(np.ones(8, np.float32), "w2"),
             onnx.numpy_helper.from_array(np.ones(1, np.float32), "eta")]
    issues = lint_for_tensorrt(make_model([node], inits))
    assert rules(issues) == ["plugin-attrs", "plugin-attrs"] and "ContributionDrop attribute" in issues[0].message
