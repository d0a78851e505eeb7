"""``adapler::TokenDrop`` as a TensorRT quickly deployable plugin (``tensorrt.plugin``, JIT impl).

Importing this module never fails: without TensorRT, ``TENSORRT_AVAILABLE`` is False and
``TENSORRT_UNAVAILABLE_REASON`` says why; :func:`register_qdp` then raises ``RuntimeError``.

Design (docs/deploy.md §5.3, NVIDIA sample ``samples/python/quickly_deployable_plugins`` "non_zero"):

- ``@trtp.register("adapler::TokenDrop")`` describes 4 outputs: ``hidden_c [B, L, D]``, ``mask_c [B, L]``
  int64, ``index [B, L]`` int64 and the size tensor ``L = trtp.size_tensor(opt=ceil(T/2), upper=T)``, whose
  ``.expr()`` is the data-dependent extent. The ONNX node has 3 outputs; the parser maps them to the
  first three plugin outputs (the size tensor is the last one).
- ``@trtp.impl`` wraps the TensorRT tensors with ``torch.as_tensor(..., device="cuda")``, runs
  :func:`plugins.token_drop.gpu.token_drop_gpu` on TensorRT's stream (:func:`run_token_drop`) and writes each
  output **densely** with the real ``L``: ``[B, L, D]`` row-major through :func:`dense_view`, whose CUDA array
  interface has no strides. ``Tensor.aliased(shape)`` is not used: in ``tensorrt.plugin`` it keeps TensorRT's
  upper-bound strides (``[B, T, D]``) and only replaces the shape, so with ``B > 1`` rows would land at the
  wrong offsets. The size tensor (INT32 in ``tensorrt.plugin``) receives ``L``.
- The impl runs Python at inference time (JIT); an ``aot_impl`` (Triton PTX baked into the engine) is not
  written yet: no NVIDIA sample combines data-dependent shapes with ``aot_impl``.

Checked in CI against the real ``tensorrt.plugin`` Python source (``tests/test_trt_qdp.py``, fake native
core, host memory); never run with TensorRT there. Usage on a TensorRT machine::

    from adapler.plugins.token_drop.trt.qdp import register_qdp
    register_qdp()   # before parsing the ONNX model (node op_type TokenDrop, plugin_namespace "adapler")
"""

# No `from __future__ import annotations`: tensorrt.plugin inspects real annotation objects.

from typing import Any, Callable

__all__ = [
    "PLUGIN_ID",
    "TENSORRT_AVAILABLE",
    "TENSORRT_UNAVAILABLE_REASON",
    "DenseView",
    "dense_view",
    "is_registered",
    "register_qdp",
    "run_token_drop",
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
        with _STREAM(stream):
            run_token_drop(hidden, scores, mask, threshold, outputs, stream, _AS_TENSOR)


class DenseView:
    """``shape`` elements of ``typestr`` at ``ptr``, row-major: a CUDA array interface without strides."""

    def __init__(self, ptr: int, shape: tuple, typestr: str, stream: int | None):
        self.ptr, self.shape, self.typestr, self.stream = int(ptr), tuple(int(s) for s in shape), typestr, stream

    @property
    def __cuda_array_interface__(self) -> dict:
        # strides None = C-contiguous (CUDA Array Interface v3); stream 0 is not allowed there, None means "same".
        return {"shape": self.shape, "typestr": self.typestr, "data": (self.ptr, False), "version": 3,
                "strides": None, "stream": self.stream or None}


def dense_view(tensor: Any, shape: tuple, stream: int | None = None) -> DenseView:
    """A dense ``shape`` view of a ``tensorrt.plugin.Tensor``'s buffer (its data pointer and dtype)."""
    import numpy as np

    return DenseView(tensor.data_ptr, shape, np.dtype(trt.nptype(tensor.dtype)).str, stream)


def run_token_drop(hidden: Any, scores: Any, mask: Any, threshold: Any, outputs: Any, stream: int | None,
                   as_tensor: Callable[[Any], Any]) -> int:
    """The impl's body: TokenDrop on the inputs, dense ``hidden_c``/``mask_c``/``index`` and ``L`` written into
    ``outputs`` (4 ``tensorrt.plugin.Tensor``); returns ``L``. ``as_tensor`` turns an object with a CUDA array
    interface into a torch tensor (``torch.as_tensor(x, device="cuda")`` in TensorRT)."""
    from ..gpu import token_drop_gpu

    hidden_c, mask_c, index = token_drop_gpu(*(as_tensor(t) for t in (hidden, scores, mask, threshold)))
    length = int(hidden_c.shape[1])
    for out, value in zip(outputs[:3], (hidden_c, mask_c, index)):
        as_tensor(dense_view(out, tuple(value.shape), stream)).copy_(value)
    as_tensor(dense_view(outputs[3], (), stream)).fill_(length)  # 0-D size tensor
    return length


def _cuda_tensor(obj: Any) -> Any:
    import torch

    return torch.as_tensor(obj, device="cuda")


def _cuda_stream(stream: int) -> Any:
    import torch

    return torch.cuda.stream(torch.cuda.ExternalStream(stream))


# Device binding of the impl, looked up at call time: the CPU test swaps these two for host memory.
_AS_TENSOR: Callable[[Any], Any] = _cuda_tensor
_STREAM: Callable[[int], Any] = _cuda_stream


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
