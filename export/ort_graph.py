"""The ONNX Runtime deploy graph: ``model.ort.onnx``, built node by node from the checkpoint's weights.

The dynamo export (``model.onnx``) is portable (standard ops + TokenDrop, what TensorRT reads), but it
spends ~25 small nodes per AdapLeR drop point and none of ONNX Runtime's fused kernels: ORT's
transformer optimizer does not recognise its layers and cannot run on TokenDrop graphs at all. A user
deploying the dense model on ONNX Runtime gets those fusions for free, so a pruned model that lacks
them starts behind. This module writes the graph ORT's optimizer would produce for a BERT-family encoder
(``com.microsoft`` EmbedLayerNormalization, Attention with packed QKV, SkipLayerNormalization,
BiasGelu) and puts AdapLeR's whole selection into one ``adapler::ContributionDrop`` node per layer:

    per layer:  [MatMul -> BiasGelu -> ContributionDrop]   (AdapLeR only: CP hidden layer, selection; int32 mask)
                Attention -> MatMul -> SkipLayerNormalization -> MatMul -> BiasGelu -> MatMul -> SkipLayerNormalization

Inputs and outputs are those of ``model.onnx`` (``logits``, ``kept_lengths``), so every runtime helper
works on either file. Each ContributionDrop's optional fourth output is its layer's kept lengths, which
``kept_lengths`` concatenates: no per-layer count node (at batch 1 a node costs a few microseconds whatever it
computes). The CP's output bias is left out: the masked softmax is shift-invariant.
Graphs with com.microsoft ops run on ONNX Runtime only; TensorRT uses ``model.onnx``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from adapler.encoder import PrunedBertClassifier

MS = "com.microsoft"
IR_VERSION = 8  # ORT 1.20+ reads it; onnx's default (IR 14) is newer than ORT accepts
OPSET = 17


class UnsupportedForOrtGraph(ValueError):
    """The checkpoint's method or activation has no fused ORT form (one line, names the alternative)."""


def _act_node(act: str, x: str, bias: str, out: str, name: str) -> list[onnx.NodeProto]:
    if act == "gelu":  # erf GELU, as transformers' "gelu"
        return [helper.make_node("BiasGelu", [x, bias], [out], name=name, domain=MS)]
    if act in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):  # tanh approximation
        return [helper.make_node("FastGelu", [x, bias], [out], name=name, domain=MS)]
    if act == "relu":
        return [helper.make_node("Add", [x, bias], [out + "_pre"], name=name + "_add"),
                helper.make_node("Relu", [out + "_pre"], [out], name=name)]
    raise UnsupportedForOrtGraph(f"activation {act!r} has no fused ORT form; use model.onnx instead")


class _Graph:
    """Nodes and initializers of one graph under construction."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, name: str, value) -> str:
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        self.inits.append(numpy_helper.from_array(np.array(arr, order="C"), name))  # keeps rank 0 (ascontiguousarray would not)
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], name: str, domain: str = "", **attrs) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))


def _selection(model: PrunedBertClassifier):
    """Per-layer CP weights ``(W1^T, b1, w2, eta, act)`` of a ContributionDrop selection, None for a model that
    drops nothing. Whether a method has this graph is the method registry's (``Method.fused_ort_graph``)."""
    from adapler import methods
    from adapler.selectors.contribution import ContributionSelector
    method = methods.get(model.method)
    if not method.fused_ort_graph:
        raise UnsupportedForOrtGraph(method.export_note())
    if not method.prunes:
        return None
    sel = model.selector
    if not isinstance(sel, ContributionSelector):  # the one selection this graph writes: CP + threshold
        raise UnsupportedForOrtGraph(f"method {model.method!r} claims a fused ORT graph but its selector "
                                     f"{type(sel).__name__} is not a ContributionSelector; use model.onnx")
    return [(cp.fc1.weight.T, cp.fc1.bias, cp.fc2.weight[0], sel.eta[i:i + 1], sel.act_name)
            for i, cp in enumerate(sel.cps)]


