"""What users deploy instead, and the int8 step: small composable functions (Polygraphy style).

- ``export_hf_dense``: the dense classifier exported the standard way, as a Hugging Face
  ``BertForSequenceClassification`` through torch's TorchScript exporter (what optimum does);
- ``optimize_dense``: ONNX Runtime's transformer optimizer on that file (fused attention,
  SkipLayerNormalization, BiasGelu, EmbedLayerNormalization);
- ``quantize_int8``: ONNX Runtime's dynamic int8 quantization. For the dense reference it is the
  one-line default a user would write; for pruned graphs it is restricted to the encoder's MatMul
  and Attention nodes, so the Contribution Predictors, the threshold, the softmax and TokenDrop stay
  float (their decisions are what int8 must not move);
- ``dense_reference_graphs``: all three files for one dense checkpoint, reused while it is unchanged.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx

from adapler.encoder import PrunedBertClassifier

HF_OPSET = 17  # ORT's optimizer fusion patterns are written against TorchScript exports at opset 11-17
QUANT_OP_TYPES = ("MatMul", "Attention")


class DeployError(ValueError):
    """One-line, user-facing problem with a deploy-graph step."""


def to_hf_classifier(model: PrunedBertClassifier):
    """The dense weights as a ``transformers.BertForSequenceClassification`` (same logits as dense mode)."""
    from transformers import BertForSequenceClassification
    if model.bert.pooler is None:
        raise DeployError("the checkpoint has no pooler, so it is not a BertForSequenceClassification; "
                          "compare against its own dense export (ort-custom) instead")
    cfg = model.config.__class__.from_dict({**model.config.to_dict(), "num_labels": model.num_labels})
    cfg._attn_implementation = "eager"  # the optimizer's attention fusion matches the eager pattern
    hf = BertForSequenceClassification(cfg).eval()
    hf.bert.load_state_dict(model.bert.state_dict())
    hf.classifier.load_state_dict(model.classifier.state_dict())
    return hf


def export_hf_dense(model: PrunedBertClassifier, path: str | Path, *, token_types: bool = True) -> Path:
    """The standard export of the dense model (TorchScript exporter, opset 17, dynamic batch and length)."""
    import torch
    hf = to_hf_classifier(model)
    ids = torch.randint(1000, 2000, (2, 16))
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    args = (ids, torch.ones_like(ids)) + ((torch.zeros_like(ids),) if token_types else ())
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(hf, args, str(path), dynamo=False, opset_version=HF_OPSET, input_names=names,
                          output_names=["logits"], dynamic_axes=axes)
    return path


def optimize_dense(src: str | Path, dst: str | Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """``onnxruntime.transformers.optimizer.optimize_model(model_type="bert")``; returns the fused-op counts."""
    from onnxruntime.transformers import optimizer
    opt = optimizer.optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size)
    opt.save_model_to_file(str(dst))
    return {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}


def quantize_int8(src: str | Path, dst: str | Path, *, encoder_only: bool = True) -> Path:
    """Dynamic int8 (weights int8, activations quantized per call).

    ``encoder_only``: quantize only MatMul and Attention nodes that are not part of a Contribution
    Predictor (ORT's defaults would also rewrite the opset-23 ``Attention`` of ``model.onnx`` into a
    ``QAttention`` ORT then rejects). ``False``: the library's defaults, as a user would call it.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    src, dst = Path(src), Path(dst)
    kwargs = {}
    if encoder_only:
        graph = onnx.load(str(src), load_external_data=False).graph
        is_opset23_attention = {n.name for n in graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")}
        # CP nodes: named "l<i>.cp.*" in model.ort.onnx, ".../cps.<i>/..." in the dynamo export
        cp = {n.name for n in graph.node if ".cp." in n.name or "cps." in n.name}
        kwargs = {"op_types_to_quantize": list(QUANT_OP_TYPES), "nodes_to_exclude": sorted(cp | is_opset23_attention)}
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a "consider pre-processing" advice on the root logger
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                             # custom ops (TokenDrop, ContributionDrop) have no shape inference: their outputs are float
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}, **kwargs)
    finally:
        root.setLevel(level)
    return dst


def dense_reference_graphs(model: PrunedBertClassifier, out_dir: str | Path, *, token_types: bool = False) -> dict[str, Path]:
    """``{"hf": model.hf.onnx, "hf-opt": model.hf.opt.onnx, "hf-opt-int8": model.hf.opt.int8.onnx}`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"hf": out / "model.hf.onnx", "hf-opt": out / "model.hf.opt.onnx", "hf-opt-int8": out / "model.hf.opt.int8.onnx"}
    if not files["hf"].exists():
        export_hf_dense(model, files["hf"], token_types=token_types)
    if not files["hf-opt"].exists():
        optimize_dense(files["hf"], files["hf-opt"], num_heads=model.config.num_attention_heads,
                       hidden_size=model.config.hidden_size)
    if not files["hf-opt-int8"].exists():
        quantize_int8(files["hf-opt"], files["hf-opt-int8"], encoder_only=False)
    return files
