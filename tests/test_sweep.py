"""Knob sweeps: one run per value, JSON after each value, finished values skipped."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, tiny_finetuned

pytestmark = pytest.mark.usefixtures("one_thread")




def test_sweep_power_bert_writes_json_and_skips_finished(tmp_path: Path, monkeypatch) -> None:
    from adapler import methods
    from adapler.training import power_bert
    from adapler.training import sweep as sw
    pb = methods.get("power-bert")
    ds, ft = tiny_finetuned(tmp_path)
    root = tmp_path / "sweep"
    opts = {"epochs": 1, "batch_size": 16, "lr_soft": 0.1, "search_epochs": 1}
    res = sw.sweep(pb, [0.05, 0.01], ds, ft, root, **opts)
    saved = json.loads((root / "sweep-power-bert.json").read_text())
    assert [r["value"] for r in saved] == [0.01, 0.05] and saved == res
    for r in saved:
        assert r["method"] == "power-bert" and r["knob"] == "lambda"
        assert {"dev_accuracy", "test_accuracy", "flops_speedup", "mean_kept_lengths", "checkpoint"} <= set(r)
        assert len(r["mean_kept_lengths"]) == 4 and Path(r["checkpoint"]).is_dir()
    assert (root / "power-bert-0.05" / "best" / "config.json").exists()

    def no_training(*a, **k):
        raise AssertionError("a finished value was trained again")
    monkeypatch.setattr(power_bert, "train_power_bert", no_training)
    assert sw.sweep(pb, [0.01, 0.05], ds, ft, root, **opts) == saved
    # a finished run missing from the JSON (crash between training and evaluation) is only evaluated
    (root / "sweep-power-bert.json").write_text(json.dumps(saved[:1]))
    again = sw.sweep(pb, [0.01, 0.05], ds, ft, root, **opts)
    assert [r["value"] for r in again] == [0.01, 0.05]
    assert again[1]["test_accuracy"] == saved[1]["test_accuracy"]
    # ... but never for other options: those runs would silently stand for settings they were not trained with
    from adapler.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="batch_size is 32 but"):
        sw.sweep(pb, [0.01], ds, ft, root, epochs=1)


def test_sweep_adapler_passes_phi(tmp_path: Path, monkeypatch) -> None:
    from adapler import methods
    from adapler.checkpoint import load_checkpoint, save_checkpoint
    from adapler.training import sweep as sw
    from adapler.training import train_adapler as ta
    ds, ft = tiny_finetuned(tmp_path)
    seen = []

    def fake_train(data, init, out, cfg, overwrite=False, resume=False, cache_dir=None):  # stands in for the real trainer
        seen.append((cfg.phi, cfg.epochs, resume))
        model, c = load_checkpoint(ft / "best")
        from adapler.checkpoint import load_checkpoint_tokenizer
        save_checkpoint(model, Path(out) / "best", tokenizer=load_checkpoint_tokenizer(ft / "best"),
                        label_names=data.label_names, max_length=c["max_length"])
        (Path(out) / "run_state.json").write_text(json.dumps({"epochs_done": cfg.epochs, "config": {"epochs": cfg.epochs}}))
        return Path(out)
    monkeypatch.setattr(ta, "train_adapler", fake_train)
    res = sw.sweep(methods.get("adapler"), [1e-3], ds, ft, tmp_path / "sw", epochs=2)
    assert seen == [(1e-3, 2, False)]
    assert res[0]["knob"] == "phi" and res[0]["value"] == 1e-3 and (tmp_path / "sw" / "adapler-0.001").is_dir()
    # the finished value is not silently reused for other options
    from adapler.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="epochs is 3 but"):
        sw.sweep(methods.get("adapler"), [1e-3], ds, ft, tmp_path / "sw", epochs=3)
    assert seen == [(1e-3, 2, False)]
    with pytest.raises(ValueError, match="unknown AdapLeR options"):
        sw.sweep(methods.get("adapler"), [2e-3], ds, ft, tmp_path / "sw", knob_typo=1)
