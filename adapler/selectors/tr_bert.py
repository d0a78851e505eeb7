"""TR-BERT's selector: policy networks at two selection points (docs/method.md §3).

``p_t = sigmoid(W2 GELU(W1 h_t + b1) + b2) * mask_t`` scores the tokens alive before layer 1 and
before layer ``mid = L // 2`` (one point when ``mid == 1``, e.g. a 3-layer encoder: a limitation we
report, not patch). Removal is physical in every mode:

- hard mode (inference, §3.3): keep ``p >= 0.5`` and ``[CLS]``. ``batch_fill="masked"`` (default) is
  the shared ``token_drop`` op (per-row compaction, masked padding), so batched == batch-1 exactly;
  ``batch_fill="topk"`` is the original batching: every row keeps ``max_b(#kept_b)`` tokens, the extra
  slots filled with its next-highest-p tokens, unmasked.
- soft mode while training (§3.2): actions ``a ~ Bernoulli(p)`` ([CLS] 1, padding 0), or the heuristic
  top-m for guided rows (imitation warm-up, §3.5); the batch is compacted with ``drop(a, 0.5)``. The
  per-example ``select_loss`` (negative log-probability) and kept counts go to ``state.aux``.
- soft mode in eval: the threshold rule as a mask (full length, removed keys get the NEG bias), the
  "masked evaluation" of docs/method.md §5; its logits equal hard/masked.

The REINFORCE arithmetic (§3.4) lives here too, as plain functions, so it can be tested exactly.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from transformers import BertConfig

from ..encoder import EncoderState, TokenSelector, _bias_from_mask
from .contribution import ContributionPredictor

BATCH_FILLS = ("masked", "topk")
EPS = 1e-6  # as in the original log(p + 1e-6)


def selection_points(num_layers: int) -> list[int]:
    """Layers preceded by a policy net: 1 and L // 2, deduplicated (L = 3 -> [1]; L = 12 -> [1, 6])."""
    return sorted({p for p in (1, num_layers // 2) if 1 <= p < num_layers})


def select_loss(p: Tensor, a: Tensor, mask: Tensor) -> Tensor:
    """Per example: -sum_t [a log(p + eps) + (1 - a) log(1 - p + eps)] * mask_t / sum_t mask_t (§3.2)."""
    m = mask.float()
    ll = a * torch.log(p + EPS) + (1.0 - a) * torch.log(1.0 - p + EPS)
    return -(ll * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def rewards(loss_sample: Tensor, length_term: Tensor, alpha: float) -> Tensor:
    """R = -loss_sample - alpha * length_term, with length_term = mean over points of kept / T_input."""
    return -loss_sample - alpha * length_term


def reinforce_loss(reward: Tensor, sel_loss: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(L_RL, per-row baseline). Rows are laid out as copy j of example i at j * B + i; the baseline
    b_i is the mean reward of the K copies of example i; L_RL = sum (R - b) * select_loss / (K * B)."""
    r = reward.detach().view(k, -1)
    baseline = r.mean(dim=0, keepdim=True)
    adv = (r - baseline).reshape(-1)
    return (adv * sel_loss).sum() / reward.numel(), baseline.expand_as(r).reshape(-1)


def length_term(aux: dict, denominator: str = "padded") -> Tensor:
    """Per row: mean over selection points of kept / T_input (``padded``) or kept / n_input (``real``)."""
    if denominator not in ("padded", "real"):
        raise ValueError(f"len_denominator must be padded or real, got {denominator!r}")
    n = aux["n_input"].float()
    if not aux["kept"]:
        return torch.zeros_like(n)
    den = n if denominator == "real" else float(aux["T_input"])
    return (torch.stack(aux["kept"]) / den).mean(dim=0)


def heuristic_layers(num_layers: int) -> tuple[int, list[int]]:
    """(back, starts): layer outputs for the residual heuristic (§3.5), generalised to L layers [ours].

    The original (L = 12) uses the output of layer 8 (~3/4 deep) and, per point, the output of the layer
    just before the point (0 and 5). We keep "the layer before each point" and take back =
    round(3L/4) - 1, at least the last point (L = 6 -> back 4, starts [0, 2]; L = 4 -> 2, [0, 1]).
    """
    points = selection_points(num_layers)
    back = max(int(0.75 * num_layers + 0.5) - 1, points[-1] if points else 0)
    return back, [p - 1 for p in points]


def _dense_layers(model, state: EncoderState, layers) -> list[Tensor]:
    """Run ``layers`` on ``state`` without removal (``state.hidden`` updated); the output of each."""
    outs = []
    for layer in layers:
        state.hidden, _ = model.attention(layer, state, False)
        state.hidden = model.feed_forward(layer, state.hidden)
        outs.append(state.hidden)
    return outs


def _descending_ranks(key: Tensor) -> Tensor:
    """Per row, the rank of each entry when sorted by ``key`` descending (0 = largest; ties by position)."""
    order = torch.argsort(key, dim=1, descending=True, stable=True)
    return torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))


def heuristic_scores(model, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                     labels: Tensor, points: list[int] | None = None) -> Tensor:
    """[P, B, T]: |grad_{h_back} CE . (h_back_t - h_start_t)|, 0 on padding (dense fine-tuned model).

    A first-order estimate of the loss change if token t skipped the layers between the point and back.
    """
    L = model.num_layers
    back, starts = heuristic_layers(L)
    if points is not None and [p - 1 for p in points] != starts:
        raise ValueError(f"selection points {points} do not match a {L}-layer encoder")
    mask = attention_mask.long()
    layers = model.layers
    was_training = model.training
    model.eval()
    with torch.no_grad():
        state = EncoderState(model.embed(input_ids, token_type_ids), mask, _bias_from_mask(mask), "dense")
        outs = _dense_layers(model, state, layers[: back + 1])
    with torch.enable_grad():
        hb = outs[back].detach().requires_grad_(True)
        state.hidden = hb
        _dense_layers(model, state, layers[back + 1:])
        loss = torch.nn.functional.cross_entropy(model.classify(state.hidden[:, 0]), labels, reduction="sum")
        (grad,) = torch.autograd.grad(loss, hb)
    model.train(was_training)
    return torch.stack([((grad * (hb.detach() - outs[s])).sum(-1)).abs() * mask.float() for s in starts])


def rank_targets(score: Tensor, mask: Tensor) -> Tensor:
    """Rank-initialisation targets (the original's trans_imdb_rank.py): ``1 - rank / n`` over the n real
    tokens, rank 0 = highest heuristic score; 0 on padding. Ties keep the earlier position first."""
    n = mask.sum(dim=1, keepdim=True).clamp(min=1).float()
    rank = _descending_ranks(score.float().masked_fill(mask == 0, float("-inf")))
    return (1.0 - rank.float() / n) * (mask > 0).float()


def policy_inputs(model, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor,
                  points: list[int]) -> list[Tensor]:
    """Hidden states entering each selection point on the full sequence (no removal), without gradients."""
    mask = attention_mask.long()
    with torch.no_grad():
        state = EncoderState(model.embed(input_ids, token_type_ids), mask, _bias_from_mask(mask), "dense")
        outs = _dense_layers(model, state, model.layers[: max(points)])
    return [outs[p - 1] for p in points]


def heuristic_actions(score: Tensor, p: Tensor, mask: Tensor) -> Tensor:
    """Imitation actions: [CLS] + the top (m - 1) real tokens by ``score``, m = round_half_up(sum p)."""
    m = torch.floor(p.sum(dim=1) + 0.5).clamp(min=1)
    key = score.float().masked_fill(mask == 0, float("-inf"))
    key[:, 0] = float("inf")  # [CLS] first, so it is one of the m
    return ((_descending_ranks(key) < m[:, None]) & (mask > 0)).float()


class PolicySelector(TokenSelector):
    method = "tr-bert"

    def __init__(self, d_model: int, num_layers: int, hidden: int = 32, act: str = "gelu",
                 init_std: float = 0.02, batch_fill: str = "masked"):
        super().__init__()
        if batch_fill not in BATCH_FILLS:
            raise ValueError(f"batch_fill must be one of {', '.join(BATCH_FILLS)}, got {batch_fill!r}")
        self.points = selection_points(num_layers)
        # Same two-layer MLP shape as AdapLeR's CP (d -> 32 -> 1); the sigmoid is applied here.
        self.policies = nn.ModuleList(ContributionPredictor(d_model, hidden, act, init_std) for _ in self.points)
        self.predictor_hidden = hidden  # the policy nets' cost in flops.Dims
        self.act_name = act
        self.batch_fill = batch_fill
        # Set by the trainer for the imitation warm-up: per point, [B, T_input] heuristic scores in original
        # positions, and a [B] bool of rows that follow them instead of sampling.
        self.guide_scores: list[Tensor] | None = None
        self.guide_rows: Tensor | None = None

    @classmethod
    def from_options(cls, config: BertConfig, options: dict) -> "PolicySelector":
        return cls(config.hidden_size, config.num_hidden_layers, hidden=int(options.get("policy_hidden", 32)),
                   act=options.get("policy_act", config.hidden_act), init_std=config.initializer_range,
                   batch_fill=options.get("batch_fill", "masked"))

    def config_dict(self) -> dict:
        return {"policy_hidden": self.predictor_hidden, "policy_act": self.act_name, "batch_fill": self.batch_fill,
                "selection_points": self.points}

    def predictor_layers(self, num_layers: int) -> list[int]:
        return list(self.points)

    def probs(self, point: int, state: EncoderState) -> Tensor:
        """p_t in float32, 0 on padding."""
        return self.probs_of(point, state.hidden, state.mask)

    def probs_of(self, point: int, hidden: Tensor, mask: Tensor) -> Tensor:
        """p_t of the policy at selection point index ``point`` for ``hidden [B, T, d]``, 0 where mask is 0."""
        return torch.sigmoid(self.policies[point](hidden)) * mask.float()

    def start(self, state: EncoderState) -> None:
        if state.mode == "soft" and self.training:
            B, T = state.mask.shape
            state.aux.update(select_loss=state.hidden.new_zeros(B, dtype=torch.float32), kept=[], probs=[],
                             n_input=state.mask.sum(dim=1), T_input=T)
            if self.guide_scores is not None and state.positions is None:
                ar = torch.arange(T, device=state.mask.device).expand(B, T)
                state.positions = torch.where(state.mask > 0, ar, torch.full_like(ar, -1))

    def before_layer(self, layer: int, state: EncoderState) -> None:
        if layer not in self.points:
            return
        # Nothing to select from [CLS] alone. Hard mode needs no check (TokenDrop always keeps [CLS]), and a
        # Python branch on the data-dependent length would stop torch.export.
        if state.mode != "hard" and state.hidden.shape[1] <= 1:
            return
        point = self.points.index(layer)
        p = self.probs(point, state)
        half = p.new_full((1,), 0.5)  # a [1] tensor, as the op contract wants
        if state.mode == "soft" and self.training:
            self._sample(point, p, state)
        elif state.mode == "hard" and self.batch_fill == "topk":
            self._topk_fill(p, state)
        elif state.mode == "hard":
            state.drop(p.detach(), half)
        else:
            keep = ((p >= 0.5) & (state.mask > 0)).long()
            keep[:, 0] = 1
            state.mask, state.bias = keep, _bias_from_mask(keep)

    def _sample(self, point: int, p: Tensor, state: EncoderState) -> None:
        mask = state.mask
        with torch.no_grad():
            a = torch.bernoulli(p.detach())
            if self.guide_scores is not None and self.guide_rows is not None:
                pos = state.positions.clamp(min=0)
                score = torch.gather(self.guide_scores[point].to(p.device), 1, pos)
                guided = heuristic_actions(score, p.detach(), mask)
                a = torch.where(self.guide_rows[:, None].to(p.device), guided, a)
            a[:, 0] = 1.0  # [CLS] is always kept
            a = a * mask.float()  # padding is never an action
        state.aux["select_loss"] = state.aux["select_loss"] + select_loss(p, a, mask)
        state.aux["probs"].append(p.detach())
        state.aux["kept"].append(a.sum(dim=1))
        # Physical, exact removal (extra slots masked); the joint stage back-propagates through the kept
        # tokens with the op's autograd formula.
        state.drop(a, a.new_full((1,), 0.5))

    def _topk_fill(self, p: Tensor, state: EncoderState) -> None:
        """Original batching: each row keeps max_b(#kept_b) tokens by top-k of p, extra slots unmasked."""
        keep = (p >= 0.5) & (state.mask > 0)
        keep[:, 0] = True
        k = int(keep.sum(dim=1).max())
        key = p.detach().masked_fill(state.mask == 0, -1.0)  # real tokens before padding
        key[:, 0] = 2.0  # [CLS] first
        idx = torch.topk(key, k, dim=1).indices
        idx = torch.topk(idx, k, dim=1, largest=False, sorted=True).values  # [ours] back to original order
        state.gather(idx)
