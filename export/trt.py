"""TensorRT preparation of exported encoders: static lint, TRT-ready ONNX, commands, engine bundle.

Small composable steps in the style of Polygraphy (docs/deploy.md §5-§7); the lint lives in trt_lint.py:

    issues = lint_for_tensorrt("model.onnx", fp16=False)            # CPU only, no TensorRT needed
    prepare_trt_onnx("model.onnx", "bundle/model.trt.onnx")         # plugin attrs on, no local function
    cmds = trt_commands("bundle/model.trt.onnx", "bundle", (1, 8), (1, 128), (8, 512), "libadapler_token_drop_trt.so")
    report = write_trt_bundle("model.onnx", "bundle")                # all of the above + engine if TensorRT exists
    report = write_trt_bundle_for_export("export_dir")               # the same for an `export` directory (export.json)

An export with ``model.cd.onnx`` (one ContributionDrop per layer) also gets ``model.cd.trt.onnx``, its own lint
(``lint.cd.json``), the ContributionDrop plugin sources and the trtexec commands that load both plugin libraries.

Engine building and TRT-vs-ORT comparison use TensorRT through Polygraphy and raise
:class:`TensorRTUnavailable` where TensorRT is missing (always, on the CI machine). Nothing here reports
that TensorRT ran unless it did.
"""

from __future__ import annotations

import ctypes
import json
import shlex
import shutil
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import onnx

from adapler.plugins.token_drop.trt.qdp import TENSORRT_AVAILABLE, TENSORRT_UNAVAILABLE_REASON

from .trt_lint import (CONTRIBUTION_DROP, OP_RESTRICTIONS, PLUGIN_ATTRS, PLUGIN_OPS, SUPPORTED_ONNX_OPS, TOKEN_DROP,
                       TOPK_MAX_K, TRT_MAX_IR_VERSION, UNSUPPORTED_ONNX_OPS, LintIssue, ModelLike, _attr, _iter_graphs,
                       lint_for_tensorrt)

__all__ = [
    "SUPPORTED_ONNX_OPS", "UNSUPPORTED_ONNX_OPS", "OP_RESTRICTIONS", "PLUGIN_OPS", "TRT_MAX_IR_VERSION", "TOPK_MAX_K",
    "TENSORRT_AVAILABLE", "TENSORRT_UNAVAILABLE_REASON", "TensorRTUnavailable", "LintIssue",
    "PreparedModel", "TrtBundleReport", "lint_for_tensorrt", "prepare_trt_onnx", "trt_commands",
    "build_engine", "compare_with_ort", "write_trt_bundle", "write_trt_bundle_for_export", "copy_plugin_sources",
]

Shape = Sequence[int]
PluginLibs = Union[str, Path, Sequence[Union[str, Path]], None]  # one plugin library or several

# The plugin libraries under a bundle's plugin_src/, where BUILD_ENGINE.md's cmake commands put them
TOKEN_DROP_LIB = "build/libadapler_token_drop_trt.so"
CONTRIBUTION_DROP_LIB = "build_cd/libadapler_contribution_drop_trt.so"


class TensorRTUnavailable(RuntimeError):
    """Raised by functions that need TensorRT when it cannot be imported."""


@dataclass
class PreparedModel:
    path: Path
    plugin_nodes: dict[str, int]  # op type -> nodes: TokenDrop in model.onnx, ContributionDrop in model.cd.onnx
    attributes_fixed: int
    functions_removed: list[str] = field(default_factory=list)

    @property
    def token_drop_nodes(self) -> int:
        return self.plugin_nodes.get(TOKEN_DROP, 0)


