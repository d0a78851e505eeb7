"""torch -> ONNX for pruned classifiers: ``model.onnx`` (adapler::TokenDrop nodes), ``model.std.onnx`` and, for
methods whose selection has that form, ``model.cd.onnx`` (one adapler::ContributionDrop node per layer).

Small composable steps (Polygraphy style): ``wrap`` -> ``export_graph`` -> ``write_export_dir``.
The dynamo exporter (opset 23) is used; the ops ``adapler::token_drop`` and ``adapler::contribution_drop`` are
translated to ONNX nodes in domain ``adapler`` with the plugin attributes TensorRT's parser reads.
"""
from __future__ import annotations

import copy
import json
import logging
import shutil
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn

from adapler import methods
from adapler.checkpoint import CheckpointError, load_checkpoint, read_config
from adapler.encoder import PrunedBertClassifier
from adapler.errors import ExportError  # noqa: F401  (export's error class; callers import it from here)
from adapler.ops import contribution_drop_form, standard_op_form

SUPPORTED_OPSETS = (18, 19, 20, 21, 22, 23)
DEFAULT_OPSET = 23
CD_FILE = "model.cd.onnx"  # the TensorRT-bound graph with one ContributionDrop per layer (export.json key "cd")


class ExportWrapper(nn.Module):
    """(input_ids, attention_mask[, token_type_ids]) -> (logits, kept_lengths [B, L] int64[, kept_positions]).

    ``kept_positions`` [B, L, T] int64 (optional): per layer, the original position of each slot its FFN
    processed, in slot order, -1 after the row's last kept slot; what ``cli.py explain`` reads.
    ``contribution_drop``: trace the selector's ContributionDrop form (model.cd.onnx)."""

    def __init__(self, model: PrunedBertClassifier, use_std_op: bool, mode: str = "hard",
                 kept_positions: bool = False, contribution_drop: bool = False):
        super().__init__()
        self.model, self.use_std_op, self.mode, self.kept_positions = model, use_std_op, mode, kept_positions
        self.contribution_drop = contribution_drop

    def _form(self):
        if self.use_std_op:  # model.std.onnx: TokenDrop as standard ops
            return standard_op_form()
        return contribution_drop_form() if self.contribution_drop else nullcontext()

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None):
        with self._form():
            out = self.model(input_ids, attention_mask, token_type_ids, mode=self.mode,
                             track_positions=self.kept_positions)
        if not self.kept_positions:
            return out.logits, out.kept_lengths.to(torch.int64)
        T = input_ids.shape[1]
        # Each layer's slots padded back to the input length, so the output has one static rank and shape.
        pos = [torch.nn.functional.pad(p, (0, T - p.shape[1]), value=-1) for p in out.positions]
        return out.logits, out.kept_lengths.to(torch.int64), torch.stack(pos, dim=1).to(torch.int64)


def _translation_table() -> dict:
    import onnxscript
    from onnxscript import opset23 as op  # noqa: F401  (keeps the standard opset imported alongside)

    from adapler.plugins.contribution_drop import schema as cd
    from adapler.plugins.token_drop.schema import DOMAIN, OP_TYPE, OP_VERSION, plugin_attributes, register_onnx_schema

    register_onnx_schema()
    cd.register_onnx_schema()
    custom = onnxscript.values.Opset(DOMAIN, OP_VERSION)
    attrs = plugin_attributes()  # both ops are TensorRT plugins of one namespace and version

    def token_drop(hidden, scores, mask, threshold):
        return getattr(custom, OP_TYPE)(hidden, scores, mask, threshold, _num_outputs=3, **attrs)

    def contribution_drop(hidden, cp_hidden, w2, mask, eta):
        return getattr(custom, cd.OP_TYPE)(hidden, cp_hidden, w2, mask, eta, _num_outputs=3, **attrs)

    return {torch.ops.adapler.token_drop.default: token_drop,
            torch.ops.adapler.contribution_drop.default: contribution_drop}


