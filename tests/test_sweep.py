"""Knob sweeps: one run per value, JSON after each value, finished values skipped."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_finetuned

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


def test_sweep_targets_steer_each_run(tmp_path: Path, monkeypatch) -> None:
    """--targets: one run per target speedup with target_speedup set (the knob left to the trainer), named
    <method>-target<X>; the points share sweep-<method>.json with knob points, and say whether X was reached."""
    from adapler import methods
    from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer, save_checkpoint
    from adapler.errors import UsageError
    from adapler.training import sweep as sw
    from adapler.training import train_adapler as ta
    ds, ft = tiny_finetuned(tmp_path)
    seen = []

    def fake_train(data, init, out, cfg, overwrite=False, resume=False, cache_dir=None):
        seen.append((cfg.target_speedup, cfg.phi))
        model, c = load_checkpoint(ft / "best")
        best = save_checkpoint(model, Path(out) / "best", tokenizer=load_checkpoint_tokenizer(ft / "best"),
                               label_names=data.label_names, max_length=c["max_length"])
        config = json.loads((Path(best) / "config.json").read_text())  # what the selection rule records
        (Path(best) / "config.json").write_text(json.dumps({**config, "target_reached": cfg.target_speedup is not None and cfg.target_speedup < 3}))
        (Path(out) / "run_state.json").write_text(json.dumps({"epochs_done": cfg.epochs, "config": {"epochs": cfg.epochs}}))
        return Path(out)
    monkeypatch.setattr(ta, "train_adapler", fake_train)
    adapler = methods.get("adapler")
    default_phi = adapler.config().phi
    root = tmp_path / "sw"
    sw.sweep(adapler, [1e-3], ds, ft, root, epochs=1)  # a knob point first: the same file, another kind of point
    res = sw.sweep(adapler, [4, 2], ds, ft, root, targets=True, epochs=1)
    assert seen[1:] == [(4.0, default_phi), (2.0, default_phi)]  # phi is only the controller's start value
    assert [(r["knob"], r["value"]) for r in res] == [("phi", 1e-3), ("target_speedup", 2.0), ("target_speedup", 4.0)]
    assert [r.get("target_reached") for r in res] == [None, True, False] and "target_reached" not in res[0]
    assert (root / "adapler-target2").is_dir() and (root / "adapler-target4").is_dir()
    assert json.loads((root / "sweep-adapler.json").read_text()) == res
    assert sw.sweep(adapler, [2], ds, ft, root, targets=True, epochs=1) == res and len(seen) == 3  # done: skipped
    with pytest.raises(UsageError, match="a target sweep sets phi for every run itself"):
        sw.sweep(adapler, [2], ds, ft, root, targets=True, phi=1e-3)
    with pytest.raises(UsageError, match="target_speedup"):
        sw.sweep(adapler, [0.5], ds, ft, root, targets=True)
