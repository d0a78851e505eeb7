"""Training is device-agnostic: no tensor inside a forward or a training step is created on the default device.

No GPU is lent to CI, so a ``torch.arange(T)`` without ``device=`` beside CUDA data would first fail on a user's
GPU. This emulates that mismatch on the CPU: every forward and every training step runs with torch's default
device set to ``meta``, so a tensor made without a device is a meta tensor and mixing it with the model's CPU
tensors raises. The two host-side builders that assemble per-batch targets from CPU tables and move them with
``.to(device)`` themselves run with the CPU as default, as they do on a GPU machine."""
from __future__ import annotations

import functools

import pytest
import torch

from adapler import cli, encoder
from adapler.training import runner, tr_bert, train_adapler

HOST_SIDE = ((train_adapler, "batch_targets"), (tr_bert, "_guides"))


def _on(device: str, fn, calls: list | None = None):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        if calls is not None:
            calls.append(fn.__name__)
        with torch.device(device):
            return fn(*args, **kwargs)
    return wrapped


@pytest.fixture
def meta_default(monkeypatch):
    """Forwards and training steps under a meta default device; returns the names of the wrapped calls made."""
    calls: list[str] = []
    monkeypatch.setattr(encoder.PrunedBertClassifier, "forward",
                        _on("meta", encoder.PrunedBertClassifier.forward, calls))
    train_epoch = runner.Run._train_epoch
    monkeypatch.setattr(runner.Run, "_train_epoch",
                        lambda self, batches, step, desc: train_epoch(self, batches, _on("meta", step, calls), desc))
    for module, name in HOST_SIDE:
        monkeypatch.setattr(module, name, _on("cpu", getattr(module, name)))
    return calls


def test_the_emulation_catches_a_tensor_made_without_a_device(meta_default):
    """The check itself: what the fixture is meant to catch does raise under it."""
    x = torch.ones(3)
    with torch.device("meta"), pytest.raises(RuntimeError, match="meta"):
        _ = x + torch.arange(3)


@pytest.mark.parametrize("method, extra", [
    ("adapler", ["--epochs", "1", "--target-speedup", "1.5"]),  # controller, distillation, saliency
    ("power-bert", []),
    ("tr-bert", []),
])
def test_training_creates_no_tensor_on_the_default_device(method, extra, meta_default, finetuned_run, sentiment_csv,
                                                          tmp_path, one_thread):
    out = tmp_path / method
    rc = cli.run_cli(["train", "--method", method, "--init", str(finetuned_run), "--data", sentiment_csv,
                      "--out", str(out), "--device", "cpu", *extra])
    assert rc == 0 and (out / "best" / "config.json").exists()
    assert "step" in meta_default and "forward" in meta_default  # both wrappers ran


def test_finetune_creates_no_tensor_on_the_default_device(meta_default, tiny_bert_dir, sentiment_csv, tmp_path,
                                                          one_thread):
    rc = cli.run_cli(["finetune", "--model", str(tiny_bert_dir), "--data", sentiment_csv, "--out",
                      str(tmp_path / "ft"), "--epochs", "1", "--max-length", "24", "--device", "cpu"])
    assert rc == 0 and "step" in meta_default and "forward" in meta_default
