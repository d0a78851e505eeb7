"""Backends: one callable per (model, runtime) that takes a feed and returns logits.

A *feed* is ``{"input_ids", "attention_mask", "token_type_ids"}`` of int64 NumPy arrays ``[B, T]``.
A *factory* ``(ModelSpec, BackendContext) -> Backend | Skip`` builds the callable once (export,
session, engine, device copy), so that timing covers inference only. A factory that cannot run
returns :class:`Skip` with a one-line reason instead of raising.

| name | what runs | skipped when |
|---|---|---|
| ``torch`` | eager torch on CPU, ``hard`` mode (for the dense model that is the dense computation) | never |
| ``ort-custom`` | ``model.onnx`` (``adapler::TokenDrop`` nodes), ORT CPU, spin-waits within a run | library not built |
| ``ort-std`` | ``model.std.onnx`` (standard ops only), ORT CPU, spin-waits within a run | export failed |
| ``ort-opt`` | what users deploy on ORT: dense = standard HF export + ORT transformer optimizer; pruned = ``model.ort.onnx`` (same fused kernels + ContributionDrop) | method without a fused graph |
| ``ort-int8`` | the same, dynamic int8 (dense: ``quantize_dynamic`` defaults; pruned: encoder MatMul/Attention only) | export failed |
| ``ort-packed`` | ``model.ort.packed.onnx``: the fused graph padding-free (dense and pruned models alike) | method without a fused graph |
| ``ort-packed-int8`` | ``model.ort.packed.int8.onnx``, encoder MatMul/Attention int8 | method without a fused graph |
| ``torch-cuda`` | eager torch on the first CUDA device (inputs copied in, logits copied out) | no CUDA device |
| ``tensorrt`` | TensorRT engine from ``model.onnx`` with the TokenDrop plugin (Polygraphy) | no TensorRT / CUDA |

ONNX graphs are written once per checkpoint with ``export.onnx.write_export_dir(..., allow_dense=True)``
into ``BackendContext.export_cache/<model name>/`` and reused while the checkpoint is unchanged
(``bench_source.json`` fingerprints its weights and config).
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

Feed = dict[str, np.ndarray]
Backend = Callable[[Feed], Any]

NO_CUDA = "torch sees no CUDA device"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class Skip:
    """A backend that cannot run here, and why (one line)."""
    reason: str


@dataclass
class ModelSpec:
    """One benchmarked model: its name in the report, checkpoint directory, loaded torch model, config."""
    name: str
    ckpt: Path
    model: Any  # adapler.encoder.PrunedBertClassifier
    config: dict

    @property
    def method(self) -> str:
        return self.model.method


@dataclass
class BackendContext:
    """Settings shared by every backend of one benchmark run."""
    export_cache: Path
    threads: int | None = None  # ORT intra-op threads (None: ORT's default)
    requested: tuple[str, ...] = ()  # all backends of the run: decides which ONNX graphs to export at once
    max_batch: int = 32  # TensorRT profile
    max_length: int = 512  # TensorRT profile
    export_errors: dict[str, str] = field(default_factory=dict)


def default_mode(model) -> str:
    """``hard`` for every model: the dense model's no-op selector makes its hard mode the dense computation."""
    return "hard"


def feed_tensors(feed: Feed, device: str = "cpu") -> list[torch.Tensor | None]:
    out: list[torch.Tensor | None] = []
    for k in INPUT_NAMES:
        if k in feed:
            t = torch.from_numpy(np.ascontiguousarray(feed[k]))
            out.append(t.to(device, non_blocking=True) if device != "cpu" else t)
        else:
            out.append(None)
    return out


# ------------------------------------------------------------------------------------------------ torch

