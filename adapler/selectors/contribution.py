"""AdapLeR's token selector: one Contribution Predictor (CP) per layer and a learned threshold.

Spec: docs/method.md §1.3-1.6 and §1.14. Before layer l, CP_l scores the alive tokens (a distribution over
them, [CLS] included); a token is removed when its score is below delta = eta_l / n_alive. In soft
mode (training, masked evaluation) removal is the soft function S added to the attention bias;
in hard mode the tokens are physically dropped with ``token_drop``, or, inside ``contribution_drop_form()``
(the TensorRT export ``model.cd.onnx``), with ``contribution_drop``: the same selection as one op.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import BertConfig
from transformers.activations import ACT2FN

from ..encoder import NEG, EncoderState, TokenSelector
# masked_distribution lives with the ops (contribution_drop's kernel uses it too); explain.py imports it from here
from ..ops import contribution_drop, contribution_scores, in_contribution_drop_form, masked_distribution

BETA = 0.1  # hard-coded in the original calc_soft_extractV2
ETA_INIT = 0.25
ETA_MIN, ETA_MAX = 0.01, 1.0
HARD_LAMBDA = 1e20  # lambda used for evaluation / checkpoint selection


class ContributionPredictor(nn.Module):
    """z_t = W2 act(W1 x_t + b1) + b2; W1: d -> hidden, W2: hidden -> 1."""

    def __init__(self, d_model: int, hidden: int = 32, act: str = "gelu", init_std: float = 0.02):
        super().__init__()
        self.fc1 = nn.Linear(d_model, hidden)
        self.act = ACT2FN[act]
        self.fc2 = nn.Linear(hidden, 1)
        for lin in (self.fc1, self.fc2):  # Keras truncated-normal kernels, zero biases
            nn.init.trunc_normal_(lin.weight, std=init_std, a=-2 * init_std, b=2 * init_std)
            nn.init.zeros_(lin.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x))).squeeze(-1).float()


def soft_removal(x: Tensor, delta: Tensor, lam: float) -> Tensor:
    """S(x): ~0 above the threshold delta, falling with slope lam/delta below it; in [-1e4, 0].

    Computed in float32: at lam = 1e20 the slope overflows fp16.
    """
    x, delta = x.float(), delta.float()
    first = (lam / (delta + 1e-30)) * (x - delta) - BETA / lam
    second = (BETA / lam) * (x - 1.0) / (1.0 - delta + 1e-7)
    s = torch.minimum(torch.minimum(first, second), torch.zeros_like(x))
    return s.clamp(min=NEG)


class ContributionSelector(TokenSelector):
    method = "adapler"

    def __init__(self, d_model: int, num_layers: int, cp_hidden: int = 32, act: str = "gelu",
                 init_std: float = 0.02, eta_init: float = ETA_INIT):
        super().__init__()
        self.cps = nn.ModuleList(ContributionPredictor(d_model, cp_hidden, act, init_std) for _ in range(num_layers))
        # eta and theta are trained by their own optimiser (gradient routing in adapler/training/train_adapler.py).
        self.eta = nn.Parameter(torch.full((num_layers,), float(eta_init)))
        self.theta = nn.Parameter(torch.ones(max(num_layers - 1, 1)))
        self.cp_hidden = cp_hidden
        self.predictor_hidden = cp_hidden  # the CPs' cost in flops.Dims
        self.act_name = act
        self.lam = HARD_LAMBDA  # set by the trainer's schedule during training

    @classmethod
    def from_options(cls, config: BertConfig, options: dict) -> "ContributionSelector":
        eta = options.get("eta")
        if eta is not None and len(eta) != config.num_hidden_layers:
            raise ValueError(f"eta has {len(eta)} values but the backbone has {config.num_hidden_layers} layers")
        return cls(config.hidden_size, config.num_hidden_layers, cp_hidden=options.get("cp_hidden", 32),
                   act=options.get("cp_act", config.hidden_act), init_std=config.initializer_range)

    def predictor_layers(self, num_layers: int) -> list[int]:
        return list(range(num_layers))

    def config_dict(self) -> dict:
        return {"cp_hidden": self.cp_hidden, "cp_act": self.act_name,
                "eta": [float(v) for v in self.eta.detach().cpu()]}

    def start(self, state: EncoderState) -> None:
        if state.mode == "soft":
            a = state.mask.float()
            a = torch.cat([torch.zeros_like(a[:, :1]), a[:, 1:]], dim=1)  # [CLS] is not a removal target
            state.aux["a"] = a
            state.alive = a + _cls_one(a)
            state.aux["cp_outputs"] = []
            # theta_PR: constant 1, but its gradient trains theta (faithful quirk, docs/method.md §1.10).
            state.aux["theta_pr"] = torch.ones_like(self.theta).requires_grad_(torch.is_grad_enabled())

    def before_layer(self, layer: int, state: EncoderState) -> None:
        if state.mode == "hard":
            self._hard_drop(layer, state)
            return
        z = self.cps[layer](state.hidden)
        a = state.aux["a"]
        m = a + _cls_one(a)
        scores = masked_distribution(z, m)
        if layer > 0:
            scale = state.aux["theta_pr"][layer - 1].clamp(min=0.001)
            cls = scores[:, :1] * scale
            scores = torch.cat([cls, scores[:, 1:]], dim=1)
            scores = scores / (scores.sum(dim=-1, keepdim=True) + 1e-15)
        state.aux["cp_outputs"].append(scores)
        delta = self.eta[layer] / (a.sum(dim=1, keepdim=True) + 1.0)
        e = soft_removal(scores, delta, self.lam) * a
        a = torch.where(a > 1e-6, a * torch.exp(e), a)
        state.aux["a"] = a
        state.alive = a + _cls_one(a)
        state.bias = (state.bias + e).clamp(min=NEG)

    def _hard_drop(self, layer: int, state: EncoderState) -> None:
        """Physically drop the tokens under eta / n: CP, masked softmax and threshold as torch ops then
        token_drop, or, inside ``contribution_drop_form()``, all of it but the CP's hidden layer as one
        contribution_drop (one ONNX node per layer in model.cd.onnx). Both give the same kept tokens."""
        cp, eta = self.cps[layer], self.eta[layer:layer + 1]
        if in_contribution_drop_form():
            cp_hidden = cp.act(cp.fc1(state.hidden))
            # w2 and eta stay float32 in a half model: the op's contract (its plugin reads them as float32)
            w2 = cp.fc2.weight[0].float()
            state.take_compacted(*contribution_drop(state.hidden, cp_hidden, w2, state.mask, eta.float()))
            return
        state.drop(*contribution_scores(cp(state.hidden), state.mask, eta))

    @torch.no_grad()
    def clip_eta(self, hi: float = ETA_MAX) -> None:
        self.eta.clamp_(ETA_MIN, hi)


def _cls_one(a: Tensor) -> Tensor:
    one = torch.zeros_like(a)
    one[:, 0] = 1.0
    return one
