"""bench/cp_loss_share.py: the gradients it compares are the ones AdapLeR's losses send to the CPs."""
import torch
from conftest import adapler_model, ragged_batch

from adapler.bench.cp_loss_share import grad_norms
from adapler.data import Encoded


def _batch(n: int = 8, length: int = 16) -> tuple[Encoded, dict]:
    ids, mask = ragged_batch(n, length)
    enc = Encoded(ids, mask, torch.zeros_like(ids), torch.arange(n) % 3, [f"t{i}" for i in range(n)], 0)
    g = torch.Generator().manual_seed(1)
    sal = {f"t{i}": torch.rand(int(mask[i].sum()), generator=g) for i in range(n)}
    return enc, sal


def test_a_steep_soft_removal_leaves_the_cps_to_the_saliency_loss_alone():
    # near-hard removal (large lambda) passes no task gradient to the CPs; the KL's stays: the fact §1g reads
    enc, sal = _batch()
    gentle = grad_norms(adapler_model(eta=0.9), enc, sal, lam=10.0)
    steep = grad_norms(adapler_model(eta=0.9), enc, sal, lam=1e12)
    assert gentle["cp_task"] > 0 and gentle["cp_kl"] > 0 and gentle["batches"] == 1
    assert steep["cp_task"] < 1e-6 * gentle["cp_task"] and steep["cp_kl"] > 0
    assert steep["encoder_task"] > 0  # the task still trains the encoder


def test_distillation_changes_the_task_gradient_but_not_the_saliency_one():
    enc, sal = _batch()
    teacher = {i: torch.tensor([4.0, -2.0, 0.0]) for i in enc.ids}
    plain = grad_norms(adapler_model(eta=0.9), enc, sal, lam=100.0)
    mixed = grad_norms(adapler_model(eta=0.9), enc, sal, lam=100.0, teacher=teacher, distill=0.5)
    assert mixed["cp_kl"] == plain["cp_kl"]
    assert abs(mixed["encoder_task"] - plain["encoder_task"]) > 1e-6