def prepare_trt_onnx(src: ModelLike, dst: str | Path) -> PreparedModel:
    """Write a copy of ``src`` for TensorRT: plugin attributes set on every plugin node (TokenDrop,
    ContributionDrop) and any model-local function named like a plugin op removed. Everything else is unchanged."""
    m = onnx.ModelProto()
    if isinstance(src, onnx.ModelProto):
        m.CopyFrom(src)
    else:
        m = onnx.load(str(src))
    nodes: dict[str, int] = {}
    fixed = 0
    for g in _iter_graphs(m.graph):
        for node in g.node:
            if node.op_type not in PLUGIN_OPS:
                continue
            nodes[node.op_type] = nodes.get(node.op_type, 0) + 1
            for key, want in PLUGIN_ATTRS.items():
                current = _attr(node, key)
                if (current.decode() if isinstance(current, bytes) else current) == want:
                    continue
                keep = [a for a in node.attribute if a.name != key]
                del node.attribute[:]
                node.attribute.extend(keep + [onnx.helper.make_attribute(key, want)])
                fixed += 1
    removed = [f"{fn.domain}.{fn.name}" for fn in m.functions if fn.name in PLUGIN_OPS]
    keep_fns = [fn for fn in m.functions if fn.name not in PLUGIN_OPS]
    del m.functions[:]
    m.functions.extend(keep_fns)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(m, str(dst), save_as_external_data=m.ByteSize() > 2**31 - 2**27)
    return PreparedModel(dst, nodes, fixed, removed)


def _shape_arg(shape: Shape | Mapping[str, Shape], names: Sequence[str], sep: str, fmt, quote: bool = False) -> str:
    per = shape if isinstance(shape, Mapping) else {n: shape for n in names}
    items = (f"{n}:{fmt(s)}" for n, s in per.items())
    return sep.join(shlex.quote(i) if quote else i for i in items)  # quote: [1,8] is a shell glob


