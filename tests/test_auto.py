"""Data-driven defaults (adapler/training/auto.py): max length, batch size, epochs."""
import json

import pytest
import torch

from adapler.training.auto import auto_batch_size, auto_epochs, auto_max_length, batch_size_for_init


def test_max_length_holds_the_quantile_and_stops_at_the_positions():
    short = torch.full((100,), 27.0)
    assert auto_max_length(short, 512) == 64
    mixed = torch.cat([torch.full((97,), 100.0), torch.full((3,), 900.0)])  # 3 % outliers do not set it
    assert auto_max_length(mixed, 512) == 128
    assert auto_max_length(torch.full((10,), 300.0), 512) == 384
    assert auto_max_length(torch.full((10,), 2000.0), 512) == 512  # long documents: the model's table
    assert auto_max_length(torch.full((10,), 2000.0), 4096) == 2048  # longer tables double on from 512
    assert auto_max_length(torch.full((10,), 100.0), 96) == 96  # a small table caps the candidate
    assert auto_max_length(torch.tensor([], dtype=torch.float64), 512) == 64


def test_batch_size_keeps_about_4096_tokens():
    assert [auto_batch_size(n) for n in (32, 64, 128, 256, 384, 512, 2048)] == [32, 32, 32, 16, 10, 8, 8]


def test_epochs_give_about_600_steps_within_3_to_10():
    assert auto_epochs(8454, 32) == 3  # vader-movies: 265 steps an epoch, the old default
    assert auto_epochs(1000, 8) == 5  # pang-lee at 512: the 625 steps measured to leave chance (results §1c)
    assert auto_epochs(60, 8) == 10


def test_finetune_defaults_come_from_the_data(tiny_bert_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADAPLER_QUIET", raising=False)  # CI sets it; the chosen defaults are a log line
    from adapler.data import load_dataset
    from adapler.training.finetune import FinetuneConfig, finetune
    long_words = " ".join(["plot"] * 70)  # ~72 tokens with [CLS]/[SEP]: 64 is too short, 128 holds them
    lines = ["text,label"] + [f"{long_words} {'great' if i % 2 else 'awful'},{i % 2}" for i in range(40)]
    (tmp_path / "long.csv").write_text("\n".join(lines) + "\n")
    out = finetune(load_dataset(str(tmp_path / "long.csv")), tmp_path / "ft",
                   FinetuneConfig(model=str(tiny_bert_dir), lr=5e-4))  # tiny table: 128 positions
    said = capsys.readouterr().err
    assert "defaults from the data: max length 128" in said and "batch size 32" in said
    cfg = json.loads((out / "best" / "config.json").read_text())
    assert cfg["max_length"] == 128
    assert cfg["finetune"]["batch_size"] == 32 and cfg["finetune"]["epochs"] == 10  # 32 texts: 1 step an epoch
    state = json.loads((out / "run_state.json").read_text())
    assert state["config"]["max_length"] == 128  # resume compares resolved values
    assert batch_size_for_init(out) == 32


def test_given_values_win_and_are_checked(tiny_bert_dir, sentiment_csv, tmp_path, capsys):
    from adapler.data import load_dataset
    from adapler.errors import UsageError
    from adapler.training.finetune import FinetuneConfig, finetune
    out = finetune(load_dataset(sentiment_csv), tmp_path / "ft",
                   FinetuneConfig(model=str(tiny_bert_dir), max_length=16, batch_size=16, epochs=1, lr=5e-4))
    assert "defaults from the data" not in capsys.readouterr().err
    assert json.loads((out / "best" / "config.json").read_text())["max_length"] == 16
    with pytest.raises(UsageError, match="exceeds the 128 positions"):
        finetune(load_dataset(sentiment_csv), tmp_path / "ft2", FinetuneConfig(model=str(tiny_bert_dir), max_length=256))
    assert not (tmp_path / "ft2").exists()


def test_batch_size_for_an_unreadable_init_is_none(tmp_path):
    assert batch_size_for_init(tmp_path / "missing") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("[1]")
    assert batch_size_for_init(tmp_path / "bad") is None


def test_finetune_at_the_majority_rate_is_flagged(tiny_bert_dir, sentiment_csv, tmp_path, capsys, monkeypatch):
    """A run that learned nothing (lr so small the weights do not move) says so, naming the fix."""
    from adapler.data import load_dataset
    from adapler.training.finetune import FinetuneConfig, finetune, majority_note
    monkeypatch.delenv("ADAPLER_QUIET", raising=False)
    data = load_dataset(sentiment_csv)
    out = finetune(data, tmp_path / "ft", FinetuneConfig(model=str(tiny_bert_dir), max_length=16, epochs=1, lr=1e-12))
    said = capsys.readouterr().err
    assert "no better than always predicting the most frequent label" in " ".join(said.split())
    assert "--epochs" in said
    assert json.loads((out / "dev_scores.json").read_text())[0]["dev_accuracy"] <= 0.51
    assert majority_note(1.0, data) is None  # a run that did learn: no note
    assert majority_note(0.515, data) is None  # more than one point above the majority rate
    assert "50.0 %" in majority_note(0.5, data)  # the dev split is balanced: 50 % is the majority rate
