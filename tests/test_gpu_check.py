"""bench/gpu_check.sh and bench/gpu_check.py on a CPU-only machine: the GPU steps skip with their reasons,
the checker's comparison accepts a correct implementation and rejects a wrong one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from adapler.bench import gpu_check
from adapler.plugins.token_drop.gpu import token_drop_torch
from conftest import ROOT


def test_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")]).returncode == 0


def test_checker_accepts_the_torch_implementation_and_rejects_wrong_ones():
    cases = gpu_check.ragged_cases(24)
    assert len(cases) == 27 and {c[0].dtype for c in cases} == {np.dtype(np.float32), np.dtype(np.float16)}
    assert any(c[0].shape[0] > 1 and c[2].min() == 0 for c in cases)  # ragged: padded rows in a batch
    good = gpu_check.run_cases(token_drop_torch, cases, "cpu")
    assert good["passed"] and good["indices_identical"] and good["max_abs_diff_fp32"] == 0.0

    def nudged(*args):
        h, m, i = token_drop_torch(*args)
        return h + 1e-5 * (h.dtype == torch.float32), m, i

    def shifted(*args):
        h, m, i = token_drop_torch(*args)
        return h, m, torch.where(i > 0, i - 1, i)

    bad = gpu_check.run_cases(nudged, cases, "cpu")
    assert not bad["passed"] and bad["indices_identical"] and bad["max_abs_diff_fp32"] > gpu_check.ATOL_FP32
    assert not gpu_check.run_cases(shifted, cases, "cpu")["indices_identical"]


def test_single_row_cases_pass_on_cpu_and_hold_nan_and_padding():
    """The cases torch_kernel_check adds for token_drop_torch's one-row path, run on the CPU here."""
    cases = gpu_check.single_row_cases(12)
    assert all(c[0].shape[0] == 1 for c in cases) and any(np.isnan(c[1]).any() for c in cases)
    assert any(c[2].min() == 0 for c in cases)
    assert gpu_check.run_cases(token_drop_torch, cases, "cpu")["passed"]


def test_contribution_drop_cases_catch_a_wrong_kernel():
    """The ContributionDrop check passes the reference itself and flags a kernel that keeps one token too few."""
    import numpy as np

    from adapler.plugins.contribution_drop.make_golden import reference_outputs

    names = ("hidden", "cp_hidden", "w2", "mask", "eta")

    def reference(*args):
        return [torch.from_numpy(x) for x in reference_outputs({n: t.numpy() for n, t in zip(names, args)})]

    def short(*args):
        h, m, i = reference(*args)
        return h, m, torch.where(i == i.max(), torch.full_like(i, -1), i)

    failed, total = gpu_check.contribution_drop_cases(reference, "cpu", n_cases=3)
    assert failed == [] and total == 4 + 4 * 3
    failed, _ = gpu_check.contribution_drop_cases(short, "cpu", n_cases=3)
    assert "golden ragged" in failed and len(failed) >= 8
    assert np.dtype(np.float16).name in " ".join(failed)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible: this test covers the CPU-only path")
def test_cpu_only_run_skips_gpu_steps_with_reasons(tmp_path):
    out = tmp_path / "gpu_check.json"
    rc = gpu_check.main(["--out", str(out), "--work", str(tmp_path / "work"), "--demo-dir", str(tmp_path / "none")])
    report = json.loads(out.read_text())
    assert rc == 0 and report["device"] is None and report["environment"]["cuda_available"] is False
    steps = report["steps"]
    assert list(steps) == ["kernel_build", "kernel_check", "contribution_drop_build", "contribution_drop_check",
                           "torch_kernel_check", "torch_cuda_timing", "tensorrt_engine", "tensorrt_cd_engine"]
    for build in ("kernel_build", "contribution_drop_build"):
        if shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists():
            assert steps[build]["status"] == "ok" and Path(steps[build]["library"]).is_file()
        else:
            assert steps[build]["status"] == "skipped" and "nvcc" in steps[build]["reason"]
    for name in ("kernel_check", "contribution_drop_check", "torch_kernel_check", "torch_cuda_timing"):
        assert steps[name]["status"] == "skipped" and steps[name]["reason"] == gpu_check.NO_CUDA
    assert steps["tensorrt_engine"]["status"] == "skipped"
    assert steps["tensorrt_engine"]["reason"] == report["environment"]["tensorrt_reason"]
    cd = steps["tensorrt_cd_engine"]  # the ContributionDrop graph has no Python plugin: it needs TRT_ROOT and cmake
    assert cd["status"] == "skipped"
    assert "set TRT_ROOT" in cd["reason"] if not os.environ.get("TRT_ROOT") else cd["reason"] in (
        report["environment"]["tensorrt_reason"], gpu_check.NO_CUDA)


def test_timing_step_runs_on_cpu_with_tiny_demo_models(tmp_path, tiny_bert_dir, monkeypatch):
    """The timing code path (checkpoints, tokenizer, paired timings, speedups) on CPU, before any GPU time."""
    from transformers import AutoTokenizer

    from adapler.checkpoint import save_checkpoint
    from adapler.demo import DEMO_SENTENCES
    from conftest import adapler_model

    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    for name in ("adapler", "finetune"):
        save_checkpoint(adapler_model(2, eta=0.9), tmp_path / name / "best", tokenizer=tok, label_names=["a", "b", "c"],
                        max_length=32)
    monkeypatch.setattr(gpu_check, "_texts", lambda n: ((DEMO_SENTENCES * n)[:n], "demo sentences"))
    with pytest.raises(gpu_check.Skipped, match="demo checkpoints missing"):
        gpu_check.torch_cuda_timing(tmp_path / "nowhere", device="cpu")
    out = gpu_check.torch_cuda_timing(tmp_path, batches=(1, 4), n_inputs=2, repeats=2, device="cpu")
    assert out["device"] == "cpu" and out["max_length"] == 32
    for b in (1, 4):
        lat = out[f"batch_{b}"]["latency"]
        assert set(lat) == {"adapler_pruned", "adapler_dense", "finetune_dense"}
        assert all(v["n"] == 4 for v in lat.values())  # 2 inputs x 2 repeats, paired
        assert out[f"batch_{b}"]["speedup_pruned_vs_same_model_dense"]["n_pairs"] == 2
