"""The GPU check behind ``bench/gpu_check.sh``: everything that needs a CUDA GPU, in one run, one JSON.

Steps (each recorded as ``ok``, ``skipped`` with the reason, or ``failed`` with the error; the JSON is
rewritten after every step, so a run cut short by the 10-minute limit keeps what it finished):

1. ``kernel_build``: nvcc builds ``plugins/token_drop/cuda`` for the GPU's architecture (no GPU needed).
2. ``kernel_check``: the CUDA kernel vs the NumPy reference on ragged batches (fp32 and fp16, long rows,
   thresholds +-inf): identical ``index``/``mask_c``, ``|delta hidden_c| <= 1e-6`` in fp32 (exact in fp16).
   ``contribution_drop_build`` / ``contribution_drop_check``: the same for ContributionDrop's kernel
   (``plugins/contribution_drop/cuda``): its golden file and random ragged batches, both mask types, fp32
   and fp16, identical outputs.
   ``torch_kernel_check``: the torch implementations on CUDA tensors (``token_drop_torch``, the custom op's
   kernel on both devices, and the ``token_drop_gpu`` dispatch, Triton where installed) against the same
   reference, single rows included.
3. ``torch_cuda_timing``: eager torch on ``cuda:0``, the demo models (``runs/demo``: AdapLeR with and
   without token dropping, the fine-tuned dense model) at batch 1 and 32, paired timings
   (``bench.timing``), speedup of pruned over dense.
4. ``tensorrt_engine``: only where TensorRT imports: export the AdapLeR demo model, build an engine
   (C++ plugin through CMake when ``TRT_ROOT`` is set, else the Python plugin) and compare it with ONNX
   Runtime on the standard-op export.
5. ``tensorrt_cd_engine``: only with TensorRT, ``TRT_ROOT`` (its SDK) and cmake: both C++ plugins built with
   CMake, an engine from ``model.cd.trt.onnx`` (one ContributionDrop per layer) loading both, compared with
   ONNX Runtime on the standard-op export.

On a machine without a GPU the GPU steps are skipped with the reason; nothing claims a GPU ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA GPU visible to torch (torch.cuda.is_available() is False)"
ATOL_FP32 = 1e-6


class Skipped(Exception):
    """A step that cannot run here; the message is the reason."""


def _cuda() -> bool:
    import torch

    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver counts as no GPU
        return False


def environment() -> dict[str, Any]:
    import torch

    from adapler.plugins.token_drop.trt.qdp import TENSORRT_AVAILABLE, TENSORRT_UNAVAILABLE_REASON

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda, "cuda_available": _cuda(),
                           "nvcc": shutil.which("nvcc"), "tensorrt": TENSORRT_AVAILABLE,
                           "tensorrt_reason": TENSORRT_UNAVAILABLE_REASON, "trt_root": os.environ.get("TRT_ROOT")}
    if env["cuda_available"]:
        env["device"] = torch.cuda.get_device_name(0)
        env["capability"] = list(torch.cuda.get_device_capability(0))
    if shutil.which("nvidia-smi"):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    return env


def _arch() -> tuple[str, ...]:
    if not _cuda():
        from adapler.plugins.token_drop.cuda_library import cuda_architectures
        return cuda_architectures()  # plugins/token_drop/cuda/architectures.txt
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return (f"{major}{minor}" + ("a" if major == 9 else ""),)


def _build_library(build: Callable[..., Path], path: Path) -> dict[str, Any]:
    """One kernel library for this GPU's architecture (the list file's without a GPU)."""
    if shutil.which("nvcc") is None and not Path("/usr/local/cuda/bin/nvcc").exists():
        raise Skipped("nvcc not found: install the CUDA toolkit or put nvcc on PATH")
    archs = _arch()
    return {"library": str(build(path, archs=archs)), "archs": list(archs)}


def kernel_build(work: Path) -> dict[str, Any]:
    from adapler.plugins.token_drop.cuda_library import build_cuda_kernel_library

    return _build_library(build_cuda_kernel_library, work / "libadapler_token_drop_cuda.so")


def ragged_cases(n: int) -> list[tuple[np.ndarray, ...]]:
    """Ragged batches (random B, T, D, padding, per-row or broadcast threshold) plus edge cases."""
    rng = np.random.default_rng(0)
    cases = []
    for i in range(n):
        b, t, d = int(rng.integers(1, 9)), int(rng.integers(1, 300)), [3, 7, 8, 16, 64, 384][i % 6]
        dtype = np.float16 if i % 3 == 0 else np.float32
        hidden = rng.standard_normal((b, t, d)).astype(dtype)
        scores = rng.random((b, t)).astype(np.float32)
        mask = (np.arange(t)[None, :] < rng.integers(1, t + 1, size=(b, 1))).astype(np.int64)
        thr = rng.uniform(0, 1, size=b if i % 2 else 1).astype(np.float32)
        cases.append((hidden, scores, mask, thr))
    hidden = rng.standard_normal((3, 700, 32)).astype(np.float32)  # > 256 tokens: several scan chunks per row
    scores, mask = rng.random((3, 700)).astype(np.float32), np.ones((3, 700), np.int64)
    for thr in (0.3, np.inf, -np.inf):
        cases.append((hidden, scores, mask, np.array([thr], np.float32)))
    return cases


def run_cases(impl: Callable[..., Sequence[Any]], cases: Sequence[tuple[np.ndarray, ...]],
              device: str) -> dict[str, Any]:
    """``impl`` (torch tensors on ``device`` -> hidden_c, mask_c, index) against the NumPy reference."""
    import torch

    from adapler.plugins.token_drop.reference import token_drop_reference

    same_index = same_mask = same_shape = True
    worst = {"float32": 0.0, "float16": 0.0}
    for arrays in cases:
        want = token_drop_reference(*arrays)
        got = [t.cpu().numpy() for t in impl(*(torch.from_numpy(a).to(device) for a in arrays))]
        same_shape &= all(g.shape == w.shape and g.dtype == w.dtype for g, w in zip(got, want))
        if not same_shape:
            break
        same_mask &= bool(np.array_equal(got[1], want[1]))
        same_index &= bool(np.array_equal(got[2], want[2]))
        key = str(want[0].dtype)
        diff = np.abs(got[0].astype(np.float64) - want[0].astype(np.float64))
        worst[key] = max(worst[key], float(diff.max()) if diff.size else 0.0)
    passed = same_shape and same_index and same_mask and worst["float32"] <= ATOL_FP32 and worst["float16"] == 0.0
    return {"cases": len(cases), "shapes_and_dtypes_identical": same_shape, "indices_identical": same_index,
            "mask_identical": same_mask, "max_abs_diff_fp32": worst["float32"], "max_abs_diff_fp16": worst["float16"],
            "tolerance_fp32": ATOL_FP32, "passed": bool(passed)}


def kernel_check(library: str | None, n_cases: int = 240) -> dict[str, Any]:
    if not _cuda():
        raise Skipped(NO_CUDA)
    if library is None:
        raise Skipped("the kernel library was not built (see kernel_build)")
    from adapler.plugins.token_drop.cuda_library import load_cuda_kernel_library

    result = run_cases(load_cuda_kernel_library(library), ragged_cases(n_cases), "cuda")
    if not result["passed"]:
        raise AssertionError(f"CUDA kernel differs from the reference: {json.dumps(result)}")
    return result


def single_row_cases(n: int) -> list[tuple[np.ndarray, ...]]:
    """Batches of one row (``token_drop_torch``'s own path), padded and with NaN scores."""
    rng = np.random.default_rng(1)
    cases = []
    for i in range(n):
        t, d = int(rng.integers(1, 300)), [8, 64, 384][i % 3]
        scores = rng.random((1, t)).astype(np.float32)
        scores[0, ::7] = np.nan
        mask = (np.arange(t)[None, :] < rng.integers(1, t + 1)).astype(np.int64)
        hidden = rng.standard_normal((1, t, d)).astype(np.float16 if i % 2 else np.float32)
        cases.append((hidden, scores, mask, rng.uniform(0, 1, size=1).astype(np.float32)))
    return cases


def torch_kernel_check(n_cases: int = 120) -> dict[str, Any]:
    if not _cuda():
        raise Skipped(NO_CUDA)
    from adapler.plugins.token_drop.gpu import token_drop_gpu
    from adapler.plugins.token_drop.torch_impl import token_drop_torch

    cases = ragged_cases(n_cases) + single_row_cases(n_cases // 4)
    result = {"token_drop_torch": run_cases(token_drop_torch, cases, "cuda"),
              "token_drop_gpu": run_cases(token_drop_gpu, cases, "cuda")}
    if not all(r["passed"] for r in result.values()):
        raise AssertionError(f"a torch implementation differs from the reference on CUDA: {json.dumps(result)}")
    return result


def contribution_drop_build(work: Path) -> dict[str, Any]:
    from adapler.plugins.contribution_drop.cuda_library import build_contribution_drop_cuda_library

    return _build_library(build_contribution_drop_cuda_library, work / "libadapler_contribution_drop_cuda.so")


def contribution_drop_cases(impl: Callable[..., Sequence[Any]], device: str,
                            n_cases: int = 40) -> tuple[list[str], int]:
    """``impl`` (torch tensors on ``device`` -> hidden_c, mask_c, index) on ContributionDrop's golden file and
    random batches (scores away from the threshold, both mask types, fp32 and fp16); returns the names of the
    cases whose outputs are not exactly the reference's, and the number of cases."""
    import torch

    from adapler.plugins.contribution_drop.make_golden import load_golden, random_cases, reference_outputs

    names = ("hidden", "cp_hidden", "w2", "mask", "eta")
    cases = [(f"golden {k}", {n: g[n] for n in names}, (g["hidden_c"], g["mask_c"], g["index"]))
             for k, g in load_golden().items()]
    for dtype in (np.float32, np.float16):
        for mask_dtype in (np.int64, np.int32):
            for i, a in enumerate(random_cases(n_cases, seed=11, dtype=dtype, mask_dtype=mask_dtype, max_t=700)):
                cases.append((f"{np.dtype(dtype).name}/{np.dtype(mask_dtype).name} {i}", a, reference_outputs(a)))
    failed = []
    for what, a, want in cases:
        got = [t.cpu().numpy() for t in impl(*(torch.from_numpy(a[n]).to(device) for n in names))]
        if not all(g.dtype == w.dtype and np.array_equal(g, w) for g, w in zip(got, want)):
            failed.append(what)
    return failed, len(cases)


def contribution_drop_check(library: str | None, n_cases: int = 40) -> dict[str, Any]:
    if not _cuda():
        raise Skipped(NO_CUDA)
    if library is None:
        raise Skipped("the ContributionDrop kernel library was not built (see contribution_drop_build)")
    from adapler.plugins.contribution_drop.cuda_library import load_contribution_drop_cuda_library

    failed, total = contribution_drop_cases(load_contribution_drop_cuda_library(library), "cuda", n_cases)
    if failed:
        raise AssertionError(f"ContributionDrop CUDA kernel differs from the reference in {len(failed)} of "
                             f"{total} cases: {failed[:5]}")
    return {"cases": total, "identical": True}


def _texts(n: int) -> tuple[list[str], str]:
    """Test-split texts of the demo's data set, or the demo sentences where it cannot be loaded (offline)."""
    from adapler.demo import DEMO_SENTENCES, QUICK

    try:
        from adapler.data import load_dataset

        data = load_dataset(QUICK.data, max_eval=n, seed=QUICK.seed)
        return [e.text for e in data.test][:n], f"{QUICK.data} test split"
    except Exception as exc:  # no cached corpus and no network
        return (DEMO_SENTENCES * n)[:n], f"demo sentences ({QUICK.data} unavailable: {type(exc).__name__})"


def torch_cuda_timing(demo_dir: Path, batches: Sequence[int] = (1, 32), n_inputs: int = 8,
                      repeats: int = 5, device: str = "cuda") -> dict[str, Any]:
    """``device`` is "cuda" in the check; the CPU test runs the same code on "cpu"."""
    if device == "cuda" and not _cuda():
        raise Skipped(NO_CUDA)
    from adapler import methods
    ckpts = {"pruned": demo_dir / methods.MAIN / "best", "finetune": demo_dir / "finetune" / "best"}
    missing = [str(p) for p in ckpts.values() if not p.exists()]
    if missing:
        raise Skipped(f"demo checkpoints missing ({', '.join(missing)}): run `make demo` or pass --demo-dir")
    import torch

    from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer
    from adapler.bench.timing import ratio, summarize, time_paired

    models = {k: load_checkpoint(p)[0].to(device).eval() for k, p in ckpts.items()}
    tok = load_checkpoint_tokenizer(ckpts["pruned"])
    max_length = load_checkpoint(ckpts["pruned"])[1]["max_length"]
    texts, source = _texts(max(batches) * n_inputs)
    fns = {"adapler_pruned": (models["pruned"], "hard"), "adapler_dense": (models["pruned"], "dense"),
           "finetune_dense": (models["finetune"], "dense")}

    def runner(model, mode):
        def run(enc):
            with torch.inference_mode():
                return model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"),
                             mode=mode).logits.float().cpu()  # the copy back synchronises
        return run

    out: dict[str, Any] = {"device": device, "inputs": source, "max_length": max_length, "repeats": repeats}
    for b in batches:
        inputs = [{k: v.to(device) for k, v in tok(texts[i * b:(i + 1) * b], padding=True, truncation=True,
                                                   max_length=max_length, return_tensors="pt").items()}
                  for i in range(n_inputs)]
        times = time_paired({k: runner(*v) for k, v in fns.items()}, inputs, warmup=2, repeats=repeats)
        out[f"batch_{b}"] = {"latency": {k: summarize(v) for k, v in times.items()},
                             "speedup_pruned_vs_same_model_dense": ratio(times["adapler_dense"],
                                                                         times["adapler_pruned"], repeats),
                             "speedup_pruned_vs_finetuned_dense": ratio(times["finetune_dense"],
                                                                        times["adapler_pruned"], repeats)}
    return out


def _cmake_plugin(work: Path, op: str = "token_drop") -> Path:
    """Build one op's C++ TensorRT plugin with CMake (plugins/<op>/trt) for this GPU; its static library."""
    build = work / f"{op}_trt"
    archs = ";".join(_arch())
    for cmd in (["cmake", "-S", str(ROOT / "plugins" / op / "trt"), "-B", str(build),
                 f"-DCMAKE_CUDA_ARCHITECTURES={archs}"], ["cmake", "--build", str(build), "-j"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {(proc.stdout + proc.stderr)[-1500:]}")
    return build / f"libadapler_{op}_trt.so"


def _demo_export(demo_dir: Path, work: Path, contribution_drop: bool = False) -> tuple[Path, dict[str, Any]]:
    """The AdapLeR demo checkpoint exported into work/export (after the TensorRT and GPU checks)."""
    from adapler.plugins.token_drop.trt.qdp import TENSORRT_AVAILABLE, TENSORRT_UNAVAILABLE_REASON

    if not TENSORRT_AVAILABLE:
        raise Skipped(TENSORRT_UNAVAILABLE_REASON)
    if not _cuda():
        raise Skipped(NO_CUDA)
    from adapler import methods
    ckpt = demo_dir / methods.MAIN / "best"
    if not ckpt.exists():
        raise Skipped(f"demo checkpoint {ckpt} missing: run `make demo` or pass --demo-dir")
    from adapler.export.onnx import write_export_dir

    export = work / ("export_cd" if contribution_drop else "export")
    return export, write_export_dir(ckpt, export, overwrite=True, contribution_drop=contribution_drop)


def _compare(engine: Path, export: Path, meta: dict[str, Any], plugin_libs) -> dict[str, Any]:
    """The engine against ONNX Runtime on model.std.onnx, on four demo texts."""
    from transformers import AutoTokenizer

    from adapler.export.trt import compare_with_ort

    tok = AutoTokenizer.from_pretrained(str(export / "tokenizer"))
    texts, inputs = _texts(4)
    enc = tok(texts, padding=True, truncation=True, max_length=meta["max_length"], return_tensors="np")
    feeds = {n: enc[n].astype(np.int64) for n in meta["inputs"]}
    return {"inputs": inputs, "vs_ort_std": compare_with_ort(engine, export / meta["files"]["std"], feeds, plugin_libs)}


def tensorrt_engine(demo_dir: Path, work: Path) -> dict[str, Any]:
    export, meta = _demo_export(demo_dir, work)
    from adapler.export.trt import write_trt_bundle_for_export

    plugin_lib = _cmake_plugin(work) if os.environ.get("TRT_ROOT") and shutil.which("cmake") else None
    report = write_trt_bundle_for_export(export, fp16=False, plugin_lib=plugin_lib)
    out = {"plugin": str(plugin_lib) if plugin_lib else "Python plugin (qdp.py)", "engine_built": report.engine_built,
           "engine_reason": report.engine_reason, "lint_errors": len(report.lint_errors)}
    if not report.engine_built:
        raise AssertionError(f"engine not built: {report.engine_reason}")
    return {**out, **_compare(report.engine_path, export, meta, plugin_lib)}


def tensorrt_cd_engine(demo_dir: Path, work: Path) -> dict[str, Any]:
    """model.cd.trt.onnx (one ContributionDrop per layer) built with both C++ plugins and compared with ORT."""
    if not (os.environ.get("TRT_ROOT") and shutil.which("cmake")):
        raise Skipped("the ContributionDrop graph needs the C++ plugins: set TRT_ROOT (a TensorRT SDK) and install "
                      "cmake")
    export, meta = _demo_export(demo_dir, work, contribution_drop=True)
    from adapler.export.trt import build_engine, write_trt_bundle_for_export

    libs = [_cmake_plugin(work, "token_drop"), _cmake_plugin(work, "contribution_drop")]
    report = write_trt_bundle_for_export(export, fp16=False, plugin_lib=libs[0], build=False)
    if report.cd_lint_errors:
        raise AssertionError(f"lint.cd.json has {len(report.cd_lint_errors)} error(s)")
    t_max = int(meta["max_length"])
    profile = {n: ((1, 2), (1, min(128, t_max)), (8, t_max)) for n in meta["inputs"]}
    engine = build_engine(report.cd_trt_onnx, work / "model.cd.engine", [profile], libs)
    return {"plugins": [str(lib) for lib in libs], "engine": str(engine), **_compare(engine, export, meta, libs)}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check" / "gpu_check.json")
    p.add_argument("--demo-dir", type=Path, default=ROOT / "runs" / "demo")
    p.add_argument("--work", type=Path, default=ROOT / "build" / "gpu_check")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report: dict[str, Any] = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              "environment": environment(), "steps": {}}
    report["device"] = report["environment"].get("device")

    def step(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        s0 = time.time()
        try:
            result = {"status": "ok", **fn()}
        except Skipped as exc:
            result = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:  # recorded, the remaining steps still run
            result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=3)}
        result["seconds"] = round(time.time() - s0, 2)
        report["steps"][name] = result
        report["seconds_total"] = round(time.time() - t0, 2)
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(f"[gpu_check] {name}: {result['status']} {result.get('reason') or result.get('error') or ''}",
              file=sys.stderr)
        return result

    built = step("kernel_build", lambda: kernel_build(args.work))
    step("kernel_check", lambda: kernel_check(built.get("library")))
    cd_built = step("contribution_drop_build", lambda: contribution_drop_build(args.work))
    step("contribution_drop_check", lambda: contribution_drop_check(cd_built.get("library")))
    step("torch_kernel_check", torch_kernel_check)
    step("torch_cuda_timing", lambda: torch_cuda_timing(args.demo_dir))
    step("tensorrt_engine", lambda: tensorrt_engine(args.demo_dir, args.work))
    step("tensorrt_cd_engine", lambda: tensorrt_cd_engine(args.demo_dir, args.work))
    print(f"[gpu_check] wrote {args.out}", file=sys.stderr)
    return 1 if any(s["status"] == "failed" for s in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
