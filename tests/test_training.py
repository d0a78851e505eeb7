"""Training pipeline on a tiny model: artifacts, resume, no overwrite, saliency keyed by id, losses."""
import json

import pytest
import torch

from adapler.checkpoint import CheckpointError, load_checkpoint
from adapler.data import load_dataset
from adapler.training.saliency import compute_saliencies
from adapler.training.target import SelectionRule
from adapler.training.train_adapler import AdapLeRConfig, cp_kl_loss, lambda_at, train_adapler


def test_finetune_writes_epochs_and_scores(finetuned_run):
    scores = json.loads((finetuned_run / "dev_scores.json").read_text())
    assert [s["epoch"] for s in scores] == [1, 2]
    for k in (1, 2):
        model, cfg = load_checkpoint(finetuned_run / f"epoch-{k}")
        assert cfg["method"] == "bert" and cfg["label_names"] == ["negative", "positive"]
    assert (finetuned_run / "best" / "model.safetensors").exists()


def test_refuses_to_overwrite(finetuned_run, sentiment_csv):
    from adapler.training.finetune import FinetuneConfig, finetune
    with pytest.raises(CheckpointError, match="--overwrite"):
        finetune(load_dataset(sentiment_csv), finetuned_run, FinetuneConfig(epochs=1))


def test_saliency_keyed_by_id_and_cached(finetuned_run, sentiment_csv, tmp_path):
    from adapler.checkpoint import load_checkpoint_tokenizer
    data = load_dataset(sentiment_csv)
    tok = load_checkpoint_tokenizer(finetuned_run / "best")
    ckpts = [finetuned_run / "epoch-1", finetuned_run / "epoch-2"]
    sal = compute_saliencies(ckpts, data.train[:20], tok, 32, tmp_path)
    assert set(sal) == {e.id for e in data.train[:20]}
    # the same example gives the same vector whatever the order it was computed in
    again = compute_saliencies(ckpts, list(reversed(data.train[:20])), tok, 32, tmp_path / "other")
    for i in sal:
        torch.testing.assert_close(sal[i], again[i], atol=1e-5, rtol=1e-4)
    e = data.train[0]
    n = len(tok(e.text)["input_ids"])
    assert sal[e.id].shape == (n,) and (sal[e.id] > 0).all()
    assert len(list(tmp_path.glob("saliency-*.safetensors"))) == 1


def test_lambda_schedule():
    assert lambda_at(0, 0, 5) == 1000
    assert [lambda_at(1, e, 5) for e in range(5)] == [10, 100, 1e3, 1e4, 1e5]
    assert [lambda_at(1, e, 3) for e in range(3)] == [50, 2500, 125000]
    assert lambda_at(1, 0, 4) == 10 and lambda_at(1, 3, 4) == pytest.approx(1e5)


def test_kl_loss_zero_when_cp_matches_target():
    sal = torch.tensor([[1.0, 2.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    target = sal / sal.sum()
    eta = torch.tensor([0.01, 0.01])
    loss = cp_kl_loss([target, target], sal, mask, eta, None, 1e20, stopgrad=True)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    worse = cp_kl_loss([torch.tensor([[0.7, 0.1, 0.1, 0.1]])] * 2, sal, mask, eta, None, 1e20, stopgrad=True)
    assert worse.item() > 0.1


def test_adapler_training_and_resume(finetuned_run, sentiment_csv, tmp_path):
    data = load_dataset(sentiment_csv)
    cfg = AdapLeRConfig(epochs=2, batch_size=16, lr=5e-4, phi=0.05, saliency_epochs=2)
    out = train_adapler(data, finetuned_run, tmp_path / "ad", cfg)
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 2 and all(0.01 <= v <= 1.0 for v in hist[-1]["eta"])
    assert hist[-1]["eta"] != [0.25] * 4  # eta is learned
    model, mcfg = load_checkpoint(out / "best")
    assert mcfg["method"] == "adapler" and len(mcfg["selector"]["eta"]) == 4
    # an interrupted run resumes after its last finished epoch; a finished run has nothing left to do
    state = json.loads((out / "run_state.json").read_text())
    state["epochs_done"], state["history"] = 1, state["history"][:1]
    (out / "run_state.json").write_text(json.dumps(state))
    train_adapler(data, finetuned_run, out, cfg, resume=True)
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
    with pytest.raises(CheckpointError, match="--overwrite"):
        train_adapler(data, finetuned_run, out, cfg)


def test_sentence_pairs_end_to_end(tiny_bert_dir, tmp_path):
    """A pair dataset: token_type_ids reach the model, the checkpoint says so, evaluation runs."""
    from adapler.api import evaluate_checkpoint
    from adapler.training.finetune import FinetuneConfig, finetune
    rows = ["premise,hypothesis,label"]
    for i in range(60):
        rows.append(f"the film was good {i},it was {'good' if i % 2 else 'bad'},{'yes' if i % 2 else 'no'}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    data = load_dataset(str(tmp_path / "pairs.csv"), text_col="premise", text_pair_col="hypothesis")
    assert data.is_pair
    out = finetune(data, tmp_path / "ft", FinetuneConfig(model=str(tiny_bert_dir), epochs=1, max_length=32))
    _, cfg = load_checkpoint(out / "best")
    assert cfg["pair"] is True
    m = evaluate_checkpoint(out, data, split="test", batch_size=4, mode="dense")
    assert m["n_examples"] == len(data.test) and 0.0 <= m["accuracy"] <= 1.0


def test_epoch_selection_rule():
    """Max dev speedup within 1 point; until an epoch qualifies, the most accurate one is kept."""
    rule = SelectionRule(finetuned_accuracy=0.814)  # within 1 point: dev accuracy >= 0.804
    history = [(0.80, 5.8), (0.77, 8.4), (0.81, 3.0), (0.805, 4.0), (0.83, 2.0), (0.79, 9.0)]
    rows, chosen = [], []
    for epoch, (acc, speedup) in enumerate(history, 1):
        rows.append({"epoch": epoch, "dev_accuracy": acc, "dev_flops_speedup": speedup})
        chosen.append(rows[rule.pick(rows)]["epoch"])
    assert chosen == [1, 1, 3, 4, 4, 4]


def test_weight_average_is_evaluated_and_saved_while_training_goes_on_raw(finetuned_run, sentiment_csv, tmp_path):
    """--set ema: checkpoints hold the encoder's running average; the training itself is unchanged (same eta
    path), the selector is not averaged, and a decay near 0 saves the raw weights."""
    from safetensors.torch import load_file

    from adapler.errors import UsageError
    data = load_dataset(sentiment_csv)

    def run(ema: float):
        cfg = AdapLeRConfig(epochs=2, batch_size=16, lr=5e-4, phi=0.05, saliency_epochs=2, ema=ema)
        out = train_adapler(data, finetuned_run, tmp_path / f"ema{ema}", cfg)
        weights = load_file(str(next((out / "last").glob("*.safetensors"))))
        return [h["eta"] for h in json.loads((out / "history.json").read_text())], weights

    eta0, raw = run(0.0)
    eta5, avg = run(0.5)
    _, near_raw = run(1e-4)
    assert eta5 == eta0  # the raw weights were swapped back after each evaluation
    assert all(torch.equal(raw[k], avg[k]) for k in raw if k.startswith("selector."))
    assert not torch.allclose(raw["classifier.weight"], avg["classifier.weight"])
    assert all(torch.allclose(raw[k], near_raw[k], atol=1e-5) for k in raw)
    with pytest.raises(UsageError, match="ema must be <= 0.9999, got 1"):
        AdapLeRConfig(ema=1.0)
