"""PoWER-BERT selector (significance, top-k extract, retention) and its trainer, on tiny random models."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ragged_batch, tiny_config, tiny_finetuned

from adapler.checkpoint import load_checkpoint, save_checkpoint
from adapler.encoder import PrunedBertClassifier
from adapler.flops import Dims, f_attn, f_ffn, f_head, model_flops
from adapler.selectors import build_selector
from adapler.selectors.power_bert import AttentionTopKSelector, retention_from_r, significance, topk_keep_indices

pytestmark = pytest.mark.usefixtures("one_thread")



def _model(retention=None, layers: int = 4, max_length: int = 32, seed: int = 0) -> PrunedBertClassifier:
    torch.manual_seed(seed)
    sel = AttentionTopKSelector(layers, max_length, retention=retention)
    return PrunedBertClassifier(tiny_config(layers), 3, sel).eval()


def test_significance_formula_and_padding_last() -> None:
    probs = torch.tensor([[[0.5, 0.3, 0.2, 0.0],
                           [0.1, 0.6, 0.3, 0.0],
                           [0.2, 0.2, 0.6, 0.0],
                           [0.9, 0.05, 0.05, 0.0]]])[:, None].expand(1, 2, 4, 4)  # 2 identical heads
    mask = torch.tensor([[1, 1, 1, 0]])
    sig = significance(probs, mask)
    # column sums over real queries minus the diagonal; the padding query (row 3) does not vote
    assert torch.allclose(sig[0, :3], torch.tensor([0.3, 0.5, 0.5]))
    assert sig[0, 3] == float("-inf")


def test_topk_extract_keeps_cls_and_original_order() -> None:
    sig = torch.tensor([[-5.0, 0.1, 0.9, 0.3, 0.8, float("-inf")],
                        [0.0, 0.7, float("-inf"), float("-inf"), float("-inf"), float("-inf")]])
    idx = topk_keep_indices(sig, 3)
    assert idx.tolist()[0] == [0, 2, 4]  # [CLS] kept although least significant; ascending order
    assert idx.tolist()[1][:2] == [0, 1] and idx.shape == (2, 3)  # padding only fills leftover slots
    assert topk_keep_indices(sig, 1).tolist() == [[0], [0]]


def test_retention_from_r_monotone_and_min_one() -> None:
    r = torch.zeros(4, 8)
    r[0] = 0.75  # 6.0 -> 6
    r[1, :7] = 1.0  # 7 -> clamped to 6 (non-increasing)
    r[2, :3] = 0.9  # 2.7 -> 2
    r[3] = 0.0  # 0 -> min 1
    assert retention_from_r(r) == [6, 6, 2, 1]
    r2 = torch.zeros(2, 8)
    r2[:, 1:4] = 1.0
    assert retention_from_r(r2) == [3, 3]
    assert retention_from_r(r2, protect_cls=True) == [4, 4]  # [CLS] counts as 1 whatever r[j, 0] is


def test_hard_kept_lengths_are_min_of_retention_and_length() -> None:
    retention = [20, 12, 7, 3]
    model = _model(retention)
    ids, mask = ragged_batch(6, 24, seed=1)
    n = mask.sum(1)
    with torch.no_grad():
        out = model(ids, mask, mode="hard", track_positions=True)
    expect = torch.stack([torch.minimum(n, torch.tensor(v)) for v in retention], dim=1)
    assert torch.equal(out.kept_lengths, expect)
    for layer, pos in enumerate(out.positions):
        assert pos.shape[1] == min(retention[layer], 24)
        for row in range(pos.shape[0]):
            real = pos[row][pos[row] >= 0].tolist()
            assert real[0] == 0 and real == sorted(real) and len(real) == len(set(real))
            if layer:  # nested: a later layer keeps a subset of the earlier one
                prev = out.positions[layer - 1][row]
                assert set(real) <= set(prev[prev >= 0].tolist())


def test_batched_equals_batch_one() -> None:
    model = _model([18, 10, 6, 4])
    ids, mask = ragged_batch(5, 24, seed=2)
    with torch.no_grad():
        batched = model(ids, mask, mode="hard")
        for i in range(5):
            n = int(mask[i].sum())
            single = model(ids[i:i + 1, :n], mask[i:i + 1, :n], mode="hard")
            assert torch.allclose(batched.logits[i], single.logits[0], atol=1e-5)
            assert torch.equal(batched.kept_lengths[i], single.kept_lengths[0])


def test_masked_evaluation_equals_hard_once_configured() -> None:
    model = _model([15, 9, 5, 2])
    ids, mask = ragged_batch(5, 24, seed=6)
    with torch.no_grad():
        hard, soft = model(ids, mask, mode="hard"), model(ids, mask, mode="soft")
    assert torch.allclose(hard.logits, soft.logits, atol=1e-5)
    assert torch.equal(hard.kept_lengths, soft.kept_lengths.long())


def test_soft_mode_r_one_is_dense_and_r_gets_gradient() -> None:
    model = _model()
    ids, mask = ragged_batch(4, 20, seed=3)
    with torch.no_grad():
        dense = model(ids, mask, mode="dense").logits
    soft = model(ids, mask, mode="soft")
    assert torch.allclose(soft.logits, dense, atol=1e-5)
    assert soft.aux["mass_penalty"].item() == pytest.approx((1 + 2 + 3 + 4) * 32)
    soft.logits.sum().backward()
    g = model.selector.r.grad
    assert g is not None and g[:, :20].abs().sum() > 0 and g[:, 20:].abs().sum() == 0  # ranks beyond T unused
    with torch.no_grad():
        model.selector.r[:, 5:] = 0.0
        soft2 = model(ids, mask, mode="soft")
    assert torch.allclose(soft2.kept_lengths, torch.minimum(mask.sum(1), torch.tensor(5))[:, None].float().expand(4, 4))


def test_soft_protect_cls_keeps_cls_weight_one() -> None:
    torch.manual_seed(0)
    sel = AttentionTopKSelector(4, 32, protect_cls=True)
    model = PrunedBertClassifier(tiny_config(4), 2, sel).eval()
    with torch.no_grad():
        sel.r.zero_()
    ids, mask = ragged_batch(3, 12)
    out = model(ids, mask, mode="soft")
    assert torch.allclose(out.kept_lengths, torch.ones(3, 4))  # only [CLS] survives, at full weight


def test_flops_use_attention_on_previous_length() -> None:
    model = _model([10, 6, 6, 2])
    n = torch.tensor([24.0, 8.0])
    kept = torch.tensor([[10.0, 6, 6, 2], [8, 6, 6, 2]])
    dims = Dims.of(model)
    _, pruned = model_flops(model, n, kept)
    first = f_attn(n[0], dims) + f_ffn(torch.tensor(10.0), dims)
    rest = sum(f_attn(torch.tensor(a), dims) + f_ffn(torch.tensor(b), dims) for a, b in ((10, 6), (6, 6), (6, 2)))
    assert pruned[0].item() == pytest.approx(float(first + rest + f_head(dims)))


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _model([16, 9, 9, 2])
    with torch.no_grad():
        model.selector.r.uniform_(0, 1)
    save_checkpoint(model, tmp_path / "ckpt", label_names=["a", "b", "c"], max_length=32)
    loaded, cfg = load_checkpoint(tmp_path / "ckpt")
    assert cfg["method"] == "power-bert" and cfg["selector"]["retention"] == [16, 9, 9, 2]
    assert torch.equal(loaded.selector.r, model.selector.r)
    ids, mask = ragged_batch(4, 24)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask, mode="hard").logits, model(ids, mask, mode="hard").logits)


def test_from_options_validates() -> None:
    cfg = tiny_config(4)
    with pytest.raises(ValueError, match="4 layers"):
        build_selector("power-bert", cfg, {"max_length": 16, "retention": [4, 3]})
    with pytest.raises(ValueError, match="non-increasing"):
        build_selector("power-bert", cfg, {"max_length": 16, "retention": [4, 5, 3, 2]})
    sel = build_selector("power-bert", cfg, {"max_length": 16})
    assert sel.r.shape == (4, 16) and sel.lengths() == [16, 16, 16, 16]


# ------------------------------------------------------------------------------------------ smoke training


def test_smoke_training_and_resume(tmp_path: Path) -> None:
    from adapler.methods import train_method
    ds, ft = tiny_finetuned(tmp_path)
    out = train_method("power-bert", ds, ft, tmp_path / "pb", knob=5e-2, epochs=1, batch_size=16, search_epochs=1,
                       lr_soft=0.2)
    state = json.loads((out / "run_state.json").read_text())
    assert state["finished"] and state["phase"] == "retrain"
    history = json.loads((out / "history.json").read_text())
    assert [r["phase"] for r in history] == ["search", "retrain"]
    assert len(history[0]["r_mass"]) == 4 and history[0]["r_mass"][0] < 24  # the big r LR moved r down
    model, cfg = load_checkpoint(out / "best")
    assert cfg["method"] == "power-bert" and cfg["selector"]["retention"] == history[0]["retention"]
    assert cfg["selector"]["retention"] == sorted(cfg["selector"]["retention"], reverse=True)
    # resuming a finished run trains nothing more
    mtime = (out / "best" / "model.safetensors").stat().st_mtime_ns
    train_method("power-bert", ds, ft, out, knob=5e-2, epochs=1, batch_size=16, lr_soft=0.2, search_epochs=1, resume=True)
    assert (out / "best" / "model.safetensors").stat().st_mtime_ns == mtime
    assert len(json.loads((out / "history.json").read_text())) == 2
    # a crash between the search and re-training: resume fixes the same configuration and re-trains only
    state.update(phase="search", epochs_done=1, history=history[:1], finished=False,
                 best={"epoch": None, "phase": None, "dev_accuracy": -1.0})
    (out / "run_state.json").write_text(json.dumps(state))
    train_method("power-bert", ds, ft, out, knob=5e-2, epochs=1, batch_size=16, lr_soft=0.2, search_epochs=1, resume=True)
    rows = json.loads((out / "history.json").read_text())
    assert [r["phase"] for r in rows] == ["search", "retrain"]
    assert load_checkpoint(out / "best")[1]["selector"]["retention"] == history[0]["retention"]
    # the state named no best/: only the retrain epochs compete, never the search row it kept
    assert json.loads((out / "run_state.json").read_text())["best"]["phase"] == "retrain"


def test_onnx_graph_follows_the_length_on_both_sides_of_the_tracing_example(tmp_path) -> None:
    """The export traces at 16 tokens; retention above and below that must still act on every input length
    (a Python branch on the length used to be fixed at the tracing example: a 25-token row kept 25, not 20)."""
    import onnxruntime as ort

    from adapler.export.onnx import export_graph
    model = _model(retention=[20, 12, 7, 3])
    path = export_graph(model, tmp_path / "pb.onnx", std=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, max_len in ((2, 25), (1, 10), (3, 30), (4, 12)):
        ids, mask = ragged_batch(batch, max_len, seed=max_len)
        with torch.no_grad():
            out = model(ids, mask, mode="hard")
        logits, kept = sess.run(["logits", "kept_lengths"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        assert kept.tolist() == out.kept_lengths.tolist(), (batch, max_len)
        assert abs(logits - out.logits.numpy()).max() < 1e-4