def trt_commands(onnx_path: str | Path, out_dir: str | Path, min_shape: Shape | Mapping[str, Shape],
                 opt_shape: Shape | Mapping[str, Shape], max_shape: Shape | Mapping[str, Shape],
                 plugin_lib: PluginLibs = None,
                 input_names: Sequence[str] = ("input_ids", "attention_mask"),
                 atol: float = 1e-3, rtol: float = 1e-3, std_onnx_path: str | Path | None = None,
                 fp16_onnx_path: str | Path | None = None) -> dict[str, str]:
    """Exact ``trtexec`` / ``polygraphy`` command lines for building and checking an engine.

    Shapes are ``(B, T)`` applied to every input in ``input_names`` or a ``{name: shape}`` mapping. Per
    TensorRT version (NvInfer.h of each): 11.x is always strongly typed (``kSTRONGLY_TYPED`` is deprecated
    and ignored, ``BuilderFlag::kFP16`` is gone), so ``trtexec_build`` has no typing flag and fp16 comes from
    the fp16 ONNX (``trtexec_build_fp16``, only with ``fp16_onnx_path``); 10.x (JetPack 6 ships 10.3) is
    weakly typed by default: ``trtexec_build_trt10`` passes ``--stronglyTyped`` (types as exported) and
    ``trtexec_build_trt10_fp16`` passes ``--fp16`` on the fp32 ONNX. ``polygraphy_ort_compare_std`` (only with
    ``std_onnx_path``) compares saved TensorRT outputs with ONNX Runtime on the standard-op export: the
    Polygraphy CLI cannot load ONNX Runtime custom-op libraries.

    ``plugin_lib``: one static-registration plugin library or several (each gets its own ``--staticPlugins``,
    which trtexec takes more than once, and Polygraphy's ``--plugins`` takes them all). Engines and saved
    outputs are named after the ONNX file less ``.trt.onnx``: ``model.cd.trt.onnx`` -> ``model.cd.engine``,
    ``trt_outputs.cd.json``, so the two graphs of one bundle do not overwrite each other's files.
    """
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    stem = onnx_path.name.removesuffix(".onnx").removesuffix(".trt")
    variant = stem[len(stem.split(".")[0]):]  # "" for model.trt.onnx, ".cd" for model.cd.trt.onnx
    engine, engine16 = out_dir / f"{stem}.engine", out_dir / f"{stem}.fp16.engine"
    x = lambda s: "x".join(str(int(v)) for v in s)  # noqa: E731  trtexec: 1x8
    br = lambda s: "[" + ",".join(str(int(v)) for v in s) + "]"  # noqa: E731  polygraphy: [1,8]
    q = lambda p: shlex.quote(str(p))  # noqa: E731
    shapes = (f"--minShapes={_shape_arg(min_shape, input_names, ',', x)} "
              f"--optShapes={_shape_arg(opt_shape, input_names, ',', x)} "
              f"--maxShapes={_shape_arg(max_shape, input_names, ',', x)}")
    libs = _plugin_libs(plugin_lib)
    static_plugin = "".join(f" --staticPlugins={q(lib)}" for lib in libs)
    dyn_plugin = "".join(f" --dynamicPlugins={q(d)} --setPluginsToSerialize={q(d)}" for d in map(_dyn_sibling, libs))
    pg_shapes = " ".join(f"--trt-{k}-shapes {_shape_arg(s, input_names, ' ', br, True)}"
                         for k, s in (("min", min_shape), ("opt", opt_shape), ("max", max_shape)))
    pg_plugin = f" --plugins {' '.join(q(lib) for lib in libs)}" if libs else ""
    run_shapes = "--input-shapes " + _shape_arg(opt_shape, input_names, " ", br, True)
    ranges = {"input_ids": "[0,999]", "attention_mask": "[1,1]", "token_type_ids": "[0,0]"}
    val = " ".join(shlex.quote(f"{n}:{ranges[n]}") for n in input_names if n in ranges)
    val = f"--val-range {val}" if val else ""
    inputs_json, trt_json = q(out_dir / f"inputs{variant}.json"), q(out_dir / f"trt_outputs{variant}.json")

    def build(src: Path, dst: Path, flags: str = "", plugin: str = static_plugin) -> str:
        return f"trtexec --onnx={q(src)} --saveEngine={q(dst)} {shapes}{flags} --skipInference{plugin}"

    cmds = {
        "trtexec_build": build(onnx_path, engine),
        "trtexec_build_serialized_plugin": build(onnx_path, engine, plugin=dyn_plugin),
        "trtexec_build_trt10": build(onnx_path, engine, " --stronglyTyped"),
        "trtexec_build_trt10_fp16": build(onnx_path, engine16, " --fp16"),
        "trtexec_benchmark": f"trtexec --loadEngine={q(engine)} --shapes={_shape_arg(opt_shape, input_names, ',', x)}"
                             f"{static_plugin}",
        "polygraphy_run": f"polygraphy run {q(onnx_path)} --trt --onnxrt {pg_shapes} {run_shapes} {val} --strongly-typed"
                          f"{pg_plugin} --atol {atol} --rtol {rtol} --check-error-stat median --save-engine {q(engine)}",
        "polygraphy_trt_save": f"polygraphy run {q(onnx_path)} --trt {pg_shapes} {run_shapes} {val} --strongly-typed"
                               f"{pg_plugin} --save-inputs {inputs_json} --save-outputs {trt_json}",
    }
    if fp16_onnx_path is not None:
        cmds["trtexec_build_fp16"] = build(Path(fp16_onnx_path), engine16)
    if std_onnx_path is not None:
        cmds["polygraphy_ort_compare_std"] = (
            f"polygraphy run {q(std_onnx_path)} --onnxrt --providers cpu --load-inputs {inputs_json} "
            f"--load-outputs {trt_json} --atol {atol} --rtol {rtol} --check-error-stat median")
    return cmds


def _plugin_libs(plugin_lib: PluginLibs) -> list[Path]:
    if plugin_lib is None or plugin_lib == "":
        return []
    if isinstance(plugin_lib, (str, Path)):
        return [Path(plugin_lib)]
    return [Path(p) for p in plugin_lib]


