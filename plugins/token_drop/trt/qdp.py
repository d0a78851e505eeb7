"""``adapler::TokenDrop`` as a TensorRT quickly deployable plugin (``tensorrt.plugin``, JIT impl).

Importing this module never fails: without TensorRT, ``TENSORRT_AVAILABLE`` is False and
``TENSORRT_UNAVAILABLE_REASON`` says why; :func:`register_qdp` then raises ``RuntimeError``.

Design (docs/deploy.md §5.3, NVIDIA sample ``samples/python/quickly_deployable_plugins`` "non_zero"):

- ``@trtp.register("adapler::TokenDrop")`` describes 4 outputs: ``hidden_c [B, L, D]``, ``mask_c [B, L]``
  int64, ``index [B, L]`` int64 and the size tensor ``L = trtp.size_tensor(opt=ceil(T/2), upper=T)``, whose
  ``.expr()`` is the data-dependent extent. The ONNX node has 3 outputs; the parser maps them to the
  first three plugin outputs (the size tensor is the last one).
- ``@trtp.impl`` wraps the TensorRT tensors with ``torch.as_tensor(..., device="cuda")``, runs
  :func:`plugins.token_drop.gpu.token_drop_gpu` on TensorRT's stream, copies into the outputs viewed with
  the real shapes (``outputs[i].aliased(shape)``) and writes ``L`` into the size tensor.
- The impl runs Python at inference time (JIT); an ``aot_impl`` (Triton PTX baked into the engine) is not
  written yet: no NVIDIA sample combines data-dependent shapes with ``aot_impl``.

Not run in CI: TensorRT cannot be installed there. Usage on a TensorRT machine::

    from plugins.token_drop.trt.qdp import register_qdp
    register_qdp()   # before parsing the ONNX model (node op_type TokenDrop, plugin_namespace "adapler")
"""

# No `from __future__ import annotations`: tensorrt.plugin inspects real annotation objects.

__all__ = [
    "PLUGIN_ID",
    "TENSORRT_AVAILABLE",
    "TENSORRT_UNAVAILABLE_REASON",
    "is_registered",
    "register_qdp",
]

PLUGIN_ID = "adapler::TokenDrop"

_REASON = (
    "TensorRT not installed: full TensorRT (libnvinfer, ONNX parser, builder) is not available from "
    "PyPI/Debian here — the PyPI packages are download stubs; install TensorRT from NVIDIA to run this."
)

try:
    import tensorrt as trt  # noqa: F401
    import tensorrt.plugin as trtp

    TENSORRT_AVAILABLE = True
    TENSORRT_UNAVAILABLE_REASON = ""
except Exception as _exc:  # ImportError, or the bindings wheel without libnvinfer (OSError/ImportError)
    trt = None
    trtp = None
    TENSORRT_AVAILABLE = False
    TENSORRT_UNAVAILABLE_REASON = _REASON
    _IMPORT_ERROR = f"{type(_exc).__name__}: {_exc}"
else:
    _IMPORT_ERROR = ""

_REGISTERED = False


def is_registered() -> bool:
    """True once :func:`register_qdp` succeeded in this process."""
    return _REGISTERED


def _define() -> None:
    """Apply the ``tensorrt.plugin`` decorators (only called when TensorRT imported)."""
    from typing import Tuple

    @trtp.register(PLUGIN_ID)
    def token_drop_desc(
        hidden: trtp.TensorDesc, scores: trtp.TensorDesc, mask: trtp.TensorDesc, threshold: trtp.TensorDesc
    ) -> Tuple[trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc, trtp.TensorDesc]:
        batch, seq, dim = hidden.shape_expr[0], hidden.shape_expr[1], hidden.shape_expr[2]
        length = trtp.size_tensor(trtp.cdiv(seq, 2), seq)  # opt = ceil(T/2) (>= 1), upper bound = T
        hidden_c = trtp.from_shape_expr((batch, length.expr(), dim), dtype=hidden.dtype)
        mask_c = trtp.from_shape_expr((batch, length.expr()), dtype=trt.int64)
        index = trtp.from_shape_expr((batch, length.expr()), dtype=trt.int64)
        return hidden_c, mask_c, index, length

    @trtp.impl(PLUGIN_ID)
    def token_drop_impl(
        hidden: trtp.Tensor,
        scores: trtp.Tensor,
        mask: trtp.Tensor,
        threshold: trtp.Tensor,
        outputs: Tuple[trtp.Tensor],
        stream: int,
    ) -> None:
        import torch

        from plugins.token_drop.gpu import token_drop_gpu

        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            h = torch.as_tensor(hidden, device="cuda")
            s = torch.as_tensor(scores, device="cuda")
            m = torch.as_tensor(mask, device="cuda")
            thr = torch.as_tensor(threshold, device="cuda")
            hidden_c, mask_c, index = token_drop_gpu(h, s, m, thr)
            for i, value in enumerate((hidden_c, mask_c, index)):
                out = torch.as_tensor(outputs[i].aliased(tuple(value.shape)), device="cuda")
                out.copy_(value)
            size = torch.as_tensor(outputs[3], device="cuda").reshape(-1)
            size.fill_(int(hidden_c.shape[1]))


def register_qdp() -> None:
    """Register ``adapler::TokenDrop`` with ``tensorrt.plugin`` (idempotent).

    Raises:
        RuntimeError: if TensorRT is not importable (message: ``TENSORRT_UNAVAILABLE_REASON``).
    """
    global _REGISTERED
    if not TENSORRT_AVAILABLE:
        detail = f" ({_IMPORT_ERROR})" if _IMPORT_ERROR else ""
        raise RuntimeError(TENSORRT_UNAVAILABLE_REASON + detail)
    if _REGISTERED:
        return
    _define()
    _REGISTERED = True
