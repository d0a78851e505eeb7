"""The C++ TensorRT plugin compiled, linked and driven on the CPU against real TensorRT headers.

For each header set found by ``plugins.token_drop.trt.toolchain.find_trt_headers`` (a real install through
TRT_ROOT, else ADAPLER_TRT_HEADERS, else the vendored 10.3.0 and 11.1 sets beside the clone):

- syntax-only compiles with no diagnostics, for both registration modes and both size-tensor types;
- ``-O2 -fPIC`` objects linked into shared libraries with ``-Wl,--no-undefined`` against a stub libnvinfer
  (or the real one) and the CUDA kernel compiled by nvcc;
- the build-phase callbacks driven through ``tests/trt_harness/plugin_harness.cpp`` (fake registry and
  expression builder; the plugin library is dlopen'ed as trtexec does);
- the CMake build (TensorRT headers as SYSTEM: no warnings).

Nothing here runs TensorRT or a kernel: that needs the TensorRT runtime and a GPU (bench/gpu_check.sh).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from adapler.plugins.token_drop.trt.toolchain import (CUDA_DIR, PLUGIN_DIR, TrtHeaders, find_cuda_root, find_cxx, find_nvcc,
                                              find_trt_headers, run_tool)

HARNESS_DIR = Path(__file__).resolve().parent / "trt_harness"
HEADERS, NO_HEADERS = find_trt_headers()
CUDA_ROOT = find_cuda_root()
CXX = find_cxx()
NVCC = find_nvcc(CUDA_ROOT)
KCHAR = 6  # PluginFieldType::kCHAR in both header sets
# The size-tensor type the plugin declares, per TensorRT major version. Both headers say (NvInferRuntime.h,
# IPluginV3OneBuild::getOutputDataTypes): "The data type for any size tensor outputs must be DataType::kINT32".
SIZE_TENSOR_TYPE = {10: "INT32", 11: "INT32"}

if not HEADERS:
    header_params = [pytest.param(None, id="no-headers", marks=pytest.mark.skip(reason=NO_HEADERS))]
else:
    header_params = [pytest.param(h, id=h.label) for h in HEADERS]
needs_toolchain = pytest.mark.skipif(
    CXX is None or CUDA_ROOT is None,
    reason="no C++ compiler (g++/c++)" if CXX is None else
    "no CUDA toolkit headers (include/cuda_runtime_api.h under CUDA_HOME, CUDA_PATH or /usr/local/cuda*)")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found: the CUDA kernel the plugin links cannot be built")
pytestmark = [needs_toolchain, pytest.mark.parametrize("headers", header_params)]
MODES = [(dyn, int64) for dyn in (0, 1) for int64 in (0, 1)]


def flags(h: TrtHeaders, dyn: int = 0, int64: int = 0) -> list[str]:
    return ["-std=c++17", "-Wall", "-Wextra", "-isystem", str(h.include_dir), "-isystem", str(CUDA_ROOT / "include"),
            "-I", str(CUDA_DIR), f"-DADAPLER_TRT_DYNAMIC_REGISTRATION={dyn}", f"-DADAPLER_SIZE_TENSOR_INT64={int64}"]


def cudart_static() -> Path:
    found = sorted(CUDA_ROOT.glob("lib64/libcudart_static.a")) + sorted(CUDA_ROOT.glob("targets/*/lib/libcudart_static.a"))
    if not found:
        pytest.skip(f"no libcudart_static.a under {CUDA_ROOT}")
    return found[0]


def ok(result) -> None:
    """Succeeded with no diagnostics at all (the TensorRT and CUDA headers are -isystem)."""
    assert result.returncode == 0 and result.output == "", " ".join(result.cmd) + "\n" + result.output


class Builds:
    """Compiles once per module: kernel object, stub libnvinfer, plugin libraries, harness, harness runs."""

    def __init__(self, root: Path):
        self.root, self.cache = root, {}

    def once(self, key, make):
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def kernel(self) -> Path:
        def make():
            out = self.root / "token_drop_kernel.o"  # one arch (Jetson Orin): the link only needs host symbols
            ok(run_tool([NVCC, "-c", "-std=c++17", "-O3", "-Xcompiler", "-fPIC", "-gencode",
                         "arch=compute_87,code=sm_87", CUDA_DIR / "token_drop_kernel.cu", "-o", out]))
            return out
        return self.once("kernel", make)

    def nvinfer(self, h: TrtHeaders) -> list[str]:
        """Linker arguments for libnvinfer: the real one (TRT_ROOT) or a stub defining getPluginRegistry()."""
        if h.lib_dir is not None:
            return ["-L", str(h.lib_dir), "-lnvinfer", f"-Wl,-rpath,{h.lib_dir}"]

        def make():
            d = self.root / h.label / "stub"
            d.mkdir(parents=True, exist_ok=True)
            ok(run_tool([CXX, *flags(h), "-shared", "-fPIC", HARNESS_DIR / "stub_nvinfer.cpp", "-o", d / "libnvinfer.so"]))
            return ["-L", str(d), "-lnvinfer", f"-Wl,-rpath,{d}"]
        return self.once(("stub", h.label), make)

    def library(self, h: TrtHeaders, dyn: int, int64: int) -> Path:
        def make():
            d = self.root / h.label
            d.mkdir(parents=True, exist_ok=True)
            obj = d / f"plugin_{dyn}{int64}.o"
            ok(run_tool([CXX, *flags(h, dyn, int64), "-O2", "-fPIC", "-c", PLUGIN_DIR / "token_drop_plugin.cpp",
                         "-o", obj]))
            lib = d / f"libadapler_token_drop_trt{'_dyn' if dyn else ''}_{int64}.so"
            ok(run_tool([CXX, "-shared", "-o", lib, obj, self.kernel(), *self.nvinfer(h), cudart_static(),
                         "-ldl", "-lpthread", "-lrt", "-Wl,--no-undefined"]))
            return lib
        return self.once(("lib", h.label, dyn, int64), make)

    def observe(self, h: TrtHeaders, dyn: int, int64: int) -> dict:
        """Run the harness on one library and return what it printed."""
        def harness():
            exe = self.root / h.label / "plugin_harness"
            ok(run_tool([CXX, *flags(h), "-O1", HARNESS_DIR / "plugin_harness.cpp", "-o", exe, "-rdynamic", "-ldl"]))
            return exe

        def make():
            exe = self.once(("harness", h.label), harness)
            result = run_tool([exe, "dyn" if dyn else "static", self.library(h, dyn, int64)], timeout=60)
            assert result.returncode == 0, result.output
            return json.loads(result.stdout)  # stderr: the static library's log lines (no logger finder)
        return self.once(("observe", h.label, dyn, int64), make)


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> Builds:
    return Builds(tmp_path_factory.mktemp("trt_plugin"))


def align(x: int, a: int = 256) -> int:
    return (x + a - 1) // a * a


# ------------------------------------------------------------------------------------------------
# compile and link
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dyn,int64", MODES)
def test_syntax_only_without_diagnostics(headers, dyn, int64):
    ok(run_tool([CXX, *flags(headers, dyn, int64), "-Wpedantic", "-fsyntax-only", PLUGIN_DIR / "token_drop_plugin.cpp"]))


@needs_nvcc
@pytest.mark.parametrize("dyn,int64", MODES)
def test_object_compile_and_link_no_undefined(builds, headers, dyn, int64):
    lib = builds.library(headers, dyn, int64)  # asserts: no diagnostics, link with -Wl,--no-undefined succeeded
    assert lib.is_file() and lib.stat().st_size > 0


@needs_nvcc
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cmake_build_without_warnings(builds, headers, tmp_path):
    if headers.lib_dir is not None:
        trt_root = Path(os.environ["TRT_ROOT"])
    else:  # a TensorRT-shaped folder: the vendored headers and the stub as lib/libnvinfer.so
        trt_root = tmp_path / "trt"
        (trt_root / "lib").mkdir(parents=True)
        (trt_root / "include").symlink_to(headers.include_dir)
        stub_dir = Path(builds.nvinfer(headers)[1])
        shutil.copy(stub_dir / "libnvinfer.so", trt_root / "lib" / "libnvinfer.so")
    build = tmp_path / "build"
    configure = run_tool(["cmake", "-S", PLUGIN_DIR, "-B", build, f"-DTRT_ROOT={trt_root}",
                          "-DCMAKE_CUDA_ARCHITECTURES=87", f"-DCMAKE_CUDA_COMPILER={NVCC}"])
    assert configure.returncode == 0, configure.output
    result = run_tool(["cmake", "--build", build, "-j", "2"])
    assert result.returncode == 0, result.output
    assert "warning" not in result.output.lower(), result.output
    for name in ("libadapler_token_drop_trt.so", "libadapler_token_drop_trt_dyn.so"):
        assert (build / name).is_file(), name


# ------------------------------------------------------------------------------------------------
# build-phase callbacks through the harness
# ------------------------------------------------------------------------------------------------
@needs_nvcc
def test_registration_static_and_dynamic(builds, headers):
    static, dyn = builds.observe(headers, 0, 0), builds.observe(headers, 1, 0)
    assert static["trt_version"] == ".".join(headers.version.split(".")[:2])
    me = {"name": "TokenDrop", "version": "1", "namespace": "adapler"}
    # static initializer registers into the process's registry under the "adapler" namespace
    assert static["registered_on_load"] == [dict(me, registry_namespace="adapler")]
    assert not static["exports_getCreators"] and not static["exports_setLoggerFinder"]
    # the _dyn library registers nothing on load and hands its creator to IPluginRegistry::loadLibrary
    assert dyn["registered_on_load"] == [] and dyn["nb_creators"] == 1
    assert dyn["exports_getCreators"] and dyn["exports_setLoggerFinder"]
    for seen in (static, dyn):
        assert seen["creator_interface"] == ["PLUGIN CREATOR_V3ONE", 1, 0]
        assert seen["creator"] == me and seen["plugin"] == me and seen["nb_outputs"] == 4


@needs_nvcc
def test_fields_as_the_onnx_parser_passes_them(builds, headers):
    dyn = builds.observe(headers, 1, 0)
    # listed, so onnx-tensorrt's loadFields forwards the node's attributes (kCHAR, NUL-terminated)
    assert dyn["field_names"] == [["plugin_version", KCHAR], ["plugin_namespace", KCHAR]]
    assert dyn["create"] == {"no_fields": True, "parser_fields": True, "python_api_fields": True,
                             "unknown_field_ignored": True, "wrong_version": False, "wrong_namespace": False,
                             "version_prefix_only": False, "version_not_a_string": False}
    logged = " | ".join(dyn["logged"])  # setLoggerFinder's logger receives the reasons
    assert "plugin_version='2' but this plugin is '1'" in logged
    assert "plugin_namespace='other' but this plugin is 'adapler'" in logged
    assert "plugin_version must be a string (kCHAR)" in logged
    assert builds.observe(headers, 0, 0)["create"] == dyn["create"]


@needs_nvcc
def test_output_shapes_and_size_tensor(builds, headers):
    seen = builds.observe(headers, 0, 0)
    want = [["B", "size3", "D"], ["B", "size3"], ["B", "size3"], []]  # hidden_c, mask_c, index, 0-D L
    assert seen["output_shapes"] == want and seen["output_shapes_broadcast_threshold"] == want
    assert seen["size_tensor_decls"] == [{"index": 3, "opt": "ceil_div(T,2)", "upper": "T"}]
    assert seen["output_shapes_hidden_rank2"] is None  # rejected, not guessed


@needs_nvcc
@pytest.mark.parametrize("int64", [0, 1])
def test_output_types_per_version(builds, headers, int64):
    seen = builds.observe(headers, 0, int64)
    size = "INT64" if int64 else SIZE_TENSOR_TYPE[headers.major]
    assert seen["output_types"]["FLOAT"] == ["FLOAT", "INT64", "INT64", size]
    assert seen["output_types"]["HALF"] == ["HALF", "INT64", "INT64", size]
    assert {k for k, v in seen["output_types"].items() if v is not None} == {"FLOAT", "HALF"}
    assert seen["formats_float"][7] == [size]


@needs_nvcc
def test_supports_format_combination(builds, headers):
    seen = builds.observe(headers, 0, 0)
    # hidden, scores, mask, threshold, hidden_c, mask_c, index, L: all LINEAR
    assert seen["formats_float"] == [["FLOAT", "HALF"], ["FLOAT"], ["INT64"], ["FLOAT"], ["FLOAT"], ["INT64"], ["INT64"],
                                     ["INT32"]]
    assert seen["formats_half"][4] == ["HALF"]  # hidden_c follows hidden
    assert seen["formats_chw4"] == [[]] * 8


@needs_nvcc
def test_workspace_size_and_runtime_callbacks(builds, headers):
    seen = builds.observe(headers, 1, 0)
    for w in seen["workspace"]:
        b, t = w["B"], w["T"]
        # kernel: order int32[B*T] and counts int64[B], each 256-aligned (token_drop_kernel.h)
        assert w["kernel_bytes"] == align(4 * b * t) + align(8 * b)
        # plugin: kernel scratch, one 256-byte slot for L, 256 bytes of alignment slack
        assert w["bytes"] == align(w["kernel_bytes"]) + 256 + 256
    assert seen["configure_rc"] == [0, -1]
    assert seen["serialized_fields"] == 0 and seen["clone_ok"] and seen["attach_ok"]
