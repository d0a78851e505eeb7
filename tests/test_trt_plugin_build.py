"""The C++ TensorRT plugins (TokenDrop, ContributionDrop) compiled, linked and driven on the CPU against
real TensorRT headers.

For each header set found by ``plugins.token_drop.trt.toolchain.find_trt_headers`` (a real install through
TRT_ROOT, else ADAPLER_TRT_HEADERS, else the vendored 10.3.0 and 11.1 sets beside the clone):

- for each plugin: syntax-only compiles with no diagnostics, for both registration modes and both size-tensor
  types;
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
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapler.plugins.token_drop.trt.toolchain import (CUDA_DIR, PLUGIN_DIR, TrtHeaders, find_cuda_root, find_cxx, find_nvcc,
                                              find_trt_headers, run_tool)

HARNESS_DIR = Path(__file__).resolve().parent / "trt_harness"
CD_DIR = PLUGIN_DIR.parents[1] / "contribution_drop"


@dataclass(frozen=True)
class Plugin:
    """One plugin's sources: its .cpp, the CUDA kernel it links, include folders and library name."""
    name: str
    source: Path
    kernel: Path
    includes: tuple[Path, ...]
    library: str
    cmake_dir: Path


PLUGINS = {
    "TokenDrop": Plugin("TokenDrop", PLUGIN_DIR / "token_drop_plugin.cpp", CUDA_DIR / "token_drop_kernel.cu",
                        (CUDA_DIR,), "libadapler_token_drop_trt", PLUGIN_DIR),
    "ContributionDrop": Plugin("ContributionDrop", CD_DIR / "trt" / "contribution_drop_plugin.cpp",
                               CD_DIR / "cuda" / "contribution_drop_kernel.cu", (CD_DIR / "cuda", PLUGIN_DIR),
                               "libadapler_contribution_drop_trt", CD_DIR / "trt"),
}
TD, CD = PLUGINS["TokenDrop"], PLUGINS["ContributionDrop"]
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
each_plugin = pytest.mark.parametrize("plugin", list(PLUGINS.values()), ids=list(PLUGINS))


def flags(h: TrtHeaders, plugin: Plugin = TD, dyn: int = 0, int64: int = 0) -> list[str]:
    includes = [arg for d in plugin.includes for arg in ("-I", str(d))]
    return ["-std=c++17", "-Wall", "-Wextra", "-isystem", str(h.include_dir), "-isystem", str(CUDA_ROOT / "include"),
            *includes, f"-DADAPLER_TRT_DYNAMIC_REGISTRATION={dyn}", f"-DADAPLER_SIZE_TENSOR_INT64={int64}"]


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

    def kernel(self, plugin: Plugin) -> Path:
        def make():
            out = self.root / (plugin.kernel.stem + ".o")  # one arch (Jetson Orin): the link only needs host symbols
            ok(run_tool([NVCC, "-c", "-std=c++17", "-O3", "-Xcompiler", "-fPIC", "-gencode",
                         "arch=compute_87,code=sm_87", plugin.kernel, "-o", out]))
            return out
        return self.once(("kernel", plugin.name), make)

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

    def library(self, h: TrtHeaders, dyn: int, int64: int, plugin: Plugin = TD) -> Path:
        def make():
            d = self.root / h.label
            d.mkdir(parents=True, exist_ok=True)
            obj = d / f"{plugin.name}_{dyn}{int64}.o"
            ok(run_tool([CXX, *flags(h, plugin, dyn, int64), "-O2", "-fPIC", "-c", plugin.source, "-o", obj]))
            lib = d / f"{plugin.library}{'_dyn' if dyn else ''}_{int64}.so"
            ok(run_tool([CXX, "-shared", "-o", lib, obj, self.kernel(plugin), *self.nvinfer(h), cudart_static(),
                         "-ldl", "-lpthread", "-lrt", "-Wl,--no-undefined"]))
            return lib
        return self.once(("lib", h.label, dyn, int64, plugin.name), make)

    def observe(self, h: TrtHeaders, dyn: int, int64: int, plugin: Plugin = TD) -> dict:
        """Run the harness on one library and return what it printed."""
        def harness():
            exe = self.root / h.label / "plugin_harness"
            exe.parent.mkdir(parents=True, exist_ok=True)
            ok(run_tool([CXX, *flags(h), "-O1", HARNESS_DIR / "plugin_harness.cpp", "-o", exe, "-rdynamic", "-ldl"]))
            return exe

        def make():
            exe = self.once(("harness", h.label), harness)
            result = run_tool([exe, "dyn" if dyn else "static", self.library(h, dyn, int64, plugin)], timeout=60)
            assert result.returncode == 0, result.output
            return json.loads(result.stdout)  # stderr: the static library's log lines (no logger finder)
        return self.once(("observe", h.label, dyn, int64, plugin.name), make)


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> Builds:
    return Builds(tmp_path_factory.mktemp("trt_plugin"))