def _head_act_node(act: str | None, x: str, name: str) -> list[onnx.NodeProto]:
    """The activation after a head layer (its bias is already in the Gemm)."""
    if act is None:
        return []
    ops = {"tanh": ("Tanh", ""), "relu": ("Relu", ""), "gelu": ("Gelu", MS)}
    if act not in ops:
        raise UnsupportedForOrtGraph(f"head activation {act!r} has no ORT form here; use model.onnx instead")
    op, domain = ops[act]
    return [helper.make_node(op, [x], [name], name=name, domain=domain)]


def _embedding_nodes(g: _Graph, model: PrunedBertClassifier, token_types: bool) -> None:
    """EmbedLayerNormalization (+ ELECTRA's projection) from ``ids32``, ``types32`` and ``mask32_in`` to ``h0``."""
    emb = model.backbone.embedding_tables(model.bert)
    if token_types and emb.token_type is not None:
        g.node("Cast", ["token_type_ids"], ["types32"], "cast_types", to=TensorProto.INT32)
        seg = ["types32"]
        pos_table = emb.position
        seg_w = [g.const("emb.token_type", emb.token_type)]
    else:  # token type 0 everywhere (or none): fold its row into the position table
        seg, seg_w = [""], [""]
        pos_table = emb.position + emb.token_type[0] if emb.token_type is not None else emb.position
    g.node("EmbedLayerNormalization",
           ["ids32", *seg, g.const("emb.word", emb.word), g.const("emb.position", pos_table),
            *seg_w, g.const("emb.ln.gamma", emb.norm.weight), g.const("emb.ln.beta", emb.norm.bias),
            "mask32_in"], ["h0" if emb.project is None else "e0", "emb_mask_index"], "embed", domain=MS,
           epsilon=float(emb.norm.eps))
    if emb.project is not None:  # ELECTRA: embedding_size -> hidden_size
        g.node("MatMul", ["e0", g.const("emb.project.w", emb.project.weight.T)], ["e0p"], "emb_project")
        g.node("Add", ["e0p", g.const("emb.project.b", emb.project.bias)], ["h0"], "emb_project_bias")


def _head_nodes(g: _Graph, model: PrunedBertClassifier, x: str) -> None:
    """The family's head from the first token's hidden state ``x`` [B, D] to ``logits``."""
    head = model.backbone.head_layers(model)
    for j, (linear, act) in enumerate(head):
        name = "classifier" if j == len(head) - 1 else f"head{j}"
        out = "logits" if j == len(head) - 1 else name + "_pre"
        g.node("Gemm", [x, g.const(name + ".w", linear.weight), g.const(name + ".b", linear.bias)], [out], name, transB=1)
        g.nodes += _head_act_node(act, out, name + "_act")
        x = name + "_act" if act else out


def _after_attention(g: _Graph, layer, p: str, hidden: str) -> str:
    """A layer's nodes from its attention context ``p + "ctx"`` (rows as in ``hidden``, the layer's input) to its
    output: output projection, SkipLayerNorm, FFN, SkipLayerNorm; returns the output's name (``p + "h2"``).
    The node names (``p + "ao.matmul"``, ``p + "ffn.matmul1"``, ...) are what int8 node lists refer to."""
    g.node("MatMul", [p + "ctx", g.const(p + "ao.w", layer.o.weight.T)], [p + "ao"], p + "ao.matmul")
    g.node("SkipLayerNormalization", [p + "ao", hidden, g.const(p + "ln1.gamma", layer.ln1.weight),
                                      g.const(p + "ln1.beta", layer.ln1.bias), g.const(p + "ao.b", layer.o.bias)],
           [p + "h1"], p + "ln1", domain=MS, epsilon=float(layer.ln1.eps))
    g.node("MatMul", [p + "h1", g.const(p + "ffn.w1", layer.ffn_in.weight.T)], [p + "f1"], p + "ffn.matmul1")
    g.nodes += _act_node(layer.act_name, p + "f1", g.const(p + "ffn.b1", layer.ffn_in.bias), p + "f1a", p + "ffn.act")
    g.node("MatMul", [p + "f1a", g.const(p + "ffn.w2", layer.ffn_out.weight.T)], [p + "f2"], p + "ffn.matmul2")
    g.node("SkipLayerNormalization", [p + "f2", p + "h1", g.const(p + "ln2.gamma", layer.ln2.weight),
                                      g.const(p + "ln2.beta", layer.ln2.bias), g.const(p + "ffn.b2", layer.ffn_out.bias)],
           [p + "h2"], p + "ln2", domain=MS, epsilon=float(layer.ln2.eps))
    return p + "h2"


