"""The first CP reading a window of neighbours (``first_cp_window``): its semantics, train/inference agreement,
and every deploy form (packed torch, model.onnx, the standard-op graph, model.cd.onnx, the fused ORT graphs)
giving torch's kept lengths and logits."""
import numpy as np
import pytest
import torch

from adapler.errors import UsageError
from adapler.flops import Dims, f_pred, model_flops
from adapler.selectors.contribution import ContributionPredictor, neighbour_window
from conftest import adapler_model, ragged_batch

WINDOW = 3


def test_neighbour_window_by_hand():
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])[..., None]  # [1, 4, 1]
    assert neighbour_window(x, 3)[0].tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 0]]
    assert neighbour_window(x, 5)[0, 0].tolist() == [0, 0, 1, 2, 3]
    assert torch.equal(neighbour_window(x, 1), x)


def test_window_must_be_odd_and_needs_the_mask():
    with pytest.raises(ValueError, match="odd number"):
        ContributionPredictor(8, 4, window=2)
    with pytest.raises(ValueError, match="needs the token mask"):
        ContributionPredictor(8, 4, window=3)(torch.zeros(1, 5, 8))


def test_first_cp_reads_its_neighbours_and_not_the_padding():
    model = adapler_model(0, eta=0.9, first_cp_window=WINDOW)
    cp0, cp1 = model.selector.cps[0], model.selector.cps[1]
    assert cp0.window == WINDOW and cp1.window == 1 and cp0.fc1.in_features == WINDOW * cp1.fc1.in_features
    x = torch.randn(1, 6, cp1.fc1.in_features)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    y = x.clone()
    y[0, 3] += 1.0  # token 3 changes: its neighbour 2 sees it, token 0 does not
    z_x, z_y = cp0(x, mask), cp0(y, mask)
    assert not torch.isclose(z_x[0, 2], z_y[0, 2]) and torch.isclose(z_x[0, 0], z_y[0, 0])
    junk = x.clone()
    junk[0, 4:] = 100.0  # what sits in padding slots does not reach the last real token
    assert torch.allclose(cp0(junk, mask)[0, :4], z_x[0, :4])


@pytest.mark.parametrize("seed", [0, 1])
def test_soft_mode_at_the_hard_threshold_keeps_what_hard_mode_keeps(seed):
    model = adapler_model(seed, eta=0.9, first_cp_window=WINDOW)
    ids, mask = ragged_batch(6, 24, seed)
    with torch.no_grad():
        hard = model(ids, mask, mode="hard")
        soft = model(ids, mask, mode="soft")  # lam = 1e20 outside training: removal is exact
    assert hard.kept_lengths[:, 0].sum() < mask.sum()  # the windowed CP really drops tokens before layer 0
    torch.testing.assert_close(soft.kept_lengths, hard.kept_lengths.float())
    assert (soft.logits - hard.logits).abs().max() <= 1e-4


def test_packed_path_matches_padded():
    from adapler.packed import packed_forward
    model = adapler_model(1, eta=0.9, first_cp_window=WINDOW)
    ids, mask = ragged_batch(5, 30, 1)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    got = packed_forward(model, ids, mask)
    assert torch.equal(got.kept_lengths, ref.kept_lengths)
    assert (got.logits - ref.logits).abs().max() <= 1e-4


def test_flops_count_the_wider_first_cp():
    narrow, wide = adapler_model(0, first_cp_window=1), adapler_model(0, first_cp_window=WINDOW)
    n = torch.tensor([20.0, 30.0])
    kept = torch.tensor([[10.0, 8.0, 6.0, 4.0], [15.0, 9.0, 9.0, 3.0]])
    extra = model_flops(wide, n, kept)[1] - model_flops(narrow, n, kept)[1]
    torch.testing.assert_close(extra, (WINDOW - 1) * f_pred(n.double(), Dims.of(wide)))


def test_checkpoint_round_trip_keeps_the_window(tmp_path, tiny_bert_dir):
    from transformers import AutoTokenizer

    from adapler.checkpoint import load_checkpoint, save_checkpoint
    model = adapler_model(2, eta=0.9, first_cp_window=WINDOW)
    path = save_checkpoint(model, tmp_path / "ckpt", tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
                           label_names=["a", "b", "c"], max_length=32)
    loaded, cfg = load_checkpoint(path)
    assert cfg["selector"]["first_cp_window"] == WINDOW and loaded.selector.cps[0].window == WINDOW
    ids, mask = ragged_batch(4, 20, 2)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask).logits, model(ids, mask).logits)


def test_config_refuses_an_even_window():
    from adapler.training.train_adapler import AdapLeRConfig
    with pytest.raises(UsageError, match=r"first_cp_window must be an odd whole number .* got 2"):
        AdapLeRConfig(first_cp_window=2)
    with pytest.raises(UsageError, match="first_cp_window"):
        AdapLeRConfig(first_cp_window=1.5)


# --------------------------------------------------------------------------------------- deploy forms

@pytest.fixture(scope="module")
def windowed():
    return adapler_model(3, eta=0.9, first_cp_window=WINDOW)


def _check(logits, kept, model, ids, mask):
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    assert ref.kept_lengths[:, 0].sum() < mask.sum()
    np.testing.assert_array_equal(kept, ref.kept_lengths.numpy())
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4


@pytest.mark.parametrize("form", ["model.onnx", "model.std.onnx", "model.cd.onnx"])
def test_exported_graphs_match_torch(windowed, tmp_path, ort_library, form):
    from adapler.export.onnx import export_graph
    from adapler.plugins.token_drop.ort_session import create_session
    path = export_graph(windowed, tmp_path / form, std=form == "model.std.onnx",
                        contribution_drop=form == "model.cd.onnx")
    sess = create_session(path, library=None if form == "model.std.onnx" else ort_library, threads=1)
    for batch, length, seed in [(1, 12, 0), (6, 30, 1)]:
        ids, mask = ragged_batch(batch, length, seed)
        _check(*sess.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}), windowed, ids, mask)


@pytest.mark.parametrize("form", ["model.ort.onnx", "model.ort.packed.onnx"])
def test_fused_ort_graphs_match_torch(windowed, tmp_path, ort_library, form):
    from adapler.export.ort_graph import write_ort_graph
    from adapler.export.packed_graph import write_packed_graph
    from adapler.plugins.token_drop.ort_session import create_session
    write = write_ort_graph if form == "model.ort.onnx" else write_packed_graph
    sess = create_session(write(windowed, tmp_path / form), threads=1)
    for batch, length, seed in [(1, 12, 0), (6, 30, 1), (8, 40, 2)]:
        ids, mask = ragged_batch(batch, length, seed)
        _check(*sess.run(["logits", "kept_lengths"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}),
               windowed, ids, mask)
