"""What users deploy instead, and the int8 step: small composable functions (Polygraphy style).

- ``export_hf_dense``: the dense classifier exported the standard way, as the family's Hugging Face
  ``*ForSequenceClassification`` (``BertForSequenceClassification``, ``RobertaForSequenceClassification``,
  ...; the backbone adapter names it) through torch's TorchScript exporter (what optimum does);
- ``optimize_dense``: ONNX Runtime's transformer optimizer on that file (fused attention,
  SkipLayerNormalization, BiasGelu, EmbedLayerNormalization; which of them each family gets: docs/deploy.md §4.5);
- ``quantize_int8``: ONNX Runtime's dynamic int8 quantization. For the dense reference it is the
  one-line default a user would write; for pruned graphs it is restricted to the encoder's MatMul
  and Attention nodes, so the Contribution Predictors, the threshold, the softmax and TokenDrop stay
  float (their decisions are what int8 must not move), and its weight scales are per output channel;
- ``dense_reference_graphs``: all three files for one dense checkpoint, reused while it is unchanged.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx

from adapler.encoder import PrunedBertClassifier
from adapler.errors import ExportError

HF_OPSET = 17  # ORT's optimizer fusion patterns are written against TorchScript exports at opset 11-17
QUANT_OP_TYPES = ("MatMul", "Attention")


class DeployError(ExportError):
    """One-line, user-facing problem with a deploy-graph step."""


def to_hf_classifier(model: PrunedBertClassifier):
    """The dense weights as the family's ``transformers`` ``*ForSequenceClassification`` (same logits as
    dense mode), built by the backbone adapter (``adapler.backbones.hf``)."""
    from adapler.backbones.hf import to_hf_classifier as convert
    try:  # convert checks Backbone.hf_problem itself; only the error class and the advice are ours
        return convert(model, attn_implementation="eager")  # the optimizer's attention fusion matches the eager pattern
    except ValueError as e:
        raise DeployError(f"{e}; compare against its own dense export (ort-custom) instead") from None


def export_hf_dense(model: PrunedBertClassifier, path: str | Path, *, token_types: bool = True) -> Path:
    """The standard export of the dense model (TorchScript exporter, opset 17, dynamic batch and length).

    Inputs are the family's (``Backbone.hf_input_names``): ``token_type_ids`` only with ``token_types``
    and a family that reads them (not RoBERTa, XLM-R, DistilBERT)."""
    import torch
    hf = to_hf_classifier(model)
    names = model.backbone.hf_input_names(model.config, token_types)
    ids = torch.randint(1000, 2000, (2, 16))
    example = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # by keyword: the third positional argument is head_mask in DistilBERT, token_type_ids elsewhere
        torch.onnx.export(hf, (), str(path), kwargs={n: example[n] for n in names}, dynamo=False,
                          opset_version=HF_OPSET, input_names=names, output_names=["logits"], dynamic_axes=axes)
    return path


def optimize_dense(src: str | Path, dst: str | Path, *, num_heads: int, hidden_size: int,
                   model_type: str = "bert") -> dict[str, int]:
    """``onnxruntime.transformers.optimizer.optimize_model``; returns the fused-op counts. ``model_type`` is the
    optimizer's (``Backbone.ort_optimizer_type``), not the checkpoint's."""
    from onnxruntime.transformers import optimizer
    if model_type not in optimizer.MODEL_TYPES:
        raise DeployError(f"ONNX Runtime's optimizer has no model type {model_type!r}; "
                          f"it has {', '.join(sorted(optimizer.MODEL_TYPES))}")
    opt = optimizer.optimize_model(str(src), model_type=model_type, num_heads=num_heads, hidden_size=hidden_size)
    opt.save_model_to_file(str(dst))
    return {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}


def int8_candidates(src: str | Path) -> list[str]:
    """Names of the nodes ``quantize_int8(src, ...)`` (encoder only) quantizes, in graph order: the encoder's
    MatMul and fused Attention nodes and the head, not the Contribution Predictors' nor an opset-23
    ``Attention``. The quantizer first rewrites each ``Gemm`` (the pooler, the classifier) as a MatMul named
    ``<gemm>_MatMul`` plus an Add, so that is the name ``keep_float`` and ``only`` take for it."""
    graph = onnx.load(str(src), load_external_data=False).graph
    excluded = _never_quantized(graph)
    names = [n.name + "_MatMul" if n.op_type == "Gemm" else n.name for n in graph.node
             if n.op_type in QUANT_OP_TYPES + ("Gemm",)]
    return [n for n in names if n not in excluded and n.removesuffix("_MatMul") not in excluded]


def _never_quantized(graph: onnx.GraphProto) -> set[str]:
    is_opset23_attention = {n.name for n in graph.node if n.op_type == "Attention" and n.domain in ("", "ai.onnx")}
    # CP nodes: named "l<i>.cp.*" in model.ort.onnx, ".../cps.<i>/..." in the dynamo export
    cp = {n.name for n in graph.node if ".cp." in n.name or "cps." in n.name}
    return cp | is_opset23_attention


def quantize_int8(src: str | Path, dst: str | Path, *, encoder_only: bool = True,
                  per_channel: bool | None = None, keep_float: tuple[str, ...] | list[str] = (),
                  only: tuple[str, ...] | list[str] | None = None) -> Path:
    """Dynamic int8 (weights int8, activations quantized per call).

    ``encoder_only``: quantize only MatMul and Attention nodes that are not part of a Contribution
    Predictor (ORT's defaults would also rewrite the opset-23 ``Attention`` of ``model.onnx`` into a
    ``QAttention`` ORT then rejects), with one weight scale per output channel: on the vader MiniLM
    models one scale per tensor flipped 4.6 % of the dense model's test decisions and 6 % of the pruned
    models', per channel 1.2 % and 2.5 % (docs/results.md §6a). ``False``: the library's defaults, as a
    user would call it. ``per_channel`` overrides the scales' granularity (``bench/int8_scales.py``
    compares the two). ``keep_float``: encoder nodes also left in float (``export/int8_sensitivity.py``
    picks them); ``only``: quantize just these nodes (how the sensitivity of each one is measured).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    src, dst = Path(src), Path(dst)
    kwargs = {}
    if encoder_only:
        graph = onnx.load(str(src), load_external_data=False).graph
        kwargs = {"op_types_to_quantize": list(QUANT_OP_TYPES),
                  "nodes_to_exclude": sorted(_never_quantized(graph) | set(keep_float))}
        if only is not None:
            kwargs["nodes_to_quantize"] = list(only)
    elif keep_float or only is not None:
        raise ValueError("keep_float and only apply to the encoder-only quantization")
    kwargs["per_channel"] = encoder_only if per_channel is None else per_channel
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
    """``{"hf": model.hf.onnx, "hf-opt": model.hf.opt.onnx, "hf-opt-int8": model.hf.opt.int8.onnx}`` in ``out_dir``,
    for any backbone family (its adapter gives the HF class, the inputs and the optimizer's model type);
    ``token_types``: the checkpoint is a sentence-pair model."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"hf": out / "model.hf.onnx", "hf-opt": out / "model.hf.opt.onnx", "hf-opt-int8": out / "model.hf.opt.int8.onnx"}
    if not files["hf"].exists():
        export_hf_dense(model, files["hf"], token_types=token_types)
    if not files["hf-opt"].exists():
        shape = model.backbone.shape(model.config)
        optimize_dense(files["hf"], files["hf-opt"], num_heads=shape.heads, hidden_size=shape.hidden,
                       model_type=model.backbone.ort_optimizer_type)
    if not files["hf-opt-int8"].exists():
        quantize_int8(files["hf-opt"], files["hf-opt-int8"], encoder_only=False)
    return files
