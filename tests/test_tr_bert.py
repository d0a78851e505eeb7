"""TR-BERT selector (threshold rule, batch fill), REINFORCE arithmetic and trainer, on tiny random models."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import ragged_batch, tiny_config, tiny_finetuned

from adapler.checkpoint import load_checkpoint, save_checkpoint
from adapler.encoder import EncoderState, PrunedBertClassifier, _bias_from_mask
from adapler.flops import Dims, f_attn, f_ffn, f_head, f_pred, model_flops
from adapler.selectors.tr_bert import (PolicySelector, heuristic_actions, heuristic_layers, heuristic_scores,
                                       length_term, policy_inputs, rank_targets, reinforce_loss, rewards,
                                       select_loss, selection_points)

pytestmark = pytest.mark.usefixtures("one_thread")



def _model(layers: int = 4, batch_fill: str = "masked", seed: int = 0) -> PrunedBertClassifier:
    torch.manual_seed(seed)
    cfg = tiny_config(layers)
    sel = PolicySelector(cfg.hidden_size, layers, batch_fill=batch_fill)
    model = PrunedBertClassifier(cfg, 2, sel).eval()
    with torch.no_grad():  # a spread of keep probabilities around 0.5, so the threshold matters
        for pol in sel.policies:
            pol.fc2.weight.normal_(0, 2.0)
    return model


def _state_with_probs(sel: PolicySelector, p: torch.Tensor, mask: torch.Tensor, mode: str = "hard") -> EncoderState:
    B, T = mask.shape
    hidden = torch.arange(B * T, dtype=torch.float32).view(B, T, 1).expand(B, T, 2).clone()
    pos = torch.where(mask > 0, torch.arange(T).expand(B, T), torch.full((B, T), -1))
    sel.probs = lambda point, state: p * state.mask.float()  # type: ignore[method-assign]
    state = EncoderState(hidden, mask, _bias_from_mask(mask), mode, positions=pos)
    sel.start(state)
    sel.before_layer(1, state)
    return state


P = torch.tensor([[0.9, 0.2, 0.5, 0.7, 0.1], [0.3, 0.49, 0.6, 0.0, 0.0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])


def test_selection_points() -> None:
    assert selection_points(12) == [1, 6]
    assert selection_points(6) == [1, 3]
    assert selection_points(4) == [1, 2]
    assert selection_points(3) == [1]  # the two points coincide: one selection only (limitation)
    assert heuristic_layers(12) == (8, [0, 5])  # the original back_r = 8, output_dims = [0, 5]
    assert heuristic_layers(6) == (4, [0, 2])


def test_threshold_rule_masked_compaction() -> None:
    sel = PolicySelector(2, 4)
    state = _state_with_probs(sel, P, MASK)
    assert state.positions.tolist() == [[0, 2, 3], [0, 2, -1]]  # p >= 0.5 and [CLS] (row 1: 0.3 < 0.5)
    assert state.mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert state.hidden[1, 2].abs().sum() == 0


def test_topk_fill_keeps_max_count_unmasked() -> None:
    sel = PolicySelector(2, 4, batch_fill="topk")
    state = _state_with_probs(sel, P, MASK)
    # every row keeps max_b(#kept) = 3 tokens; row 1 fills with its next-best token (p = 0.49), unmasked
    assert state.positions.tolist() == [[0, 2, 3], [0, 1, 2]]
    assert state.mask.tolist() == [[1, 1, 1], [1, 1, 1]]


def test_masked_batched_equals_batch_one_and_topk_differs() -> None:
    model = _model()
    ids, mask = ragged_batch(6, 24, seed=4)
    with torch.no_grad():
        batched = model(ids, mask, mode="hard")
        assert (batched.kept_lengths[:, -1] < mask.sum(1)).any()  # something was dropped
        for i in range(6):
            n = int(mask[i].sum())
            one = model(ids[i:i + 1, :n], mask[i:i + 1, :n], mode="hard")
            assert torch.allclose(batched.logits[i], one.logits[0], atol=1e-5)
            assert torch.equal(batched.kept_lengths[i], one.kept_lengths[0])
        model.selector.batch_fill = "topk"
        topk = model(ids, mask, mode="hard")
    assert (topk.kept_lengths >= batched.kept_lengths).all()
    kept = topk.kept_lengths
    for layer in model.selector.points:  # every row keeps max_b(#kept_b) tokens, or all it has
        assert torch.equal(kept[:, layer], torch.minimum(kept[:, layer].max(), kept[:, layer - 1]))


def test_masked_evaluation_equals_hard() -> None:
    model = _model()
    ids, mask = ragged_batch(5, 24, seed=7)
    with torch.no_grad():
        hard, soft = model(ids, mask, mode="hard"), model(ids, mask, mode="soft")
    assert soft.aux == {} and torch.allclose(hard.logits, soft.logits, atol=1e-5)
    assert torch.equal(hard.kept_lengths, soft.kept_lengths)


def test_select_loss_formula() -> None:
    p = torch.tensor([[0.9, 0.2, 0.6, 0.0]])
    a = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    got = select_loss(p, a, torch.tensor([[1, 1, 1, 0]]))
    want = -(math.log(0.9 + 1e-6) + math.log(0.8 + 1e-6) + math.log(0.6 + 1e-6)) / 3
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_reinforce_baseline_arithmetic() -> None:
    # K = 2 copies of B = 2 examples; row j * B + i is copy j of example i
    loss = torch.tensor([0.5, 1.0, 0.25, 2.0])
    length = torch.tensor([0.5, 0.25, 0.75, 0.5])
    sel = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    r = rewards(loss, length, alpha=2.0)
    assert r.tolist() == [-1.5, -1.5, -1.75, -3.0]
    l_rl, baseline = reinforce_loss(r, sel, k=2)
    assert baseline.tolist() == [-1.625, -2.25, -1.625, -2.25]
    assert l_rl.item() == -0.4375  # (0.125*1 + 0.75*2 - 0.125*3 - 0.75*4) / 4
    l_rl.backward()
    assert sel.grad.tolist() == [0.03125, 0.1875, -0.03125, -0.1875]  # advantage / (K*B); rewards detached


def test_length_term_denominators() -> None:
    aux = {"kept": [torch.tensor([3.0, 2.0]), torch.tensor([1.0, 1.0])], "T_input": 4, "n_input": torch.tensor([4, 2])}
    assert length_term(aux, "padded").tolist() == [0.5, 0.375]
    assert length_term(aux, "real").tolist() == [0.5, 0.75]


def test_heuristic_actions_top_m_round_half_up() -> None:
    score = torch.tensor([[0.0, 5.0, 1.0, 3.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    assert heuristic_actions(score, torch.tensor([[0.5, 0.5, 0.5, 0.6, 0.0]]), mask).tolist() == [[1, 1, 0, 0, 0]]
    assert heuristic_actions(score, torch.tensor([[0.5, 0.5, 0.5, 1.0, 0.0]]), mask).tolist() == [[1, 1, 0, 1, 0]]


def test_training_sampling_forces_cls_never_padding_and_guides() -> None:
    model = _model().train()
    ids, mask = ragged_batch(4, 16, seed=5)
    torch.manual_seed(1)
    out = model(ids, mask, mode="soft", track_positions=True)
    assert len(out.aux["kept"]) == 2 and out.aux["select_loss"].shape == (4,)
    assert (out.aux["kept"][0] <= mask.sum(1)).all() and (out.kept_lengths >= 1).all()
    for pos in out.positions:
        assert (pos[:, 0] == 0).all()  # [CLS] always first
    assert torch.equal(out.kept_lengths[:, 0], mask.sum(1))  # layer 0 runs on every token
    assert torch.equal(out.kept_lengths[:, 1], out.aux["kept"][0].long())
    (out.logits.sum() + out.aux["select_loss"].sum()).backward()  # joint stage: gradients pass the drop
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.selector.parameters())
    # a guided row follows the heuristic: score = position, so it keeps [CLS] + the last m - 1 tokens
    sel = model.selector
    sel.guide_scores = [torch.arange(16.0).expand(4, 16), torch.arange(16.0).expand(4, 16)]
    sel.guide_rows = torch.tensor([True, False, False, False])
    out = model(ids, mask, mode="soft", track_positions=True)
    sel.guide_scores = sel.guide_rows = None
    n0 = int(mask[0].sum())
    kept0 = out.positions[1][0][out.positions[1][0] >= 0].tolist()
    m = int(torch.floor(out.aux["probs"][0][0].sum() + 0.5).clamp(min=1))
    assert kept0 == [0] + list(range(n0 - m + 1, n0))


def test_flops_match_tr_bert_formula() -> None:
    model = _model(layers=6)
    dims = Dims.of(model)
    n, l1, l2 = 20.0, 9.0, 4.0
    _, pruned = model_flops(model, torch.tensor([n]), torch.tensor([[n, l1, l1, l2, l2, l2]]))
    lay = lambda x: f_attn(torch.tensor(x), dims) + f_ffn(torch.tensor(x), dims)  # noqa: E731
    want = lay(n) + 2 * lay(l1) + 3 * lay(l2) + f_pred(torch.tensor(n), dims) + f_pred(torch.tensor(l1), dims) + f_head(dims)
    assert pruned.item() == pytest.approx(float(want))


def test_heuristic_scores_shape_and_padding() -> None:
    model = _model()
    ids, mask = ragged_batch(3, 12)
    s = heuristic_scores(model, ids, mask, torch.zeros_like(ids), torch.tensor([0, 1, 0]), [1, 2])
    assert s.shape == (2, 3, 12) and (s[:, mask == 0] == 0).all() and (s >= 0).all()


def test_rank_targets_linear_in_rank() -> None:
    """trans_imdb_rank.py: target = 1 - rank / n over the n real tokens (rank 0 = best score), 0 on padding."""
    score = torch.tensor([[0.3, 0.9, 0.1, 0.5, 7.0], [2.0, 1.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    want = [[0.5, 1.0, 0.25, 0.75, 0.0], [1.0, 0.8, 0.6, 0.4, 0.2]]  # ties: earlier position ranks first
    assert torch.allclose(rank_targets(score, mask), torch.tensor(want))


def test_policy_inputs_are_the_dense_hidden_states() -> None:
    model = _model(layers=4).eval()
    ids, mask = ragged_batch(2, 10)
    h = policy_inputs(model, ids, mask, torch.zeros_like(ids), [1, 2])
    with torch.no_grad():
        dense = model.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for got, layer in zip(h, [1, 2]):
        assert torch.allclose(got[mask > 0], dense[layer][mask > 0], atol=1e-5)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _model(batch_fill="topk")
    save_checkpoint(model, tmp_path / "ckpt", label_names=["a", "b"], max_length=24)
    loaded, cfg = load_checkpoint(tmp_path / "ckpt")
    assert cfg["method"] == "tr-bert" and cfg["selector"]["batch_fill"] == "topk"
    assert loaded.selector.points == [1, 2]
    ids, mask = ragged_batch(4, 20)
    with torch.no_grad():
        a, b = loaded(ids, mask, mode="hard"), model(ids, mask, mode="hard")
    assert torch.equal(a.logits, b.logits) and torch.equal(a.kept_lengths, b.kept_lengths)


# ------------------------------------------------------------------------------------------ smoke training


def test_smoke_training_and_phase_resume(tmp_path: Path) -> None:
    from adapler.methods import train_method
    ds, ft = tiny_finetuned(tmp_path)
    out = train_method("tr-bert", ds, ft, tmp_path / "tr", knob=1.0, epochs=1, batch_size=16, k=2)
    history = json.loads((out / "history.json").read_text())
    assert [r["phase"] for r in history] == ["rl", "joint"]
    assert 0 < history[0]["guided"] < 1 and history[1]["guided"] == 0  # imitation only early in RL
    assert (out / "heuristic.safetensors").exists()
    model, cfg = load_checkpoint(out / "best")
    assert cfg["method"] == "tr-bert" and cfg["phase"] == "joint"
    # simulate a crash right after the RL stage: resume runs the joint stage only
    state = json.loads((out / "run_state.json").read_text())
    state.update(phase="rl", epochs_done=1, history=history[:1], finished=False,
                 best={"epoch": None, "phase": None, "dev_accuracy": -1.0})
    (out / "run_state.json").write_text(json.dumps(state))
    train_method("tr-bert", ds, ft, out, knob=1.0, epochs=1, batch_size=16, k=2, resume=True)
    assert [r["phase"] for r in json.loads((out / "history.json").read_text())] == ["rl", "joint"]
    assert json.loads((out / "run_state.json").read_text())["finished"]


def test_rank_init_phase_fits_policies_to_rank_targets(tmp_path: Path) -> None:
    """init_epochs > 0 adds the rank-initialisation phase; its L1 loss falls and BERT stays fixed."""
    from adapler.methods import train_method
    ds, ft = tiny_finetuned(tmp_path)
    out = train_method("tr-bert", ds, ft, tmp_path / "tr", knob=1.0, batch_size=8, k=2,
                       init_epochs=3, rl_epochs=0, joint_epochs=0, policy_lr=1e-2)
    history = json.loads((out / "history.json").read_text())
    assert [r["phase"] for r in history] == ["init"] * 3
    assert history[-1]["l_init"] < history[0]["l_init"]
    model, _ = load_checkpoint(out / "best")
    teacher, _ = load_checkpoint(ft / "best")
    assert torch.equal(model.bert.encoder.layer[0].output.dense.weight, teacher.bert.encoder.layer[0].output.dense.weight)


def test_explicit_options_override_epochs(monkeypatch, tmp_path: Path) -> None:
    """`--epochs 1 --set joint_epochs=1` must not collide (one keyword, the explicit option wins)."""
    from adapler.methods import train_method
    from adapler.training import tr_bert
    seen = {}
    monkeypatch.setattr(tr_bert, "train_tr_bert", lambda data, init, out, cfg, **kw: seen.setdefault("cfg", cfg))
    train_method("tr-bert", None, tmp_path, tmp_path, epochs=4, joint_epochs=3)
    assert seen["cfg"].rl_epochs == 4 and seen["cfg"].joint_epochs == 3


def test_tr_bert_exports_to_onnx(tmp_path: Path) -> None:
    """TR-BERT's hard mode goes through the shared op, so it exports with data-dependent lengths."""
    import numpy as np

    from adapler.export.onnx import export_graph
    from adapler.plugins.token_drop.ort_session import create_session
    torch.manual_seed(0)
    cfg = tiny_config(layers=4)
    model = PrunedBertClassifier(cfg, 2, PolicySelector(cfg.hidden_size, cfg.num_hidden_layers)).eval()
    path = export_graph(model, tmp_path / "tr.std.onnx", std=True)
    ids, mask = ragged_batch(4, 20, 0)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    logits, kept = create_session(path, library=None).run(None, {"input_ids": ids.numpy(),
                                                                  "attention_mask": mask.numpy()})
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4
    np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
