"""The padding-free ONNX Runtime graph: ``model.ort.packed.onnx``.

``model.ort.onnx`` runs every layer on ``[B, L, D]`` with rows padded to the longest kept row. This graph
runs the token-wise work on the real tokens only, ``[N, D]`` with row offsets (``N = sum_b n_b``):

    embed (EmbedLayerNormalization, padded) -> pack (standard ops: NonZero + Gather, row offsets, once)
    per layer:  [MatMul -> BiasGelu -> PackedContributionDrop]      (AdapLeR only; emits the kept tokens
                                                                      packed, their offsets and the
                                                                      padded-view indices)
                Gather (padded view [B, L, D]) -> Attention (QKV and attention per row, key lengths [B])
                -> Reshape -> Gather (back to packed [N, D]) -> MatMul -> SkipLayerNormalization
                -> MatMul -> BiasGelu -> MatMul -> SkipLayerNormalization                 (all packed)
    [CLS] of each row = Gather at the row offsets -> pooler -> classifier

ONNX Runtime's CPU execution provider has no varlen attention (``PackedAttention``,
``PackedMultiHeadAttention``, ``RemovePadding`` are CUDA-only in ORT 1.32: no CPU kernel), so the
attention sub-layer's first half (the fused QKV projection and attention) runs on the padded view
``[B, L]`` of each layer's kept tokens, and everything else on ``[N, D]``. The dense graph
packs once from ``attention_mask`` with standard ops and needs no plugin; the AdapLeR graph needs
``libadapler_ops.so`` (PackedContributionDrop, spec in plugins/contribution_drop/README.md).

Inputs and outputs are those of ``model.ort.onnx`` (``logits``, ``kept_lengths``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from adapler.encoder import PrunedBertClassifier
from adapler.export.ort_graph import (IR_VERSION, MS, _act_node, _after_attention, _embedding_nodes, _Graph, _head_nodes,
                                      _selection)

PACKED_FILE = "model.ort.packed.onnx"


def _pack_from_mask(g: _Graph, hidden: str, d: int) -> tuple[str, str, str, str, str]:
    """Standard ops: padded ``hidden [B, T, D]`` and ``attention_mask`` -> ``(packed [N, D], offsets [B+1],
    lengths int32 [B], pad_index [B, L], unpad_index [N])`` (plugins/contribution_drop/README.md)."""
    i64 = lambda name, v: g.const(name, np.array(v, np.int64))  # noqa: E731
    g.node("Equal", ["attention_mask", i64("pack.one", 1)], ["pack.alive"], "pack.alive")
    g.node("Reshape", ["pack.alive", i64("pack.flat", [-1])], ["pack.alive_flat"], "pack.alive_flat")
    g.node("NonZero", ["pack.alive_flat"], ["pack.src2"], "pack.nonzero")
    g.node("Squeeze", ["pack.src2", i64("pack.axis0", [0])], ["pack.src"], "pack.src")
    g.node("Reshape", [hidden, i64("pack.rows", [-1, d])], ["pack.h_rows"], "pack.h_rows")
    g.node("Gather", ["pack.h_rows", "pack.src"], ["pack.h"], "pack.gather", axis=0)
    g.node("Cast", ["pack.alive"], ["pack.alive64"], "pack.alive64", to=TensorProto.INT64)
    g.node("ReduceSum", ["pack.alive64", i64("pack.axis1", [1])], ["pack.len"], "pack.len", keepdims=0)
    g.node("CumSum", ["pack.len", i64("pack.cum_axis", 0)], ["pack.cum"], "pack.cum")
    g.node("Concat", [i64("pack.zero1", [0]), "pack.cum"], ["pack.offsets"], "pack.offsets", axis=0)
    g.node("Cast", ["pack.len"], ["pack.len32"], "pack.len32", to=TensorProto.INT32)
    # padded view of the packed rows: slot (b, i) -> offsets[b] + i, padding -> offsets[b]
    g.node("ReduceMax", ["pack.len"], ["pack.L"], "pack.L", keepdims=0)
    g.node("Range", [i64("pack.r0", 0), "pack.L", i64("pack.r1", 1)], ["pack.i"], "pack.range")
    g.node("Unsqueeze", ["pack.i", "pack.axis0"], ["pack.i_row"], "pack.i_row")
    g.node("Unsqueeze", ["pack.len", "pack.axis1"], ["pack.len_col"], "pack.len_col")
    g.node("Less", ["pack.i_row", "pack.len_col"], ["pack.valid"], "pack.valid")
    g.node("Where", ["pack.valid", "pack.i_row", i64("pack.zero", 0)], ["pack.slot"], "pack.slot")
    g.node("Slice", ["pack.offsets", i64("pack.s0", [0]), i64("pack.s1", [-1])], ["pack.starts"], "pack.starts")
    g.node("Unsqueeze", ["pack.starts", "pack.axis1"], ["pack.start_col"], "pack.start_col")
    g.node("Add", ["pack.start_col", "pack.slot"], ["pack.pad_index"], "pack.pad_index")
    g.node("Reshape", ["pack.valid", "pack.flat"], ["pack.valid_flat"], "pack.valid_flat")
    g.node("NonZero", ["pack.valid_flat"], ["pack.unpad2"], "pack.unpad_nonzero")
    g.node("Squeeze", ["pack.unpad2", "pack.axis0"], ["pack.unpad_index"], "pack.unpad_index")
    return "pack.h", "pack.offsets", "pack.len32", "pack.pad_index", "pack.unpad_index"


def build_packed_graph(model: PrunedBertClassifier, *, token_types: bool = False) -> onnx.ModelProto:
    """The packed ORT graph of a dense or AdapLeR classifier (float32)."""
    model = model.eval()
    selection = _selection(model)
    g = _Graph()
    d = int(model.shape.hidden)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    g.node("Cast", ["input_ids"], ["ids32"], "cast_ids", to=TensorProto.INT32)
    g.node("Cast", ["attention_mask"], ["mask32_in"], "cast_mask", to=TensorProto.INT32)
    _embedding_nodes(g, model, token_types)  # -> h0 [B, T, D], padded
    hidden, offsets, len32, pad_index, unpad_index = _pack_from_mask(g, "h0", d)
    axis1 = "pack.axis1"
    lengths = []
    for i, layer in enumerate(model.layers):
        p = f"l{i}."
        if selection is not None:
            w1, b1, w2, eta, act = selection[i]
            g.node("MatMul", [hidden, g.const(p + "cp.w1", w1)], [p + "cp.z1"], p + "cp.matmul")
            g.nodes += _act_node(act, p + "cp.z1", g.const(p + "cp.b1", b1), p + "cp.a1", p + "cp.act")
            outs = [p + n for n in ("h_kept", "offsets", "len32", "pad_index", "unpad_index")]
            g.node("PackedContributionDrop", [hidden, p + "cp.a1", g.const(p + "cp.w2", w2), offsets,
                                              g.const(p + "eta", eta)], outs, p + "contribution_drop",
                   domain="adapler")
            hidden, offsets, len32, pad_index, unpad_index = outs
        g.node("Unsqueeze", [len32, axis1], [p + "kept"], p + "kept_length")
        lengths.append(p + "kept")
        qkv_w = np.concatenate([layer.q.weight.detach().T.numpy(), layer.k.weight.detach().T.numpy(),
                                layer.v.weight.detach().T.numpy()], axis=1)
        qkv_b = np.concatenate([layer.q.bias.detach().numpy(), layer.k.bias.detach().numpy(),
                                layer.v.bias.detach().numpy()])
        # ORT's fused Attention on the padded view: its kernel beat MatMul + Gather + Split + MultiHeadAttention
        # at batch 1 and on long rows and tied at batch 32 on mixed lengths (docs/results.md §8)
        g.node("Gather", [hidden, pad_index], [p + "h_pad"], p + "pad", axis=0)
        g.node("Attention", [p + "h_pad", g.const(p + "qkv.w", qkv_w), g.const(p + "qkv.b", qkv_b), len32],
               [p + "ctx_pad"], p + "attention", domain=MS, num_heads=int(model.num_heads))
        g.node("Reshape", [p + "ctx_pad", g.const(p + "rows", np.array([-1, d], np.int64))], [p + "ctx_rows"],
               p + "ctx_rows")
        g.node("Gather", [p + "ctx_rows", unpad_index], [p + "ctx"], p + "unpad", axis=0)
        hidden = _after_attention(g, layer, p, hidden)
    g.node("Slice", [offsets, "pack.s0", "pack.s1"], ["cls_rows"], "cls_rows")
    g.node("Gather", [hidden, "cls_rows"], ["cls"], "cls", axis=0)
    _head_nodes(g, model, "cls")  # -> logits
    g.node("Concat", lengths, ["kept32"], "kept_lengths_concat", axis=1)
    g.node("Cast", ["kept32"], ["kept_lengths"], "kept_lengths", to=TensorProto.INT64)
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", model.num_labels]),
               helper.make_tensor_value_info("kept_lengths", TensorProto.INT64, ["batch", model.num_layers])]
    graph = helper.make_graph(g.nodes, "adapler_ort_packed", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid(MS, 1)]
    if selection is not None:
        opsets.append(helper.make_opsetid("adapler", 1))
    return helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION, producer_name="adapler")


def write_packed_graph(model: PrunedBertClassifier, path: str | Path, *, token_types: bool = False) -> Path:
    """Build and save ``model.ort.packed.onnx``."""
    path = Path(path)
    onnx.save(build_packed_graph(model, token_types=token_types), str(path))
    return path