def align(x: int, a: int = 256) -> int:
    return (x + a - 1) // a * a


# ------------------------------------------------------------------------------------------------
# compile and link
# ------------------------------------------------------------------------------------------------
@each_plugin
@pytest.mark.parametrize("dyn,int64", MODES)
def test_syntax_only_without_diagnostics(headers, plugin, dyn, int64):
    ok(run_tool([CXX, *flags(headers, plugin, dyn, int64), "-Wpedantic", "-fsyntax-only", plugin.source]))


@needs_nvcc
@each_plugin
@pytest.mark.parametrize("dyn,int64", MODES)
def test_object_compile_and_link_no_undefined(builds, headers, plugin, dyn, int64):
    lib = builds.library(headers, dyn, int64, plugin)  # asserts: no diagnostics, -Wl,--no-undefined link succeeded
    assert lib.is_file() and lib.stat().st_size > 0


@needs_nvcc
@each_plugin
@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not found")
def test_cmake_build_without_warnings(builds, headers, plugin, tmp_path):
    if headers.lib_dir is not None:
        trt_root = Path(os.environ["TRT_ROOT"])
    else:  # a TensorRT-shaped folder: the vendored headers and the stub as lib/libnvinfer.so
        trt_root = tmp_path / "trt"
        (trt_root / "lib").mkdir(parents=True)
        (trt_root / "include").symlink_to(headers.include_dir)
        stub_dir = Path(builds.nvinfer(headers)[1])
        shutil.copy(stub_dir / "libnvinfer.so", trt_root / "lib" / "libnvinfer.so")
    build = tmp_path / "build"
    configure = run_tool(["cmake", "-S", plugin.cmake_dir, "-B", build, f"-DTRT_ROOT={trt_root}",
                          "-DCMAKE_CUDA_ARCHITECTURES=87", f"-DCMAKE_CUDA_COMPILER={NVCC}"])
    assert configure.returncode == 0, configure.output
    result = run_tool(["cmake", "--build", build, "-j", "2"])
    assert result.returncode == 0, result.output
    assert "warning" not in result.output.lower(), result.output
    for name in (f"{plugin.library}.so", f"{plugin.library}_dyn.so"):
        assert (build / name).is_file(), name


# ------------------------------------------------------------------------------------------------
# build-phase callbacks through the harness
# ------------------------------------------------------------------------------------------------
@needs_nvcc
@each_plugin
def test_registration_static_and_dynamic(builds, headers, plugin):
    static, dyn = builds.observe(headers, 0, 0, plugin), builds.observe(headers, 1, 0, plugin)
    assert static["trt_version"] == ".".join(headers.version.split(".")[:2])
    me = {"name": plugin.name, "version": "1", "namespace": "adapler"}
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
@each_plugin
def test_fields_as_the_onnx_parser_passes_them(builds, headers, plugin):
    dyn = builds.observe(headers, 1, 0, plugin)
    # listed, so onnx-tensorrt's loadFields forwards the node's attributes (kCHAR, NUL-terminated)
    assert dyn["field_names"] == [["plugin_version", KCHAR], ["plugin_namespace", KCHAR]]
    assert dyn["create"] == {"no_fields": True, "parser_fields": True, "python_api_fields": True,
                             "unknown_field_ignored": True, "wrong_version": False, "wrong_namespace": False,
                             "version_prefix_only": False, "version_not_a_string": False}
    logged = " | ".join(dyn["logged"])  # setLoggerFinder's logger receives the reasons
    assert "plugin_version='2' but this plugin is '1'" in logged
    assert "plugin_namespace='other' but this plugin is 'adapler'" in logged
    assert "plugin_version must be a string (kCHAR)" in logged
    assert [line for line in dyn["logged"] if not line.startswith(f"1: {plugin.name}")] == []  # each reason names its plugin
    assert builds.observe(headers, 0, 0, plugin)["create"] == dyn["create"]


@needs_nvcc
def test_output_shapes_and_size_tensor(builds, headers):
    seen = builds.observe(headers, 0, 0)
    want = [["B", "size3", "D"], ["B", "size3"], ["B", "size3"], []]  # hidden_c, mask_c, index, 0-D L
    assert seen["output_shapes"] == {"threshold_per_row": want, "threshold_broadcast": want,
                                     "hidden_rank2": None}  # rejected, not guessed
    assert seen["size_tensor_decls"] == [{"index": 3, "opt": "ceil_div(T,2)", "upper": "T"}]