def torch_cpu(spec: ModelSpec, ctx: BackendContext, mode: str | None = None) -> Backend:
    """Eager torch on CPU: ``mode`` hard (physical removal) or dense; default by method."""
    model = spec.model.eval()
    mode = mode or default_mode(model)

    def run(feed: Feed) -> np.ndarray:
        with torch.inference_mode():
            return model(*feed_tensors(feed), mode=mode).logits.numpy()

    return run


def torch_cuda(spec: ModelSpec, ctx: BackendContext, mode: str | None = None) -> Backend | Skip:
    """Eager torch on ``cuda:0``; the call includes the input copy and the logits copy back (a sync)."""
    try:
        available = torch.cuda.is_available()
    except Exception as e:  # a broken driver install
        return Skip(f"{NO_CUDA} ({type(e).__name__}: {e})")
    if not available:
        return Skip(NO_CUDA)
    model = copy.deepcopy(spec.model).to("cuda").eval()
    mode = mode or default_mode(model)

    def run(feed: Feed) -> np.ndarray:
        with torch.inference_mode():
            return model(*feed_tensors(feed, "cuda"), mode=mode).logits.float().cpu().numpy()

    return run


# ------------------------------------------------------------------------------------------------ ONNX

PACKED_BACKENDS = ("ort-packed", "ort-packed-int8")
FUSED_GRAPHS = ("ort", "ort-int8", "ort-packed", "ort-packed-int8")  # export.json keys of the fused graph's forms
_NEEDS = {"ort-int8": ("int8",), "ort-packed": ("packed",), "ort-packed-int8": ("packed", "int8")}


def _graphs_needed(requested: tuple[str, ...]) -> dict[str, bool]:
    return {"custom": any(b in requested for b in ("ort-custom", "tensorrt")), "std": "ort-std" in requested,
            "ort": any(b in requested for b in ("ort-opt", "ort-int8") + PACKED_BACKENDS),
            "int8": any(b in requested for b in ("ort-int8", "ort-packed-int8")),
            "packed": any(b in requested for b in PACKED_BACKENDS)}


def checkpoint_fingerprint(ckpt: Path) -> dict[str, Any]:
    from adapler.checkpoint import WEIGHTS
    w = ckpt / WEIGHTS
    st = w.stat() if w.exists() else None
    cfg = (ckpt / "config.json").read_bytes() if (ckpt / "config.json").exists() else b""
    return {"checkpoint": str(ckpt.resolve()), "weights_bytes": st.st_size if st else None,
            "weights_mtime_ns": st.st_mtime_ns if st else None, "config_sha256": hashlib.sha256(cfg).hexdigest()}


def export_dir(spec: ModelSpec, ctx: BackendContext, graph: str) -> Path | Skip:
    """The export directory of ``spec`` holding ``graph`` (an ``export.json`` files key: "custom", "std", "ort",
    "ort-packed", ...); exports when missing or stale."""
    if spec.name in ctx.export_errors:
        return Skip(ctx.export_errors[spec.name])
    out = ctx.export_cache / spec.name
    meta_path, fp_path = out / "export.json", out / "bench_source.json"
    fp = checkpoint_fingerprint(spec.ckpt)
    if meta_path.exists() and fp_path.exists():
        meta = json.loads(meta_path.read_text())
        file = meta.get("files", {}).get(graph)
        if json.loads(fp_path.read_text()) == fp:
            if file and (out / file).exists():
                return out
            if graph in FUSED_GRAPHS and meta.get("notes"):  # tried already: the method has no fused graph
                return Skip("; ".join(meta["notes"]))
    from adapler.progress import log
    from adapler.export.onnx import write_export_dir
    need = _graphs_needed(ctx.requested)
    for k in _NEEDS.get(graph, (graph,)):
        need[k] = True
    log(f"exporting {spec.name} ({', '.join(k for k, v in need.items() if v)} graph) to {out}")
    try:
        meta = write_export_dir(spec.ckpt, out, overwrite=True, allow_dense=True, custom=need["custom"],
                                std=need["std"], ort=need["ort"], quantize="int8" if need["int8"] else "none",
                                packed=need["packed"])
    except Exception as e:  # any exporter failure becomes a reported skip, not a crashed benchmark
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        ctx.export_errors[spec.name] = f"ONNX export failed: {type(e).__name__}: {msg}"
        return Skip(ctx.export_errors[spec.name])
    fp_path.write_text(json.dumps(fp, indent=2))
    if graph not in meta["files"]:
        return Skip("; ".join(meta.get("notes", [])) or f"the export has no {graph} graph")
    return out