def build_ort_graph(model: PrunedBertClassifier, *, token_types: bool = False) -> onnx.ModelProto:
    """The fused ORT graph of a dense or AdapLeR classifier (float32), for every backbone family: the
    family's adapter gives the embedding tables, each layer's pieces and the head's layers."""
    model = model.eval()
    selection = _selection(model)
    g = _Graph()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    g.node("Cast", ["input_ids"], ["ids32"], "cast_ids", to=TensorProto.INT32)
    g.node("Cast", ["attention_mask"], ["mask32_in"], "cast_mask", to=TensorProto.INT32)
    _embedding_nodes(g, model, token_types)  # -> h0 [B, T, D]
    # One int32 mask throughout: ORT's Attention reads int32 and ContributionDrop keeps its mask's type,
    # so no Cast sits between a layer's selection and its attention.
    hidden, mask32 = "h0", "mask32_in"
    lengths = []
    for i, layer in enumerate(model.layers):
        p = f"l{i}."
        if selection is not None:
            w1, b1, w2, eta, act = selection[i]
            g.node("MatMul", [hidden, g.const(p + "cp.w1", w1)], [p + "cp.z1"], p + "cp.matmul")
            g.nodes += _act_node(act, p + "cp.z1", g.const(p + "cp.b1", b1), p + "cp.a1", p + "cp.act")
            # the op's optional fourth output is the layer's kept lengths ([B, 1] int64): no ReduceSum per layer
            g.node("ContributionDrop", [hidden, p + "cp.a1", g.const(p + "cp.w2", w2), mask32,
                                        g.const(p + "eta", eta)],
                   [p + "h_kept", p + "mask32", p + "index", p + "kept"], p + "contribution_drop", domain="adapler")
            hidden, mask32 = p + "h_kept", p + "mask32"
            lengths.append(p + "kept")
        else:  # a dense model: every layer sees the input's lengths, counted once
            if not lengths:
                g.node("ReduceSum", [mask32, g.const("axes", np.array([1], np.int64))], ["kept32"], "kept_length",
                       keepdims=1)
                g.node("Cast", ["kept32"], ["kept"], "cast_kept", to=TensorProto.INT64)
            lengths.append("kept")
        qkv_w = np.concatenate([layer.q.weight.detach().T.numpy(), layer.k.weight.detach().T.numpy(),
                                layer.v.weight.detach().T.numpy()], axis=1)
        qkv_b = np.concatenate([layer.q.bias.detach().numpy(), layer.k.bias.detach().numpy(),
                                layer.v.bias.detach().numpy()])
        g.node("Attention", [hidden, g.const(p + "qkv.w", qkv_w), g.const(p + "qkv.b", qkv_b), mask32],
               [p + "ctx"], p + "attention", domain=MS, num_heads=int(model.num_heads))
        hidden = _after_attention(g, layer, p, hidden)
    g.node("Gather", [hidden, g.const("cls_index", np.array(0, np.int64))], ["cls"], "cls", axis=1)
    _head_nodes(g, model, "cls")  # -> logits
    g.node("Concat", lengths, ["kept_lengths"], "kept_lengths", axis=1)
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", model.num_labels]),
               helper.make_tensor_value_info("kept_lengths", TensorProto.INT64, ["batch", model.num_layers])]
    graph = helper.make_graph(g.nodes, "adapler_ort", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MS, 1)]
    if selection is not None:
        opsets.append(helper.make_opsetid("adapler", 1))
    return helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION, producer_name="adapler")


def write_ort_graph(model: PrunedBertClassifier, path: str | Path, *, token_types: bool = False) -> Path:
    """Build and save ``model.ort.onnx`` (weights inline: a MiniLM graph is ~90 MB, under protobuf's 2 GB)."""
    path = Path(path)
    onnx.save(build_ort_graph(model, token_types=token_types), str(path))
    return path