@needs_nvcc
@pytest.mark.parametrize("int64", [0, 1])
def test_output_types_per_version(builds, headers, int64):
    seen = builds.observe(headers, 0, int64)
    size = "INT64" if int64 else SIZE_TENSOR_TYPE[headers.major]
    assert seen["output_types"]["FLOAT"] == ["FLOAT", "INT64", "INT64", size]
    assert seen["output_types"]["HALF"] == ["HALF", "INT64", "INT64", size]
    assert {k for k, v in seen["output_types"].items() if v is not None} == {"FLOAT", "HALF"}
    assert seen["formats"]["float"][7] == [size]


@needs_nvcc
def test_supports_format_combination(builds, headers):
    seen = builds.observe(headers, 0, 0)
    # hidden, scores, mask, threshold, hidden_c, mask_c, index, L: all LINEAR
    assert seen["formats"]["float"] == [["FLOAT", "HALF"], ["FLOAT"], ["INT64"], ["FLOAT"], ["FLOAT"], ["INT64"],
                                        ["INT64"], ["INT32"]]
    assert seen["formats"]["half"][4] == ["HALF"]  # hidden_c follows hidden
    assert seen["formats"]["chw4"] == [[]] * 8


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


# ------------------------------------------------------------------------------------------------
# ContributionDrop's build-phase callbacks (spec: plugins/contribution_drop/README.md)
# ------------------------------------------------------------------------------------------------
@needs_nvcc
def test_contribution_drop_output_shapes(builds, headers):
    seen = builds.observe(headers, 0, 0, CD)
    want = [["B", "size3", "D"], ["B", "size3"], ["B", "size3"], []]  # TokenDrop's outputs: hidden_c, mask_c, index, L
    assert seen["output_shapes"] == {"base": want, "hidden_rank2": None, "cp_hidden_rank2": None, "eta_rank0": None}
    assert seen["size_tensor_decls"] == [{"index": 3, "opt": "ceil_div(T,2)", "upper": "T"}]
    assert seen["nb_outputs"] == 4


@needs_nvcc
@pytest.mark.parametrize("int64", [0, 1])
def test_contribution_drop_output_types(builds, headers, int64):
    types = builds.observe(headers, 0, int64, CD)["output_types"]
    size = "INT64" if int64 else SIZE_TENSOR_TYPE[headers.major]
    # hidden_c has hidden's type, mask_c the mask's (int32 feeds fused attention without a Cast), index INT64
    assert types["FLOAT/INT64"] == ["FLOAT", "INT64", "INT64", size]
    assert types["HALF/INT32"] == ["HALF", "INT32", "INT64", size]
    assert {k for k, v in types.items() if v is not None} == {"FLOAT/INT64", "FLOAT/INT32", "HALF/INT64", "HALF/INT32"}
    assert types["cp_hidden_differs"] is None and types["w2_half"] is None and types["eta_half"] is None
    assert types["mask_bool"] is None


@needs_nvcc
def test_contribution_drop_supports_format_combination(builds, headers):
    formats = builds.observe(headers, 0, 0, CD)["formats"]
    # hidden, cp_hidden, w2, mask, eta, hidden_c, mask_c, index, L: all LINEAR
    assert formats["float"] == [["FLOAT", "HALF"], ["FLOAT"], ["FLOAT"], ["INT32", "INT64"], ["FLOAT"], ["FLOAT"],
                                ["INT64"], ["INT64"], ["INT32"]]
    half = formats["half_int32"]
    assert half[1] == ["HALF"] and half[5] == ["HALF"]  # cp_hidden and hidden_c follow hidden
    assert half[2] == ["FLOAT"] and half[4] == ["FLOAT"]  # w2 and eta stay float32 in an fp16 engine
    assert half[6] == ["INT32"]  # mask_c follows mask
    assert formats["chw4"] == [[]] * 9


@needs_nvcc
def test_contribution_drop_workspace_and_runtime_callbacks(builds, headers):
    seen = builds.observe(headers, 1, 0, CD)
    for w in seen["workspace"]:
        b, t = w["B"], w["T"]
        # kernel: scores float32[B*T], thresholds float32[B], order int32[B*T], counts int64[B], each 256-aligned
        assert w["kernel_bytes"] == align(4 * b * t) + align(4 * b) + align(4 * b * t) + align(8 * b)
        assert w["bytes"] == align(w["kernel_bytes"]) + 256 + 256  # + the L slot + alignment slack
    assert seen["configure_rc"] == [0, -1]
    assert seen["serialized_fields"] == 0 and seen["clone_ok"] and seen["attach_ok"]