def _ort(spec: ModelSpec, ctx: BackendContext, graph: str) -> Backend | Skip:
    d = export_dir(spec, ctx, graph)
    if isinstance(d, Skip):
        return d
    path = d / json.loads((d / "export.json").read_text())["files"][graph]
    return _session_backend(path, ctx, library="auto" if graph == "custom" else None)


def _session_backend(path: Path, ctx: BackendContext, library: str | None = "auto") -> Backend | Skip:
    """An ORT CPU session on ``path`` as a backend (the TokenDrop library registered when the graph needs it)."""
    from adapler.plugins.token_drop.ort_session import TokenDropLibraryMissing, create_session
    try:
        sess = create_session(path, library=library, threads=ctx.threads)  # DEFAULT_SPINNING, as recorded
    except (TokenDropLibraryMissing, FileNotFoundError) as e:
        return Skip(str(e).splitlines()[0])
    names = [i.name for i in sess.get_inputs()]

    def run(feed: Feed) -> np.ndarray:
        return sess.run(["logits"], {n: feed[n] for n in names})[0]

    run.session, run.path = sess, path  # type: ignore[attr-defined]
    return run


ort_custom = partial(_ort, graph="custom")
ort_std = partial(_ort, graph="std")


def _dense_reference(spec: ModelSpec, ctx: BackendContext, key: str) -> Path | Skip:
    """The dense model as users deploy it (``export.deploy.dense_reference_graphs``), cached per checkpoint."""
    from adapler.export.deploy import DeployError, dense_reference_graphs
    out = ctx.export_cache / spec.name / "reference"
    # token_type_ids as in the checkpoint's own export (sentence pairs, families that read them); in the
    # fingerprint, so references cached before they were passed are rebuilt
    token_types = bool(spec.config.get("pair", False))
    fp_path, fp = out / "bench_source.json", {**checkpoint_fingerprint(spec.ckpt), "token_types": token_types}
    if out.exists() and (not fp_path.exists() or json.loads(fp_path.read_text()) != fp):
        import shutil
        shutil.rmtree(out)  # stale: made from other weights or inputs
    try:
        files = dense_reference_graphs(spec.model, out, token_types=token_types)
    except DeployError as e:
        return Skip(str(e))
    fp_path.write_text(json.dumps(fp, indent=2))
    return files[key]


def _deployed(spec: ModelSpec, ctx: BackendContext, int8: bool) -> Backend | Skip:
    """``ort-opt`` / ``ort-int8``: dense = optimized standard export; pruned = ``model.ort.onnx`` (or its int8 form;
    methods without a fused graph fall back to ``model.int8.onnx`` for int8)."""
    from adapler import methods
    if not methods.get(spec.method).prunes:
        path = _dense_reference(spec, ctx, "hf-opt-int8" if int8 else "hf-opt")
    else:
        d = export_dir(spec, ctx, "ort-int8" if int8 else "ort")
        if isinstance(d, Skip) and int8:
            d = export_dir(spec, ctx, "int8")  # no fused graph: the quantized TokenDrop graph
        if isinstance(d, Skip):
            return d
        files = json.loads((d / "export.json").read_text())["files"]
        path = d / files["ort-int8" if "ort-int8" in files else "int8"] if int8 else d / files["ort"]
    return path if isinstance(path, Skip) else _session_backend(path, ctx)


ort_opt = partial(_deployed, int8=False)
ort_int8 = partial(_deployed, int8=True)


