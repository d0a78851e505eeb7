"""Checkpoints: config.json + safetensors round-trip; broken or mismatched ones give one-line errors."""
import json

import pytest
import torch

from adapler.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from conftest import ragged_batch
from conftest import adapler_model


@pytest.fixture
def saved(tmp_path):
    model = adapler_model(0)
    return model, save_checkpoint(model, tmp_path / "ckpt", label_names=["a", "b", "c"], max_length=32)


def test_round_trip(saved):
    model, path = saved
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["method"] == "adapler" and cfg["max_length"] == 32 and cfg["label_names"] == ["a", "b", "c"]
    assert cfg["selector"]["cp_hidden"] == 32 and len(cfg["selector"]["eta"]) == 4
    assert cfg["backbone"]["num_hidden_layers"] == 4
    assert not list(path.glob("*.bin")) and not list(path.glob("*.pt"))  # no pickle anywhere
    loaded, _ = load_checkpoint(path)
    ids, mask = ragged_batch(3, 16, 0)
    with torch.no_grad():
        a, b = model(ids, mask), loaded(ids, mask)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.kept_lengths, b.kept_lengths)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="not an adapler checkpoint"):
        load_checkpoint(tmp_path)


def test_corrupt_weights(saved):
    _, path = saved
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_checkpoint(path)


def test_config_mismatch_names_file(saved):
    _, path = saved
    cfg = json.loads((path / "config.json").read_text())
    cfg["backbone"]["num_hidden_layers"] = 6
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: eta has 4 values but the backbone has 6 layers"):
        load_checkpoint(path)
    cfg["backbone"]["num_hidden_layers"] = 4
    cfg["method"] = "bert"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model.safetensors does not match config.json \(bert\): unexpected"):
        load_checkpoint(path)
    cfg["method"] = "adapler"
    cfg["num_labels"] = 5
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model.safetensors: classifier.bias has shape \(3,\), config.json implies \(5,\)"):
        load_checkpoint(path)


def test_bad_json(saved):
    _, path = saved
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_checkpoint(path)


def test_check_classes_refuses_another_count_and_names_other_classes(monkeypatch):
    """A model of one file run on another: a different class count is an error, different names a note."""
    from types import SimpleNamespace

    from adapler import progress
    from adapler.checkpoint import check_classes
    said = []
    monkeypatch.setattr(progress, "log", said.append)
    cfg = {"num_labels": 2, "label_names": ["negative", "positive"]}
    check_classes("ft", cfg, SimpleNamespace(name="d.csv", num_labels=2, label_names=["negative", "positive"]))
    assert said == []
    check_classes("ft", cfg, SimpleNamespace(name="d.csv", num_labels=2, label_names=["0", "1"]))
    assert said == ["note: ft was trained on classes (negative, positive) and d.csv has (0, 1); "
                    "they are matched in that order"]
    with pytest.raises(CheckpointError, match="ft predicts 2 classes but d.csv has 3"):
        check_classes("ft", cfg, SimpleNamespace(name="d.csv", num_labels=3, label_names=["a", "b", "c"]))
