"""bench/narrow_cp.py: distilling each CP into a narrower one gives a loadable checkpoint that keeps what it should."""
import json

import pytest
import torch
from conftest import adapler_model, write_sentiment_csv

from adapler.bench.narrow_cp import distill_cp, keep_agreement, narrow_checkpoint


def _teacher_ckpt(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer

    from adapler.checkpoint import save_checkpoint
    model = adapler_model(eta=0.8)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    return save_checkpoint(model, tmp_path / "teacher", tokenizer=tok, label_names=["a", "b", "c"], max_length=32,
                           extra={"note": "kept"})


def test_narrow_checkpoint_loads_with_the_new_width_and_the_same_thresholds(tmp_path, tiny_bert_dir):
    from adapler.checkpoint import load_checkpoint
    teacher = _teacher_ckpt(tmp_path, tiny_bert_dir)
    csv = write_sentiment_csv(tmp_path / "d.csv", n=60)
    agreement = narrow_checkpoint(teacher, csv, tmp_path / "narrow", hidden=8, texts=20, steps=50)
    model, cfg = load_checkpoint(tmp_path / "narrow")
    old, _ = load_checkpoint(teacher)
    assert cfg["selector"]["cp_hidden"] == 8 and model.selector.cps[0].fc1.out_features == 8
    assert torch.equal(model.selector.eta, old.selector.eta)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, old.bert.embeddings.word_embeddings.weight)
    assert cfg["note"] == "kept" and cfg["narrow_cp"]["hidden"] == 8
    assert cfg["narrow_cp"]["keep_agreement"] == agreement and len(agreement) == 4
    assert all(0.0 <= a <= 1.0 for a in agreement)
    with pytest.raises(SystemExit, match="exists; pass --overwrite"):
        narrow_checkpoint(teacher, csv, tmp_path / "narrow", hidden=8, texts=20, steps=1)
    assert json.loads((tmp_path / "narrow" / "config.json").read_text())["narrow_cp"]["steps"] == 50


def test_distilling_to_the_same_width_starts_at_the_teacher_and_keeps_its_tokens():
    teacher = adapler_model(eta=0.8).selector.cps[0]
    torch.manual_seed(1)
    rows = [torch.randn(n, 64) for n in (5, 9, 17, 30)]
    student = distill_cp(teacher, rows, hidden=32, steps=0)
    assert keep_agreement(teacher, student, rows, eta=0.8) == 1.0
    for r in rows:
        torch.testing.assert_close(student(r).softmax(-1), teacher(r).softmax(-1))


def test_a_narrower_cp_fits_the_teacher_better_after_training():
    teacher = adapler_model(eta=0.8).selector.cps[0]
    torch.manual_seed(2)
    rows = [torch.randn(n, 64) for n in (12, 20, 25, 31, 40)]

    def kl(cp):
        return sum(torch.nn.functional.kl_div(cp(r).log_softmax(-1), teacher(r).log_softmax(-1), log_target=True,
                                              reduction="sum") for r in rows).item()
    assert kl(distill_cp(teacher, rows, hidden=4, steps=200)) < kl(distill_cp(teacher, rows, hidden=4, steps=0))
