"""``plugins/token_drop/trt/qdp.py`` against NVIDIA's real ``tensorrt.plugin`` Python source.

``tensorrt.plugin`` is pure Python shipped in the ``tensorrt-cu13-bindings`` wheel; its native core
(``tensorrt.so``) needs libnvinfer and a GPU. The test downloads that wheel (pinned, cached under
``build/``; skipped with the reason when pip cannot get it), loads ``tensorrt_bindings/plugin`` as
``tensorrt.plugin`` on top of a small fake core (``FakeCore`` below: enums, descriptors, an expression
builder that records expressions, a plugin registry), and drives the real registration, shape, type and
enqueue code. The impl's device binding (``torch.as_tensor(..., device="cuda")`` on TensorRT's stream) is
swapped for host memory read through the same CUDA array interface, so no GPU is needed. TensorRT does
not run here.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import os
import subprocess
import sys
import types
import warnings
import zipfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (ROOT, TOKEN_DROP_CASES, TOKEN_DROP_GOLDEN, TOKEN_DROP_OUTPUTS, assert_token_drop_outputs,
                      token_drop_inputs)

WHEEL = "tensorrt-cu13-bindings==11.1.0.106"  # the version of the vendored 11.1 headers
CACHE = Path(os.environ.get("ADAPLER_TRT_BINDINGS_DIR", ROOT / "build" / "trt_bindings"))


def plugin_source() -> Path:
    """``tensorrt_bindings/plugin`` from the wheel (downloaded once into CACHE), or skip with the reason."""
    target = CACHE / "tensorrt_bindings" / "plugin"
    if (target / "_lib.py").is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("tensorrt_cu13_bindings-11.1.0.106-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
               "--platform", "manylinux_2_28_x86_64", "-d", str(CACHE), WHEEL]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot download {WHEEL}: {exc}")
        wheels = sorted(CACHE.glob("tensorrt_cu13_bindings-11.1.0.106-*.whl"))
        if proc.returncode != 0 or not wheels:
            pytest.skip(f"cannot download {WHEEL}: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    with zipfile.ZipFile(wheels[0]) as zf:  # only the pure-Python part
        for name in zf.namelist():
            if name.startswith("tensorrt_bindings/plugin/") and name.endswith(".py"):
                zf.extract(name, CACHE)
    return target


# ------------------------------------------------------------------------------------------------
# fake native core: just what tensorrt.plugin touches on these paths
# ------------------------------------------------------------------------------------------------
class DataType(enum.Enum):
    FLOAT, HALF, INT8, INT32, BOOL, UINT8, FP8, BF16, INT64, INT4 = range(10)


NPTYPE = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
          DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}


class Expr:
    """Stands for trt.IDimensionExpr: text of the expression, constant value if any."""

    def __init__(self, text: str, value: int | None = None, size: bool = False):
        self.text, self.value, self.size = text, value, size

    def is_constant(self) -> bool:
        return self.value is not None

    def get_constant_value(self) -> int:
        return self.value

    def is_size_tensor(self) -> bool:
        return self.size


class ExprBuilder:
    def __init__(self):
        self.size_tensors = []

    def constant(self, value: int) -> Expr:
        return Expr(str(value), value)

    def operation(self, op, a: Expr, b: Expr) -> Expr:
        return Expr(f"{op.name.lower()}({a.text},{b.text})")

    def declare_size_tensor(self, index: int, opt: Expr, upper: Expr) -> Expr:
        self.size_tensors.append((index, opt.text, upper.text))
        return Expr(f"size{index}", size=True)


class Registry:
    def __init__(self):
        self.creators = {}

    def register_creator(self, creator, namespace: str) -> bool:
        self.creators[(creator.name, creator.plugin_version, namespace)] = creator
        return True

    def get_creator(self, name: str, version: str, namespace: str):
        return self.creators[(name, version, namespace)]


class PluginTensorDesc:
    def __init__(self, dims=(), type=None):  # noqa: A002 (TensorRT's attribute name)
        self.dims, self.type, self.format, self.scale = tuple(dims), type, "LINEAR", 1.0


def make_core() -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__path__ = []  # a package, so that tensorrt.plugin resolves
    base = type("Interface", (), {"__init__": lambda self, *a, **k: None})
    for name in ("IPluginV3", "IPluginV3QuickCore", "IPluginV3QuickBuild", "IPluginV3QuickRuntime",
                 "IPluginCreatorV3Quick", "ISymExpr", "ITensor", "IExprBuilder", "DynamicPluginTensorDesc"):
        setattr(trt, name, type(name, (base,), {}))
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, *a: None, "log": lambda *a: None})
    trt.DataType = DataType
    trt.float32, trt.float16, trt.int8, trt.int32, trt.int64, trt.bool = (
        DataType.FLOAT, DataType.HALF, DataType.INT8, DataType.INT32, DataType.INT64, DataType.BOOL)
    trt.nptype = NPTYPE.__getitem__
    trt.TensorFormat = enum.Enum("TensorFormat", "LINEAR")
    trt.DimensionOperation = enum.Enum("DimensionOperation", "SUM PROD MAX MIN SUB EQUAL LESS FLOOR_DIV CEIL_DIV")
    trt.PluginArgType = enum.Enum("PluginArgType", "INT")
    trt.PluginArgDataType = enum.Enum("PluginArgDataType", "INT8 INT16 INT32")
    trt.PluginFieldType = enum.Enum("PluginFieldType", "FLOAT16 FLOAT32 FLOAT64 INT8 INT16 INT32 CHAR DIMS UNKNOWN "
                                                       "BF16 INT64 FP8")
    trt.TensorRTPhase = enum.Enum("TensorRTPhase", "BUILD RUNTIME")
    trt.IDimensionExpr = Expr
    trt.DimsExprs = lambda n: [None] * n
    trt.Dims = type("Dims", (tuple,), {"MAX_DIMS": 8})
    trt.PluginTensorDesc = PluginTensorDesc
    trt.PluginField = lambda name, data=None, type=None: types.SimpleNamespace(name=name, data=data, type=type)
    trt.PluginFieldCollection = list
    registry = Registry()
    trt.get_plugin_registry = lambda: registry
    return trt


@pytest.fixture
def real_trtp(monkeypatch):
    """The real tensorrt.plugin on the fake core, and qdp.py freshly imported against it."""
    src = plugin_source()
    core = make_core()
    monkeypatch.setitem(sys.modules, "tensorrt", core)
    spec = importlib.util.spec_from_file_location("tensorrt.plugin", src / "__init__.py",
                                                  submodule_search_locations=[str(src)])
    trtp = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    core.plugin = trtp
    with warnings.catch_warnings():  # NVIDIA's docstrings have invalid escape sequences
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(trtp)
    # a fresh copy bound to the fake core, inside its package so that its relative imports resolve
    qspec = importlib.util.spec_from_file_location("adapler.plugins.token_drop.trt._qdp_real",
                                                   ROOT / "plugins/token_drop/trt/qdp.py")
    qdp = importlib.util.module_from_spec(qspec)
    qspec.loader.exec_module(qdp)
    yield core, trtp, qdp
    for name in [n for n in sys.modules if n.startswith("tensorrt.plugin.")]:
        del sys.modules[name]


def host_tensor(obj) -> torch.Tensor:
    """Read a CUDA array interface over host memory as a consumer must: ``strides`` None means C-contiguous."""
    cai = obj.__cuda_array_interface__
    dtype, shape = np.dtype(cai["typestr"]), tuple(cai["shape"])
    strides = cai.get("strides") or tuple(int(np.prod(shape[i + 1:])) * dtype.itemsize for i in range(len(shape)))
    extent = dtype.itemsize + sum((n - 1) * s for n, s in zip(shape, strides))
    buf = (ctypes.c_char * extent).from_address(cai["data"][0])
    return torch.from_numpy(np.ndarray(shape, dtype, buffer=buf, strides=strides))


def registered_plugin(core, trtp, qdp):
    qdp.register_qdp()
    creator = core.get_plugin_registry().get_creator("TokenDrop", "1", "adapler")
    return creator.create_plugin("TokenDrop", "adapler", [], core.TensorRTPhase.BUILD)


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------
def test_registration_types_and_shapes(real_trtp):
    core, trtp, qdp = real_trtp
    plugin = registered_plugin(core, trtp, qdp)  # real decorators validated the signatures
    assert qdp.is_registered() and trtp._lib.QDP_REGISTRY["adapler::TokenDrop"].num_outputs == 4
    assert plugin.get_num_outputs() == 4
    types_in = [DataType.HALF, DataType.FLOAT, DataType.INT64, DataType.FLOAT]
    assert plugin.get_output_data_types(types_in, [3, 2, 2, 1]) == [
        DataType.HALF, DataType.INT64, DataType.INT64, DataType.INT32]  # size tensor: INT32, as in the C++ plugin
    builder = ExprBuilder()
    dims = [[Expr("B"), Expr("T"), Expr("D")], [Expr("B"), Expr("T")], [Expr("B"), Expr("T")], [Expr("B")]]
    shapes = plugin.get_output_shapes(dims, [], builder)
    assert [[e.text for e in s] for s in shapes] == [["B", "size3", "D"], ["B", "size3"], ["B", "size3"], []]
    assert builder.size_tensors == [(3, "ceil_div(T,2)", "T")]


@pytest.mark.parametrize("case", TOKEN_DROP_CASES)
def test_enqueue_writes_dense_outputs(real_trtp, monkeypatch, case):
    """Through the real enqueue, on the golden cases: outputs dense [B, L, D] at the start of TensorRT's
    upper-bound buffers."""
    core, trtp, qdp = real_trtp
    monkeypatch.setattr(qdp, "_AS_TENSOR", host_tensor)
    monkeypatch.setattr(qdp, "_STREAM", lambda stream: nullcontext())
    plugin = registered_plugin(core, trtp, qdp)
    inputs = list(token_drop_inputs(case))
    (b, t, d), dtype = inputs[0].shape, inputs[0].dtype
    # TensorRT allocates outputs for the upper bound L = T and passes upper-bound strides
    outs = [np.full((b, t, d), 7, dtype), np.full((b, t), 7, np.int64), np.full((b, t), 7, np.int64),
            np.zeros((), np.int32)]
    ttype = {np.dtype(v): k for k, v in NPTYPE.items()}

    def descs(arrays, dims):
        return [PluginTensorDesc(s, ttype[a.dtype]) for a, s in zip(arrays, dims)]

    def strides(a):
        return tuple(s // a.itemsize for s in a.strides)

    out_dims = [(b, -1, d), (b, -1), (b, -1), ()]  # L is data-dependent
    plugin.enqueue(descs(inputs, [a.shape for a in inputs]), descs(outs, out_dims), [a.ctypes.data for a in inputs],
                   [a.ctypes.data for a in outs], [strides(a) for a in inputs], [strides(a) for a in outs], 0)
    want = [TOKEN_DROP_GOLDEN[case][k] for k in TOKEN_DROP_OUTPUTS]
    assert int(outs[3]) == want[0].shape[1]  # the size tensor holds L
    assert_token_drop_outputs([got.reshape(-1)[:ref.size].reshape(ref.shape)  # row-major with the real L
                               for got, ref in zip(outs[:3], want)], case)
    for got, ref in zip(outs[:3], want):
        assert (got.reshape(-1)[ref.size:] == 7).all()  # nothing written beyond B*L*D


def test_real_aliased_keeps_upper_bound_strides(real_trtp):
    """Why qdp.py does not use Tensor.aliased: it keeps TensorRT's strides and only replaces the shape."""
    core, trtp, qdp = real_trtp
    out = trtp.Tensor()
    out.dtype, out.shape, out.data_ptr, out.strides = DataType.FLOAT, trtp.Shape((3, 20, 8)), 4096, (160, 8, 1)
    out._stream = 0
    aliased = out.aliased((3, 5, 8)).__cuda_array_interface__
    assert aliased["shape"] == (3, 5, 8) and aliased["strides"] == (640, 32, 4)  # [B, T, D] strides: not dense
    dense = qdp.dense_view(out, (3, 5, 8)).__cuda_array_interface__
    assert dense["shape"] == (3, 5, 8) and dense["strides"] is None and dense["data"] == (4096, False)
    assert dense["typestr"] == "<f4"
