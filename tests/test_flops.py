"""The analytic FLOPs counter against torch's FlopCounterMode on the model's real shapes."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from adapler.encoder import PrunedBertClassifier
from adapler.flops import Dims, dense_flops, flops_speedup, model_flops
from conftest import ragged_batch, tiny_config
from conftest import adapler_model


def _math_sdpa(q, k, v, attn_mask=None, **_):
    # FlopCounterMode has no rule for the fused CPU SDPA kernel; count the same math as matmuls.
    return ((q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5 + attn_mask).softmax(-1) @ v


def measured(model, ids, mask, mode):
    import torch.nn.functional as F
    real = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _math_sdpa
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            out = model(ids, mask, mode=mode)
    finally:
        F.scaled_dot_product_attention = real
    return fc.get_total_flops(), out


@pytest.mark.parametrize("n", [8, 24, 64])
def test_dense_matches_flop_counter(n):
    model = PrunedBertClassifier(tiny_config(layers=3), 2).eval()
    ids, mask = ragged_batch(1, n, 0)
    counted, _ = measured(model, ids, mask, "dense")
    analytic = dense_flops(torch.tensor([n]), Dims.of(model)).item()
    assert abs(analytic - counted) / counted < 0.02


@pytest.mark.parametrize("seed", range(3))
def test_pruned_matches_flop_counter_including_predictors(seed):
    model = adapler_model(seed)
    ids, mask = ragged_batch(1, 40, seed)
    counted, out = measured(model, ids, mask, "hard")
    assert out.kept_lengths[0, -1] < 40  # tokens were dropped
    _, pruned = model_flops(model, mask.sum(1), out.kept_lengths)
    assert abs(pruned.item() - counted) / counted < 0.02


def test_minilm_coefficients_from_spec():
    # docs/method.md §1.15 table: all-MiniLM-L6-v2 F_dense(64) = 1.40 G, F_dense(512) = 13.3 G (C = 2)
    dims = Dims(d=384, f=1536, L=6, C=2)
    assert dense_flops(torch.tensor([64]), dims).item() == pytest.approx(1.40e9, rel=0.01)
    assert dense_flops(torch.tensor([512]), dims).item() == pytest.approx(13.3e9, rel=0.01)


def test_speedup_is_ratio_of_totals():
    dims = Dims(d=384, f=1536, L=6, C=2)
    n = torch.tensor([10, 100])
    kept = torch.tensor([[10] * 6, [10] * 6])
    s = flops_speedup(n, kept, dims, predictor_layers=[])
    dense = dense_flops(n, dims).sum()
    assert s == pytest.approx(float(dense / dense_flops(torch.tensor([10, 10]), dims).sum()))