def _dyn_sibling(lib: Path) -> Path:
    """The ``*_dyn`` library (``getCreators``) next to a static-registration plugin library."""
    return lib if lib.stem.endswith("_dyn") else lib.with_name(f"{lib.stem}_dyn{lib.suffix}")


def _require_tensorrt() -> None:
    if not TENSORRT_AVAILABLE:
        raise TensorRTUnavailable(TENSORRT_UNAVAILABLE_REASON)


def build_engine(onnx_path: str | Path, engine_path: str | Path,
                 profiles: Sequence[Mapping[str, tuple[Shape, Shape, Shape]]],
                 plugin_lib: PluginLibs = None) -> Path:
    """Build and save an engine with Polygraphy (strongly typed). ``profiles``: one ``{input: (min, opt,
    max)}`` per optimization profile. ``plugin_lib`` is the static-registration plugin .so, or several (a
    ContributionDrop graph needs its own plugin library); without it the Python quickly deployable TokenDrop
    plugin (:func:`register_qdp`) is registered instead."""
    _require_tensorrt()
    from polygraphy.backend.trt import CreateConfig, EngineFromNetwork, LoadPlugins, NetworkFromOnnxPath, Profile
    from polygraphy.backend.trt import SaveEngine

    from adapler.plugins.token_drop.trt.qdp import register_qdp

    network = NetworkFromOnnxPath(str(onnx_path), strongly_typed=True)
    libs = _plugin_libs(plugin_lib)
    if libs:
        network = LoadPlugins(plugins=[str(lib) for lib in libs], obj=network)
    else:
        register_qdp()
    trt_profiles = []
    for spec in profiles:
        prof = Profile()
        for name, (lo, opt, hi) in spec.items():
            prof.add(name, min=tuple(lo), opt=tuple(opt), max=tuple(hi))
        trt_profiles.append(prof)
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    SaveEngine(EngineFromNetwork(network, config=CreateConfig(profiles=trt_profiles)), path=str(engine_path))()
    return engine_path


def compare_with_ort(engine_path: str | Path, onnx_path: str | Path, feeds: Mapping[str, Any],
                     plugin_lib: PluginLibs = None, ort_custom_op_library: str | Path | None = None,
                     atol: float = 1e-3, rtol: float = 1e-3) -> dict[str, dict[str, float | bool]]:
    """Run a saved engine (TensorRT via Polygraphy) and ONNX Runtime (CPU, optional custom-op library) on
    the same feeds; return ``{output: {"max_abs_diff", "allclose"}}`` for the outputs both produce."""
    _require_tensorrt()
    import numpy as np
    import onnxruntime as ort
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    libs = _plugin_libs(plugin_lib)
    for lib in libs:
        ctypes.CDLL(str(lib))  # static registration before deserialising the engine
    if not libs:
        from adapler.plugins.token_drop.trt.qdp import register_qdp

        register_qdp()
    with TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path)))) as runner:
        trt_out = {k: np.asarray(v) for k, v in runner.infer(dict(feeds)).items()}
    opts = ort.SessionOptions()
    if ort_custom_op_library is not None:
        opts.register_custom_ops_library(str(ort_custom_op_library))
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ort_out = dict(zip(names, sess.run(None, dict(feeds))))
    result: dict[str, dict[str, float | bool]] = {}
    for name in sorted(set(trt_out) & set(ort_out)):
        a, b = trt_out[name].astype(np.float64), np.asarray(ort_out[name]).astype(np.float64)
        same = a.shape == b.shape
        result[name] = {"max_abs_diff": float(np.max(np.abs(a - b))) if same and a.size else (0.0 if same else
                        float("inf")), "allclose": bool(same and np.allclose(a, b, atol=atol, rtol=rtol))}
    return result