def example_inputs(model: PrunedBertClassifier, batch: int = 2, length: int = 16, token_types: bool = False):
    ids = torch.randint(1000, 2000, (batch, length))
    ids[:, 0] = 101
    mask = torch.ones(batch, length, dtype=torch.int64)
    mask[-1, length // 2:] = 0
    args = (ids, mask)
    return args + (torch.zeros_like(ids),) if token_types else args


def export_graph(model: PrunedBertClassifier, path: str | Path, *, std: bool, opset: int = DEFAULT_OPSET,
                 token_types: bool = False, fp16: bool = False, kept_positions: bool = False,
                 contribution_drop: bool = False) -> Path:
    """Export one graph. ``std=True`` writes standard ops only; otherwise TokenDrop nodes, or with
    ``contribution_drop`` one ContributionDrop node per drop point (``model.cd.onnx``; methods whose registry
    entry has ``contribution_drop_graph``). ``kept_positions`` adds that output (see ``ExportWrapper``)."""
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} is not supported; use one of {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}")
    if contribution_drop:
        _check_contribution_drop(model, std)
    path = Path(path)
    model = model.eval()
    if fp16:
        model = copy.deepcopy(model).half()  # the caller's model stays float32
    # a dense model's hard mode is dense
    wrapper = ExportWrapper(model, use_std_op=std, mode="hard", kept_positions=kept_positions,
                            contribution_drop=contribution_drop).eval()
    args = example_inputs(model, token_types=token_types)
    seq = torch.export.Dim("sequence", min=2, max=model.shape.max_length)  # RoBERTa: 2 rows fewer than its table
    batch = torch.export.Dim("batch", min=1, max=1024)
    dyn = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    names = ["input_ids", "attention_mask"]
    if token_types:
        dyn["token_type_ids"] = {0: batch, 1: seq}
        names.append("token_type_ids")
    # the dynamo exporter logs "torchvision is not installed. Skipping ..." four times per export: noise for
    # text models, and `make demo` exports a dozen graphs
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                wrapper, args, dynamo=True, opset_version=opset, dynamic_shapes=dyn, input_names=names,
                output_names=["logits", "kept_lengths"] + (["kept_positions"] if kept_positions else []),
                custom_translation_table=None if std else _translation_table(),
                verbose=False, report=False, optimize=True)
        finally:
            registration.setLevel(level)
    program.save(str(path))
    if contribution_drop:
        _check_no_token_drop(path)
    return path


def _check_contribution_drop(model: PrunedBertClassifier, std: bool) -> None:
    """A ContributionDrop graph is asked of a method that has one, not in the standard-op form."""
    if std:
        raise ExportError("contribution_drop=True writes ContributionDrop nodes; it cannot be combined with std=True")
    method = methods.get(model.method)
    if not method.contribution_drop_graph:
        raise ExportError(f"method {method.name!r} has no ContributionDrop form; export its model.onnx (TokenDrop) "
                          "for TensorRT instead")


def _check_no_token_drop(path: Path) -> None:
    """A selector that ignored contribution_drop_form() would leave TokenDrop nodes: refuse such a graph."""
    import onnx

    from adapler.plugins.token_drop.schema import OP_TYPE
    left = sum(n.op_type == OP_TYPE for n in onnx.load(str(path), load_external_data=False).graph.node)
    if left:
        raise ExportError(f"{path.name} still has {left} {OP_TYPE} node(s): the selector has no ContributionDrop form "
                          "although its method claims one (Method.contribution_drop_graph)")


def check_exportable(ckpt: str | Path) -> dict:
    """Config of a checkpoint that can be exported, or a one-line ExportError."""
    try:
        cfg = read_config(ckpt)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    return cfg


QUANTIZE_CHOICES = ("none", "int8")
PRECISION_CHOICES = ("fp32", "fp16")


