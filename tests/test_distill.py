"""Logit distillation from the fine-tuned model (adapler/training/distill.py) and its use in AdapLeR training."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer
from adapler.data import encode, load_dataset
from adapler.errors import UsageError
from adapler.training.distill import batch_teacher, distilled_task_loss, teacher_logits
from adapler.training.train_adapler import AdapLeRConfig, train_adapler


def test_alpha_zero_is_cross_entropy():
    s, y = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(distilled_task_loss(s, y, torch.randn(5, 3), 0.0, 2.0), F.cross_entropy(s, y))
    torch.testing.assert_close(distilled_task_loss(s, y, None, 0.7, 2.0), F.cross_entropy(s, y))


def test_kl_term_by_hand():
    student, teacher, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    t = 2.0
    p = torch.softmax(teacher / t, -1)[0]  # the student's tempered distribution is uniform
    kl = float((p * torch.log(p / 0.5)).sum())
    want = 0.25 * math.log(2) + 0.75 * t * t * kl
    assert distilled_task_loss(student, y, teacher, 0.75, t).item() == pytest.approx(want, rel=1e-6)


def test_pure_distillation_is_stationary_at_the_teacher():
    teacher, y = torch.tensor([[1.5, -0.5, 0.2]]), torch.tensor([1])
    student = teacher.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(distilled_task_loss(student, y, teacher, 1.0, 3.0), student)
    assert g.abs().max().item() < 1e-6
    moved = (teacher + torch.tensor([[0.0, 1.0, 0.0]])).requires_grad_(True)
    (g,) = torch.autograd.grad(distilled_task_loss(moved, y, teacher, 1.0, 3.0), moved)
    assert g[0, 1].item() > 0  # pulls the raised logit back down, although it is the gold class


def test_teacher_logits_are_the_dense_logits_whatever_the_batching(finetuned_run, sentiment_csv, tmp_path):
    data = load_dataset(sentiment_csv)
    tok = load_checkpoint_tokenizer(finetuned_run / "best")
    examples = data.train[:23]
    big = teacher_logits(finetuned_run / "best", examples, tok, 32, tmp_path / "a", batch_size=64)
    small = teacher_logits(finetuned_run / "best", examples, tok, 32, tmp_path / "b", batch_size=4)
    assert list(big) == [e.id for e in examples]
    for e in examples:
        torch.testing.assert_close(big[e.id], small[e.id], atol=1e-5, rtol=1e-4)
    enc = encode(examples[:3], tok, 32)
    model, _ = load_checkpoint(finetuned_run / "best")
    model.eval()
    with torch.no_grad():
        want = model(enc.input_ids, enc.attention_mask, enc.token_type_ids, mode="dense").logits
    torch.testing.assert_close(batch_teacher(big, enc.ids), want, atol=1e-5, rtol=1e-4)


def test_teacher_logits_are_cached_by_content(finetuned_run, sentiment_csv, tmp_path, monkeypatch):
    """A second call with the same checkpoint, tokenizer, length and examples reads the file and loads no
    model; other examples get their own file."""
    from adapler.training import distill
    data = load_dataset(sentiment_csv)
    tok = load_checkpoint_tokenizer(finetuned_run / "best")
    first = teacher_logits(finetuned_run / "best", data.train[:10], tok, 32, tmp_path)
    (path,) = tmp_path.glob("teacher-*.safetensors")

    def no_model(*a, **kw):
        raise AssertionError("the cached teacher logits were recomputed")
    monkeypatch.setattr(distill, "load_checkpoint", no_model)
    again = teacher_logits(finetuned_run / "best", list(reversed(data.train[:10])), tok, 32, tmp_path)
    assert set(again) == set(first) and all(torch.equal(again[i], first[i]) for i in first)
    with pytest.raises(AssertionError, match="recomputed"):
        teacher_logits(finetuned_run / "best", data.train[:11], tok, 32, tmp_path)
    assert list(tmp_path.glob("teacher-*.safetensors")) == [path]


def test_table_shards_gather_to_the_one_process_table(finetuned_run, sentiment_csv, tmp_path):
    """Two ranks each compute a contiguous share; gathered, rank 0 writes the one-process file (same name,
    same rows, same order)."""
    from adapler.training.distributed import TrainEnv
    from adapler.training.example_tables import cached_table, load_table
    data = load_dataset(sentiment_csv)
    tok = load_checkpoint_tokenizer(finetuned_run / "best")
    examples = data.train[:9]
    seen: list[list[str]] = []

    def compute(share):
        seen.append([e.id for e in share])
        return {e.id: torch.tensor([float(len(e.text)), float(e.label)]) for e in share}
    ckpts = [finetuned_run / "best"]
    one = cached_table("t", "t", ckpts, examples, tok, 32, tmp_path / "one", compute)
    envs = [TrainEnv(rank=r, world_size=2) for r in range(2)]
    parts = [compute(examples[:4]), compute(examples[4:])]
    for env in envs:
        env.all_gather = lambda obj, env=env: [obj if r == env.rank else parts[r] for r in range(2)]
    seen.clear()
    tables = [cached_table("t", "t", ckpts, examples, tok, 32, tmp_path / f"rank{r}", compute, env)
              for r, env in enumerate(envs)]
    assert seen == [[e.id for e in examples[:4]], [e.id for e in examples[4:]]]
    for t in tables:
        assert list(t) == list(one) and all(torch.equal(t[i], one[i]) for i in one)
    (written,) = (tmp_path / "rank0").glob("t-*.safetensors")
    assert written.name == next((tmp_path / "one").glob("t-*.safetensors")).name
    assert not (tmp_path / "rank1").exists()  # only rank 0 writes
    assert list(load_table(written)) == list(one)


@pytest.mark.parametrize("field,value,message", [("distill", 1.5, "distill must be <= 1"),
                                                 ("distill", -0.1, "distill must be >= 0"),
                                                 ("distill_temperature", 0.0, "distill_temperature must be > 0")])
def test_bad_distill_values_are_refused(field, value, message):
    with pytest.raises(UsageError, match=message):
        AdapLeRConfig(**{field: value})


def test_distillation_reaches_the_training_loss(finetuned_run, sentiment_csv, tmp_path):
    data = load_dataset(sentiment_csv)
    base = dict(epochs=1, batch_size=16, lr=5e-4, phi=0.05, saliency_epochs=2)
    plain = train_adapler(data, finetuned_run, tmp_path / "plain", AdapLeRConfig(**base),
                          cache_dir=tmp_path / "sal")
    kd = train_adapler(data, finetuned_run, tmp_path / "kd", AdapLeRConfig(**base, distill=0.9, distill_temperature=2.0),
                       cache_dir=tmp_path / "sal")
    assert "ce" in json.loads((plain / "history.json").read_text())[0]
    row = json.loads((kd / "history.json").read_text())[0]
    assert "task" in row and "ce" not in row
    assert len(list((tmp_path / "sal").glob("teacher-*.safetensors"))) == 1  # cached with the saliency targets
    _, cfg = load_checkpoint(kd / "best")
    assert cfg["adapler"]["distill"] == 0.9
    a, _ = load_checkpoint(plain / "last")
    b, _ = load_checkpoint(kd / "last")
    w = "classifier.weight"
    assert not torch.allclose(a.state_dict()[w], b.state_dict()[w])  # same seed and data: only the loss differs
