"""The one encoder loop: physical removal, batched == batch-1, masked (soft, lambda=1e20) == hard."""
import pytest
import torch

from conftest import adapler_model, ragged_batch


def kept_sets(positions, row):
    return [sorted(set(p[row].tolist()) - {-1}) for p in positions]


@pytest.mark.parametrize("seed", range(4))
def test_batched_equals_batch_one(seed):
    model = adapler_model(seed)
    ids, mask = ragged_batch(6, 24, seed)
    with torch.no_grad():
        out = model(ids, mask, mode="hard", track_positions=True)
    assert out.kept_lengths[:, -1].float().mean() < mask.sum(1).float().mean()  # something was dropped
    for i in range(ids.shape[0]):
        n = int(mask[i].sum())
        with torch.no_grad():
            one = model(ids[i:i + 1, :n], mask[i:i + 1, :n], mode="hard", track_positions=True)
        assert one.logits.argmax(-1).item() == out.logits[i].argmax(-1).item()
        torch.testing.assert_close(one.logits[0], out.logits[i], atol=1e-5, rtol=1e-5)
        assert torch.equal(one.kept_lengths[0], out.kept_lengths[i])
        assert kept_sets(one.positions, 0) == kept_sets(out.positions, i)


def test_hidden_really_shrinks_and_cls_kept():
    model = adapler_model(1, eta=1.0, sharpness=20.0)
    ids, mask = ragged_batch(4, 32, 1)
    with torch.no_grad():
        out = model(ids, mask, mode="hard", track_positions=True)
    widths = [p.shape[1] for p in out.positions]
    assert widths[-1] < 32 and widths == sorted(widths, reverse=True)  # the tensors themselves got shorter
    for p in out.positions:
        assert (p[:, 0] == 0).all()  # [CLS] stays in slot 0 at every layer
        for row in p:  # kept positions stay in original order, padding at the end
            real = row[row >= 0]
            assert torch.equal(real, real.sort().values) and (row[len(real):] == -1).all()


@pytest.mark.parametrize("seed", range(3))
def test_masked_soft_mode_equals_hard_mode(seed):
    model = adapler_model(seed)
    ids, mask = ragged_batch(6, 20, seed + 10)
    with torch.no_grad():
        hard = model(ids, mask, mode="hard")
        soft = model(ids, mask, mode="soft")  # lambda = 1e20: removal by -10000 bias, no compute saved
    assert torch.equal(hard.logits.argmax(-1), soft.logits.argmax(-1))
    torch.testing.assert_close(hard.logits, soft.logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(hard.kept_lengths, soft.kept_lengths.round().long())


def test_dense_mode_ignores_selector():
    model = adapler_model(0)
    ids, mask = ragged_batch(3, 16, 0)
    with torch.no_grad():
        dense = model(ids, mask, mode="dense")
    assert torch.equal(dense.kept_lengths, mask.sum(1, keepdim=True).expand(-1, 4))


def test_soft_mode_is_differentiable_wrt_eta():
    model = adapler_model(0)
    model.selector.lam = 100.0
    ids, mask = ragged_batch(3, 16, 0)
    out = model(ids, mask, mode="soft")
    out.kept_lengths.sum().backward()
    assert model.selector.eta.grad is not None and model.selector.eta.grad.abs().sum() > 0


def test_bad_mode():
    with pytest.raises(ValueError, match="mode must be"):
        adapler_model(0)(*ragged_batch(1, 4, 0), mode="fast")