@dataclass
class TrtBundleReport:
    out_dir: Path
    trt_onnx: Path
    lint_path: Path
    build_doc: Path
    plugin_src: Path
    lint_issues: list[LintIssue]
    commands: dict[str, str]
    tensorrt_available: bool
    engine_built: bool
    engine_path: Path | None
    engine_reason: str
    fp16_trt_onnx: Path | None = None
    fp16_lint_issues: list[LintIssue] = field(default_factory=list)
    cd_trt_onnx: Path | None = None  # model.cd.trt.onnx: one ContributionDrop per layer (no engine is built from it)
    cd_lint_issues: list[LintIssue] = field(default_factory=list)
    cd_fp16_trt_onnx: Path | None = None  # its fp16 twin (w2 and eta stay float32, as the plugin reads them)
    cd_fp16_lint_issues: list[LintIssue] = field(default_factory=list)

    @property
    def lint_errors(self) -> list[LintIssue]:
        return [i for i in self.lint_issues if i.severity == "error"]

    @property
    def cd_lint_errors(self) -> list[LintIssue]:
        return [i for i in self.cd_lint_issues if i.severity == "error"]

    def to_dict(self) -> dict:
        d = asdict(self)
        return json.loads(json.dumps(d, default=str))


# What the bundle's plugin_src/ holds: the package layout, so that `PYTHONPATH=plugin_src` imports
# plugins.token_drop.trt.qdp and everything it imports (gpu.py and its implementations, and the package
# __init__'s reference/schema).
_PY_SOURCES = ("__init__.py", "token_drop/__init__.py", "token_drop/gpu.py", "token_drop/keep_rule.py",
               "token_drop/torch_impl.py", "token_drop/triton_impl.py", "token_drop/reference.py",
               "token_drop/schema.py")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build", "*.template.md")


def copy_plugin_sources(dst: str | Path, contribution_drop: bool = False) -> Path:
    """Copy the plugin sources into ``dst/plugins/token_drop/`` (C++ plugin, CUDA kernel, Python plugin and
    its imports) and, with ``contribution_drop``, ``dst/plugins/contribution_drop/{cuda,trt}`` (its C++ plugin
    and kernel); returns ``dst/plugins/token_drop``. Relative paths are the repository's, so each CMake build
    finds what it compiles (the ContributionDrop kernel includes ``../../token_drop/cuda/compact.cuh``)."""
    src = Path(__file__).resolve().parents[1] / "plugins"
    dst = Path(dst) / "plugins"
    for rel in _PY_SOURCES:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, dst / rel)
    for sub in ("cuda", "trt"):
        shutil.copytree(src / "token_drop" / sub, dst / "token_drop" / sub, dirs_exist_ok=True, ignore=_IGNORE)
    for sub in ("cuda", "trt") if contribution_drop else ():
        shutil.copytree(src / "contribution_drop" / sub, dst / "contribution_drop" / sub, dirs_exist_ok=True,
                        ignore=_IGNORE)
    return dst / "token_drop"


def _lint_lines(issues: Sequence[LintIssue]) -> str:
    return "\n".join(f"- [{i.severity}] {i.rule} {i.node} ({i.op_type}): {i.message}" for i in issues) or "- none"


