"""The torch op and its standard-op form against the NumPy reference (the oracle) and the golden file;
the op's autograd formula against the standard-op form's gradient; the export-time form switch."""
import numpy as np
import pytest
import torch

from adapler.ops import drop_tokens, standard_op_form, token_drop, token_drop_std
from conftest import TOKEN_DROP_CASES, assert_token_drop_outputs, token_drop_inputs
from adapler.plugins.token_drop.reference import token_drop_reference


@pytest.mark.parametrize("impl", [token_drop, token_drop_std])
@pytest.mark.parametrize("case", TOKEN_DROP_CASES)
def test_matches_golden(impl, case):
    assert_token_drop_outputs(impl(*(torch.from_numpy(a) for a in token_drop_inputs(case))), case)


def _case(B, T, D, seed, dtype=torch.float32, thr_shape="B"):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, D, generator=g).to(dtype)
    scores = torch.rand(B, T, generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None] < lengths[:, None]).long()
    thr = torch.rand(B if thr_shape == "B" else 1, generator=g)
    return hidden, scores, mask, thr


@pytest.mark.parametrize("impl", [token_drop, token_drop_std])
@pytest.mark.parametrize("B,T,D", [(1, 1, 4), (1, 9, 8), (5, 17, 8), (8, 64, 16)])
@pytest.mark.parametrize("thr_shape", ["B", "1"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_matches_reference(impl, B, T, D, thr_shape, dtype):
    for seed in range(3):
        args = _case(B, T, D, seed, dtype, thr_shape)
        got = impl(*args)
        want = token_drop_reference(*(a.numpy() for a in args))
        for g_, w in zip(got, want):
            assert g_.shape == w.shape
            np.testing.assert_array_equal(g_.numpy(), w)


@pytest.mark.parametrize("impl", [token_drop, token_drop_std])
def test_edge_cases(impl):
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    scores = torch.tensor([[0.1, 0.9, 0.2, 0.9, 0.9], [0.0, 0.5, float("nan"), 0.5, 0.4]])
    # all but [CLS] dropped -> L = 1, [CLS] kept even with a low score
    h, m, i = impl(hidden, scores, mask, torch.tensor([2.0]))
    assert h.shape == (2, 1, 3) and m.tolist() == [[1], [1]] and i.tolist() == [[0], [0]]
    # nothing dropped (threshold -inf) -> padding is still never kept
    h, m, i = impl(hidden, scores, mask, torch.tensor([-float("inf")]))
    assert i.tolist() == [[0, 1, 2, -1], [0, 1, 3, 4]] and m.sum(1).tolist() == [3, 4]  # NaN score dropped in row 1
    # per-row threshold, >= comparison, stable order, zeros in padding slots
    h, m, i = impl(hidden, scores, mask, torch.tensor([0.9, 0.5]))
    assert i.tolist() == [[0, 1, -1], [0, 1, 3]]
    assert torch.equal(h[0, 2], torch.zeros(3)) and torch.equal(h[1, 2], hidden[1, 3])


def test_fake_kernel_gives_data_dependent_length():
    class M(torch.nn.Module):
        def forward(self, h, s, m, t):
            return token_drop(h, s, m, t)
    args = _case(2, 8, 4, 0)
    ep = torch.export.export(M(), args, dynamic_shapes=None)
    out_shape = [n for n in ep.graph.nodes if n.op == "output"][0].args[0][0].meta["val"].shape
    assert not isinstance(out_shape[1], int)  # an unbacked symbol, not a baked-in length


def test_keep_rule_compares_in_float32_for_half_scores():
    """Spec: threshold is float32, so a float16 score is widened, never the threshold rounded to float16."""
    from adapler.ops import keep_flags
    thr = torch.tensor([0.1])  # float16(0.1) = 0.09998 < 0.1 in float32, == 0.1 once rounded to float16
    scores = torch.tensor([[5.0, 0.1, 0.2]], dtype=torch.float16)
    mask = torch.ones(1, 3, dtype=torch.int64)
    assert keep_flags(scores, mask, thr).tolist() == [[True, False, True]]
    ref = token_drop_reference(np.zeros((1, 3, 2), np.float32), scores.float().numpy(), mask.numpy(), thr.numpy())
    assert ref[2].tolist() == [[0, 2]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_autograd_matches_standard_op_form(dtype):
    """The custom op's backward equals autograd through the standard-op form (gather + where), on kept
    tokens, on dropped ones (zero) and through padding slots (zero, even with a NaN upstream gradient there)."""
    hidden, scores, mask, thr = (torch.from_numpy(a) for a in token_drop_inputs("ragged"))
    hidden = hidden.to(dtype)
    grads = []
    for op in (token_drop, token_drop_std):
        h = hidden.clone().requires_grad_(True)
        out, mask_c, index = op(h, scores, mask, thr)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(0), dtype=dtype)
        upstream = torch.where(mask_c.bool().unsqueeze(-1), upstream, torch.full_like(upstream, float("nan")))
        (grad,) = torch.autograd.grad(out, h, upstream)
        grads.append(grad)
    assert torch.equal(grads[0], grads[1])
    kept = torch.zeros(hidden.shape[:2], dtype=torch.bool)
    for row, idx in enumerate(token_drop(hidden, scores, mask, thr)[2]):
        kept[row, idx[idx >= 0]] = True
    assert (grads[0][~kept] == 0).all() and (grads[0][kept] != 0).all()


def test_autograd_gradcheck():
    hidden, scores, mask, thr = (torch.from_numpy(a) for a in token_drop_inputs("broadcast"))
    h = hidden.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: token_drop(x, scores, mask, thr)[0], (h,))


def test_standard_op_form_switch():
    """drop_tokens runs the custom op, or inside standard_op_form() the standard-op form; the form is
    restored on exit, also after an exception."""
    class M(torch.nn.Module):
        def forward(self, h, s, m, t):
            return drop_tokens(h, s, m, t)

    args = tuple(torch.from_numpy(a) for a in token_drop_inputs("ragged"))

    def targets():
        ep = torch.export.export(M(), args)
        return {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}

    assert "adapler.token_drop.default" in targets()
    with standard_op_form():
        inside = targets()
        assert_token_drop_outputs(drop_tokens(*args), "ragged")
    assert "adapler.token_drop.default" not in inside and "aten.topk.default" in inside
    with pytest.raises(RuntimeError), standard_op_form():
        raise RuntimeError
    assert "adapler.token_drop.default" in targets()