def _packed(spec: ModelSpec, ctx: BackendContext, int8: bool) -> Backend | Skip:
    """``ort-packed`` / ``ort-packed-int8``: ``model.ort.packed[.int8].onnx`` of any model with a fused graph (the
    dense one too). ``run.padded`` is the same graph padded (``model.ort[.int8].onnx``), what parity is checked against."""
    graph = "ort-packed-int8" if int8 else "ort-packed"
    d = export_dir(spec, ctx, graph)
    if isinstance(d, Skip):
        return d
    files = json.loads((d / "export.json").read_text())["files"]
    run = _session_backend(d / files[graph], ctx)
    if not isinstance(run, Skip):
        run.padded = d / files["ort-int8" if int8 else "ort"]  # type: ignore[attr-defined]
    return run


ort_packed = partial(_packed, int8=False)
ort_packed_int8 = partial(_packed, int8=True)


# ------------------------------------------------------------------------------------------------ TensorRT

def tensorrt(spec: ModelSpec, ctx: BackendContext) -> Backend | Skip:
    """TensorRT engine built from ``model.onnx`` (TokenDrop as plugin) and run with Polygraphy's TrtRunner."""
    from adapler.plugins.token_drop.trt.qdp import TENSORRT_AVAILABLE, TENSORRT_UNAVAILABLE_REASON
    if not TENSORRT_AVAILABLE:
        return Skip(TENSORRT_UNAVAILABLE_REASON)
    if not torch.cuda.is_available():
        return Skip(f"TensorRT needs a GPU: {NO_CUDA}")
    d = export_dir(spec, ctx, "custom")
    if isinstance(d, Skip):
        return d
    from adapler.export.trt import write_trt_bundle
    meta = json.loads((d / "export.json").read_text())
    names = meta["inputs"]
    try:
        report = write_trt_bundle(d / meta["files"]["custom"], d / "trt", min_shape=(1, 2),
                                  opt_shape=(1, min(64, ctx.max_length)), max_shape=(ctx.max_batch, ctx.max_length),
                                  input_names=names, std_onnx_path=None)
    except Exception as e:
        return Skip(f"TensorRT bundle failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    if not report.engine_built:
        return Skip(report.engine_reason)
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    runner = TrtRunner(EngineFromBytes(BytesFromPath(str(report.engine_path))))
    runner.activate()

    def run(feed: Feed) -> np.ndarray:
        return np.asarray(runner.infer({n: feed[n] for n in names})["logits"])

    run.runner = runner  # type: ignore[attr-defined]
    return run


Factory = Callable[[ModelSpec, BackendContext], "Backend | Skip"]

BACKENDS: dict[str, Factory] = {
    "torch": torch_cpu,
    "ort-custom": ort_custom,
    "ort-std": ort_std,
    "ort-opt": ort_opt,
    "ort-int8": ort_int8,
    "ort-packed": ort_packed,
    "ort-packed-int8": ort_packed_int8,
    "torch-cuda": torch_cuda,
    "tensorrt": tensorrt,
}


def resolve_backends(backends) -> dict[str, Factory]:
    """Names (from :data:`BACKENDS`) or a ``{name: factory}`` mapping -> ``{name: factory}``."""
    if isinstance(backends, dict):
        return dict(backends)
    out: dict[str, Factory] = {}
    for b in backends:
        if isinstance(b, tuple):
            out[b[0]] = b[1]
        elif b in BACKENDS:
            out[b] = BACKENDS[b]
        else:
            from . import BenchError
            raise BenchError(f"unknown backend {b!r}; use any of {', '.join(BACKENDS)}")
    return out


def release(backend: Any) -> None:
    """Drop what a backend holds (ORT session, TensorRT runner)."""
    runner = getattr(backend, "runner", None)
    if runner is not None:
        try:
            runner.deactivate()
        except Exception:
            pass