def write_trt_bundle(onnx_path: str | Path, out_dir: str | Path, min_shape: Shape = (1, 8),
                     opt_shape: Shape = (1, 128), max_shape: Shape = (8, 512),
                     input_names: Sequence[str] = ("input_ids", "attention_mask"), fp16: bool = False,
                     plugin_lib: str | Path | None = None, build: bool = True,
                     std_onnx_path: str | Path | None = None,
                     fp16_onnx_path: str | Path | None = None,
                     cd_onnx_path: str | Path | None = None,
                     cd_fp16_onnx_path: str | Path | None = None) -> TrtBundleReport:
    """Write a TensorRT bundle: TRT-ready ONNX (and its fp16 twin from ``fp16_onnx_path``), plugin sources
    (``plugin_src/plugins/token_drop/``), lint.json (lint.fp16.json), BUILD_ENGINE.md, bundle.json; build the
    engine only when TensorRT is importable, ``build`` is set and lint found no error.

    ``cd_onnx_path`` (``model.cd.onnx``, one ContributionDrop per layer) adds ``<stem>.cd.trt.onnx``, its lint
    ``lint.cd.json``, the ContributionDrop plugin sources and its trtexec/Polygraphy commands (keys ``cd_*``,
    loading both plugin libraries); ``cd_fp16_onnx_path`` its fp16 twin ``<stem>.cd.fp16.trt.onnx`` (lint
    ``lint.cd.fp16.json``, command ``cd_trtexec_build_fp16``). No engine is built from them here: they need the
    C++ ContributionDrop plugin, and there is no Python plugin for it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = Path(onnx_path)
    stem = onnx_path.name.split('.')[0]
    prepared = prepare_trt_onnx(onnx_path, out / f"{stem}.trt.onnx")
    issues = lint_for_tensorrt(prepared.path, fp16=fp16)
    lint_path = out / "lint.json"
    lint_path.write_text(json.dumps([asdict(i) for i in issues], indent=2) + "\n")
    fp16_prepared, fp16_issues = None, []
    if fp16_onnx_path is not None:
        fp16_prepared = prepare_trt_onnx(fp16_onnx_path, out / f"{stem}.fp16.trt.onnx")
        fp16_issues = lint_for_tensorrt(fp16_prepared.path, fp16=True)
        (out / "lint.fp16.json").write_text(json.dumps([asdict(i) for i in fp16_issues], indent=2) + "\n")
    cd_prepared, cd_issues = None, []
    if cd_onnx_path is not None:
        cd_prepared = prepare_trt_onnx(cd_onnx_path, out / f"{stem}.cd.trt.onnx")
        cd_issues = lint_for_tensorrt(cd_prepared.path)
        (out / "lint.cd.json").write_text(json.dumps([asdict(i) for i in cd_issues], indent=2) + "\n")
    cd16_prepared, cd16_issues = None, []
    if cd_prepared is not None and cd_fp16_onnx_path is not None:
        cd16_prepared = prepare_trt_onnx(cd_fp16_onnx_path, out / f"{stem}.cd.fp16.trt.onnx")
        cd16_issues = lint_for_tensorrt(cd16_prepared.path, fp16=True)
        (out / "lint.cd.fp16.json").write_text(json.dumps([asdict(i) for i in cd16_issues], indent=2) + "\n")
    src_root = Path(__file__).resolve().parents[1] / "plugins" / "token_drop"
    plugin_src = out / "plugin_src"
    copy_plugin_sources(plugin_src, contribution_drop=cd_prepared is not None)
    lib_hint = Path(plugin_lib) if plugin_lib else plugin_src / TOKEN_DROP_LIB
    commands = trt_commands(prepared.path, out, min_shape, opt_shape, max_shape, lib_hint, input_names,
                            std_onnx_path=std_onnx_path, fp16_onnx_path=fp16_prepared.path if fp16_prepared else None)
    if cd_prepared is not None:  # its commands load both plugin libraries
        cd_commands = trt_commands(cd_prepared.path, out, min_shape, opt_shape, max_shape,
                                   (lib_hint, plugin_src / CONTRIBUTION_DROP_LIB), input_names, std_onnx_path=std_onnx_path,
                                   fp16_onnx_path=cd16_prepared.path if cd16_prepared else None)
        commands.update({f"cd_{k}": v for k, v in cd_commands.items()})
    errors = [i for i in issues if i.severity == "error"]
    engine_path: Path | None = None
    if not TENSORRT_AVAILABLE:
        built, reason = False, TENSORRT_UNAVAILABLE_REASON
    elif not build:
        built, reason = False, "engine build not requested (build=False)"
    elif errors:
        built, reason = False, f"lint found {len(errors)} error(s); see lint.json"
    else:
        target = out / f"{stem}.engine"
        profile = {n: (tuple(min_shape), tuple(opt_shape), tuple(max_shape)) for n in input_names}
        try:
            engine_path = build_engine(prepared.path, target, [profile], plugin_lib)
            built, reason = True, "built with TensorRT through Polygraphy"
        except Exception as exc:  # report, do not hide
            built, reason = False, f"TensorRT engine build failed: {type(exc).__name__}: {exc}"
    status = (f"**Engine built**: `{engine_path}` ({reason})." if built else f"**No engine was built.** Reason: {reason}")
    lint_text = _lint_lines(issues)
    if fp16_prepared is not None:
        lint_text += f"\n\n`{fp16_prepared.path.name}` (`lint.fp16.json`):\n\n" + _lint_lines(fp16_issues)
    if cd_prepared is not None:
        lint_text += f"\n\n`{cd_prepared.path.name}` (`lint.cd.json`):\n\n" + _lint_lines(cd_issues)
    if cd16_prepared is not None:
        lint_text += f"\n\n`{cd16_prepared.path.name}` (`lint.cd.fp16.json`):\n\n" + _lint_lines(cd16_issues)
    missing_fp16 = ("# no fp16 ONNX in this bundle: export one (export.onnx.export_graph(..., fp16=True)) and pass "
                    "it as fp16_onnx_path")
    doc = out / "BUILD_ENGINE.md"
    template = (src_root / "trt" / "BUILD_ENGINE.template.md").read_text()
    compare_std = commands.get("polygraphy_ort_compare_std", "polygraphy run MODEL.std.onnx --onnxrt --providers cpu "
                               f"--load-inputs {out / 'inputs.json'} --load-outputs {out / 'trt_outputs.json'}")
    doc.write_text(string.Template(template).substitute(
        commands, polygraphy_ort_compare_std=compare_std, model=prepared.path.name, status=status,
        trtexec_build_fp16=commands.get("trtexec_build_fp16", missing_fp16),
        fp16_model=f"`{fp16_prepared.path.name}`" if fp16_prepared else "none (no fp16 ONNX was given)",
        inputs=", ".join(f"`{n}`" for n in input_names),
        std_model=f"`{std_onnx_path}`" if std_onnx_path else "none given",
        nodes=prepared.token_drop_nodes, fixed=prepared.attributes_fixed, lint=lint_text,
        removed=", ".join(prepared.functions_removed) or "none",
        contribution_drop=_contribution_drop_section(cd_prepared, cd16_prepared, commands, compare_std,
                                                     prepared.path.name)))
    report = TrtBundleReport(out, prepared.path, lint_path, doc, plugin_src, issues, commands,
                             TENSORRT_AVAILABLE, built, engine_path, reason,
                             fp16_prepared.path if fp16_prepared else None, fp16_issues,
                             cd_prepared.path if cd_prepared else None, cd_issues,
                             cd16_prepared.path if cd16_prepared else None, cd16_issues)
    (out / "bundle.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


_NO_CD_GRAPH = ("This bundle has no ContributionDrop graph: the export has no `model.cd.onnx` (`cli.py export "
                "--target trt` writes one for methods whose selection has that form).")


def _contribution_drop_section(prepared: PreparedModel | None, fp16: PreparedModel | None,
                               commands: Mapping[str, str], compare_std: str, model: str) -> str:
    """BUILD_ENGINE.md's section on model.cd.trt.onnx (plugins/contribution_drop/BUILD_ENGINE.template.md)."""
    if prepared is None:
        return _NO_CD_GRAPH
    template = (Path(__file__).resolve().parents[1] / "plugins" / "contribution_drop" / "BUILD_ENGINE.template.md")
    cd_compare = commands.get("cd_polygraphy_ort_compare_std", compare_std)
    return string.Template(template.read_text()).substitute(
        commands, cd_polygraphy_ort_compare_std=cd_compare, cd_model=prepared.path.name, model=model,
        cd_nodes=prepared.plugin_nodes.get(CONTRIBUTION_DROP, 0), cd_fixed=prepared.attributes_fixed,
        cd_removed=", ".join(prepared.functions_removed) or "none", token_drop_lib=TOKEN_DROP_LIB,
        cd_fp16_model=f"`{fp16.path.name}`" if fp16 else "none (the bundle was written without fp16)",
        cd_trtexec_build_fp16=commands.get("cd_trtexec_build_fp16", "# no fp16 ContributionDrop ONNX in this bundle"),
        contribution_drop_lib=CONTRIBUTION_DROP_LIB).rstrip("\n")