def write_export_dir(ckpt: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET, overwrite: bool = False,
                     custom: bool = True, std: bool = True, ort: bool = True, allow_dense: bool = False,
                     quantize: str = "none", precision: str = "fp32", kept_positions: bool = False,
                     packed: bool = False, contribution_drop: bool = False) -> dict:
    """Write the export directory ``out``: ``model.onnx`` (TokenDrop nodes), ``model.std.onnx`` (standard
    ops), ``model.ort.onnx`` (ONNX Runtime fused graph, where the method has one), tokenizer and
    ``export.json``. ``quantize="int8"`` adds the dynamic-int8 form of the ORT graph (``model.ort.int8.onnx``,
    or ``model.int8.onnx`` from ``model.onnx`` for methods without an ORT graph); ``precision="fp16"``
    adds ``model.fp16.onnx`` (TokenDrop graph in float16, for GPU runtimes). ``kept_positions`` adds that output
    to ``model.onnx`` and ``model.std.onnx`` (what ``cli.py explain`` reads; the ORT graph has no such output);
    ``packed`` adds the padding-free ``model.ort.packed.onnx`` (and its int8 form with ``quantize="int8"``);
    ``contribution_drop`` adds ``model.cd.onnx`` (one ContributionDrop per layer, for TensorRT; what
    ``cli.py export --target trt`` asks for) where the method has that form, a note where it has not."""
    from adapler.api import checkpoint_dir
    if quantize not in QUANTIZE_CHOICES:
        raise ExportError(f"--quantize {quantize!r} is not supported; use one of {', '.join(QUANTIZE_CHOICES)}")
    if precision not in PRECISION_CHOICES:
        raise ExportError(f"--precision {precision!r} is not supported; use one of {', '.join(PRECISION_CHOICES)}")
    ckpt = checkpoint_dir(ckpt)
    cfg = check_exportable(ckpt)
    if cfg["method"] == methods.dense().name and not allow_dense:
        what = "a quantized export of it prunes nothing" if quantize != "none" else "not a pruned model"
        raise ExportError(f"{ckpt} is a dense fine-tuned model (method 'bert'), {what}; "
                          "export a checkpoint from `cli.py train`, or pass --allow-dense for a baseline graph")
    if opset not in SUPPORTED_OPSETS:
        raise ExportError(f"opset {opset} is not supported; use one of {SUPPORTED_OPSETS[0]}..{SUPPORTED_OPSETS[-1]}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} already exists; pass --overwrite to replace it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    model, cfg = load_checkpoint(ckpt)
    # sentence-pair models need token_type_ids, where the family has them (not RoBERTa, DistilBERT)
    token_types = bool(cfg.get("pair", False)) and model.backbone.uses_token_types(model.config)
    files = {}
    if custom:
        files["custom"] = export_graph(model, out / "model.onnx", std=False, opset=opset, token_types=token_types,
                                       kept_positions=kept_positions).name
    if std:
        files["std"] = export_graph(model, out / "model.std.onnx", std=True, opset=opset, token_types=token_types,
                                    kept_positions=kept_positions).name
    notes = []
    if ort or quantize != "none":
        from .ort_graph import UnsupportedForOrtGraph, write_ort_graph
        try:
            files["ort"] = write_ort_graph(model, out / "model.ort.onnx", token_types=token_types).name
        except UnsupportedForOrtGraph as e:
            notes.append(f"no model.ort.onnx: {e}")
    if quantize == "int8":
        from .deploy import quantize_int8
        if "ort" in files:
            src, key = files["ort"], "ort-int8"
        else:  # methods without an ORT graph: quantize the TokenDrop graph
            if "custom" not in files:
                files["custom"] = export_graph(model, out / "model.onnx", std=False, opset=opset,
                                               token_types=token_types).name
            src, key = files["custom"], "int8"
        files[key] = quantize_int8(out / src, out / src.replace(".onnx", ".int8.onnx")).name
    if packed and "ort" not in files:
        notes.append("no model.ort.packed.onnx: the packed graph is the fused ORT graph's padding-free form")
    if packed and "ort" in files:  # the same graph on packed tokens (export/packed_graph.py, docs/deploy.md §10)
        from .packed_graph import PACKED_FILE, write_packed_graph
        files["ort-packed"] = write_packed_graph(model, out / PACKED_FILE, token_types=token_types).name
        if quantize == "int8":
            from .deploy import quantize_int8
            files["ort-packed-int8"] = quantize_int8(out / PACKED_FILE,
                                                     out / PACKED_FILE.replace(".onnx", ".int8.onnx")).name
    if contribution_drop:
        if methods.get(cfg["method"]).contribution_drop_graph:
            files["cd"] = export_graph(model, out / CD_FILE, std=False, opset=opset, token_types=token_types,
                                       contribution_drop=True).name
        else:
            notes.append(f"no {CD_FILE}: method {cfg['method']!r} has no ContributionDrop form; TensorRT uses "
                         "model.onnx")
    if precision == "fp16":
        files["fp16"] = export_graph(model, out / "model.fp16.onnx", std=False, opset=opset, token_types=token_types,
                                     fp16=True).name
    if (ckpt / "tokenizer").exists():
        if (out / "tokenizer").exists():
            shutil.rmtree(out / "tokenizer")
        shutil.copytree(ckpt / "tokenizer", out / "tokenizer")
    meta = {
        "format": "adapler-onnx-export",
        "opset": opset,
        "token_drop_domain": "adapler",
        "token_drop_version": 1,
        "source_checkpoint": str(ckpt.resolve()),
        "method": cfg["method"],
        "max_length": cfg["max_length"],
        "num_labels": cfg["num_labels"],
        "label_names": cfg["label_names"],
        "num_layers": model.num_layers,
        "inputs": ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else []),
        "outputs": ["logits", "kept_lengths"] + (["kept_positions"] if kept_positions else []),
        "files": files,
        "notes": notes,
    }
    (out / "export.json").write_text(json.dumps(meta, indent=2))
    return meta
