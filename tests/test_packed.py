"""Packed (padding-free) execution: torch path, PackedContributionDrop (reference, ORT kernel), the
packed ORT graph and the bench's padding fraction, each against the padded form."""
import numpy as np
import pytest
import torch

from adapler.encoder import PrunedBertClassifier
from adapler.packed import (UnsupportedForPacked, pack, packed_forward, padding_fraction, padding_index)
from conftest import ragged_batch, tiny_config
from test_encoder import adapler_model, kept_sets


def dense_model(seed=0, pooler=True):
    torch.manual_seed(seed)
    return PrunedBertClassifier(tiny_config(layers=3), 3, pooler=pooler).eval()


# ------------------------------------------------------------------------------------------------ torch

def test_pack_and_padding_index_by_hand():
    hidden = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    x = pack(hidden, mask)
    assert x.hidden.squeeze(1).tolist() == [0, 1, 2, 4, 5]
    assert x.offsets.tolist() == [0, 3, 5] and x.positions.tolist() == [0, 1, 2, 0, 1]
    pad_index, lengths, unpad_index = padding_index(x.offsets)
    assert pad_index.tolist() == [[0, 1, 2], [3, 4, 3]]  # padding slot -> the row's first token
    assert lengths.tolist() == [3, 2] and unpad_index.tolist() == [0, 1, 2, 3, 4]
    padded = x.hidden[pad_index]
    assert torch.equal(padded.reshape(6, 1)[unpad_index], x.hidden)


@pytest.mark.parametrize("batch,length,seed", [(1, 12, 0), (5, 30, 1), (8, 40, 2)])
def test_packed_adapler_matches_padded(batch, length, seed):
    model = adapler_model(seed, eta=0.9)
    ids, mask = ragged_batch(batch, length, seed)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard", track_positions=True)
    got = packed_forward(model, ids, mask, track_positions=True)
    assert ref.kept_lengths[:, -1].sum() < mask.sum()  # the model really drops tokens
    assert torch.equal(got.kept_lengths, ref.kept_lengths)
    for row in range(batch):
        assert kept_sets(got.positions, row) == kept_sets(ref.positions, row)
    assert (got.logits - ref.logits).abs().max() <= 1e-4


@pytest.mark.parametrize("pooler", [True, False])
def test_packed_dense_matches_padded(pooler):
    model = dense_model(pooler=pooler)
    ids, mask = ragged_batch(6, 20, 3)
    with torch.no_grad():
        ref = model(ids, mask, mode="dense")
    got = packed_forward(model, ids, mask)
    assert torch.equal(got.kept_lengths, ref.kept_lengths)
    assert (got.logits - ref.logits).abs().max() <= 1e-4


def test_packed_batch_equals_rows_one_by_one():
    model = adapler_model(4, eta=0.9)
    ids, mask = ragged_batch(4, 24, 4)
    batched = packed_forward(model, ids, mask)
    for row in range(4):
        n = int(mask[row].sum())
        one = packed_forward(model, ids[row:row + 1, :n], mask[row:row + 1, :n])
        assert torch.equal(one.kept_lengths[0], batched.kept_lengths[row])
        assert (one.logits[0] - batched.logits[row]).abs().max() <= 1e-5


def test_methods_without_packed_path_are_refused():
    from adapler.selectors import build_selector
    cfg = tiny_config(layers=2)
    model = PrunedBertClassifier(cfg, 2, build_selector("power-bert", cfg, {"retention": [8, 4]}))
    ids, mask = ragged_batch(2, 10, 0)
    with pytest.raises(UnsupportedForPacked, match="'power-bert' has no packed path.*padded"):
        packed_forward(model, ids, mask)


def test_padding_fraction_by_hand():
    kept = torch.tensor([[4, 2], [2, 2], [2, 1]])
    # layer 0: 8 real of 3 * 4 slots; layer 1: 5 real of 3 * 2
    np.testing.assert_allclose(padding_fraction(kept).numpy(), [1 - 8 / 12, 1 - 5 / 6], rtol=1e-6)