def write_trt_bundle_for_export(export_dir: str | Path, out_dir: str | Path | None = None, *, fp16: bool = True,
                                build: bool = True, plugin_lib: str | Path | None = None) -> TrtBundleReport:
    """TensorRT bundle for a directory written by ``export`` (into ``export_dir/trt`` by default).

    Reads ``export.json``: the real input names (``token_type_ids`` for sentence pairs), the custom-op ONNX
    (``files.custom``) for TensorRT, the standard-op ONNX (``files.std``) for the ONNX Runtime comparison and
    ``max_length`` for the profile (T from 1..max_length, opt min(128, max_length), B up to 8). With ``fp16``
    the bundle also gets an fp16 ONNX for strongly typed fp16 engines: the custom ONNX itself when it is
    already fp16, else a fresh fp16 export of ``source_checkpoint``. The ContributionDrop graph (``files.cd``)
    goes into the bundle when the export has one, with ``fp16`` also a fresh fp16 export of it.
    """
    export_dir = Path(export_dir)
    meta_path = export_dir / "export.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: pass a directory written by `cli.py export`")
    meta = json.loads(meta_path.read_text())
    files = meta.get("files", {})
    if "custom" not in files:
        raise FileNotFoundError(f"{meta_path} lists no custom-op ONNX (files.custom): re-export with the custom graph")
    out = Path(out_dir) if out_dir is not None else export_dir / "trt"
    out.mkdir(parents=True, exist_ok=True)
    custom = export_dir / files["custom"]
    names = list(meta.get("inputs", ("input_ids", "attention_mask")))
    fp16_path = cd_fp16_path = None
    if fp16:
        from .trt_lint import _has_fp16

        fp16_path = custom if _has_fp16(onnx.load(str(custom), load_external_data=False)) else _export_fp16(meta, out)
        if "cd" in files:
            cd_fp16_path = _export_fp16(meta, out, contribution_drop=True)
    t_max = int(meta.get("max_length", 512))
    return write_trt_bundle(custom, out, min_shape=(1, 2), opt_shape=(1, min(128, t_max)), max_shape=(8, t_max),
                            input_names=names, plugin_lib=plugin_lib, build=build,
                            std_onnx_path=export_dir / files["std"] if "std" in files else None,
                            fp16_onnx_path=fp16_path, cd_onnx_path=export_dir / files["cd"] if "cd" in files else None,
                            cd_fp16_onnx_path=cd_fp16_path)


def _export_fp16(meta: Mapping[str, Any], out: Path, contribution_drop: bool = False) -> Path:
    """An fp16 custom-op ONNX of the export's source checkpoint (export.onnx.export_graph(..., fp16=True)):
    ``model.fp16.onnx`` (TokenDrop) or, with ``contribution_drop``, ``model.cd.fp16.onnx``."""
    from adapler.checkpoint import load_checkpoint

    from .onnx import DEFAULT_OPSET, export_graph

    ckpt = Path(meta.get("source_checkpoint", ""))
    if not ckpt.exists():
        raise FileNotFoundError(f"source checkpoint {ckpt} of this export no longer exists: the fp16 ONNX needs it "
                                "(or pass fp16=False)")
    model, _ = load_checkpoint(ckpt)
    name = "model.cd.fp16.onnx" if contribution_drop else "model.fp16.onnx"
    return export_graph(model, out / name, std=False, opset=int(meta.get("opset", DEFAULT_OPSET)),
                        token_types="token_type_ids" in meta.get("inputs", ()), fp16=True,
                        contribution_drop=contribution_drop)
