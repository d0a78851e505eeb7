"""Probe: two ways to fix what a deeply pruned AdapLeR model loses before layer 0, tried without retraining.

``oracle_selection.py`` showed that on vader at 3x the accuracy goes mostly with the first CP's choice, made on
context-free embeddings. This probe asks, on a trained run, what the two obvious repairs would give:

- ``layer0_full``: remove nothing before layer 0 and make up the FLOPs later. Layers 1.. keep their checkpoint
  counts times one factor f (rounded up, at least 1), f the largest that still gives the checkpoint's own FLOPs
  speedup; tokens chosen by the checkpoint's CPs, the teacher's saliency, or the greedy layer saliency
  (``oracle_selection``), on the checkpoint's and the teacher's encoders.
- ``scorers``: a first-layer scorer that sees context. Scorers of the CP's shape that read a window of K tokens
  (K = 1 is the CP's own input) are fitted offline to the run's cached saliency targets with the CP loss's
  first-layer KL, then replayed at the checkpoint's counts before layer 0, the checkpoint's CPs after.
  K = 1 against the checkpoint's CP says what imitation alone gives; K > 1 what context adds to it.
- ``attention first``: the first removal moved after layer 0's attention (which then reads every token) and before
  its feed-forward. A scorer of the CP's shape is fitted the same way to that attention's output, in context, and
  replayed at the checkpoint's counts; the FLOPs rise by layer 0's attention on the removed tokens (reported).

    PYTHONPATH=. python bench/first_layer_probe.py RUN --teacher FT --data DATA --json OUT.json [--split test]
"""
from __future__ import annotations

import argparse
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from adapler.bench.oracle_selection import (add_probe_arguments, at_positions, cp_scores, first_then, layer_saliency,
                                            open_probe, replay, ScoreFn)
from adapler.encoder import NEG, EncoderState
from adapler.data import batches, encode, load_dataset
from adapler.files import write_json_atomic
from adapler.flops import Dims, f_attn, model_flops
from adapler.ops import masked_distribution
from adapler.rationales import gradient_scores
from adapler.training.common import SALIENCY_DIR
from adapler.training.example_tables import load_table
from adapler.training.saliency import batch_targets
from adapler.training.train_adapler import cp_kl_loss


def layer0_full_counts(model, lengths: Tensor, counts: Tensor) -> tuple[Tensor, float]:
    """Counts [N, L] with layer 0 keeping every token and layers 1.. ``ceil(f * counts)`` (at least 1), f the
    largest factor (to 1e-6) whose FLOPs speedup is still at least that of ``counts``; returns them and f. f is 0
    where no factor is fast enough (one token per later layer is not): the result is then slower, and says so
    in its ``counts`` block."""
    d, p = model_flops(model, lengths, counts.float())
    goal = float(d.sum() / p.sum())

    def scaled(f: float) -> Tensor:
        c = counts.clone().float()
        c[:, 0] = lengths.float()
        c[:, 1:] = torch.clamp(torch.ceil(f * counts[:, 1:].float()), min=1)
        return torch.minimum(c, lengths[:, None].float()).long()

    lo, hi = 0.0, 1.0
    while hi - lo > 1e-6:
        f = (lo + hi) / 2
        d, p = model_flops(model, lengths, scaled(f).float())
        lo, hi = (f, hi) if float(d.sum() / p.sum()) >= goal else (lo, f)
    return scaled(lo), lo


def layer0_attention(model, hidden: Tensor, mask: Tensor) -> Tensor:
    """Layer 0's attention sub-layer (residual and LayerNorm included) over every real token of ``hidden``."""
    out = []
    for i in range(0, hidden.shape[0], 256):  # in slices: the attention scores of a whole split are gigabytes
        h, m = hidden[i:i + 256], mask[i:i + 256].long()
        out.append(model.attention(model.layers[0], EncoderState(h, m, (1.0 - m.float()) * NEG, "hard"), False)[0])
    return torch.cat(out)


class ReplayRun(NamedTuple):
    """One replayed row: whose encoder, which kept counts, which token scores, and whether layer 0's removal
    comes after its attention."""
    encoder: nn.Module
    counts: Tensor
    score: ScoreFn
    after_attention: bool = False


class WindowScorer(nn.Module):
    """The CP's shape (d*K -> hidden -> 1, GELU) on a window of K tokens: slot t reads x_{t-r} .. x_{t+r},
    zeros past either end and on padding."""

    def __init__(self, d: int, window: int, hidden: int = 32):
        super().__init__()
        self.window = window
        self.fc1, self.fc2 = nn.Linear(d * window, hidden), nn.Linear(hidden, 1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        r, T = self.window // 2, x.shape[1]
        xp = F.pad(x * mask[..., None].to(x.dtype), (0, 0, r, r))
        win = torch.cat([xp[:, k:k + T] for k in range(self.window)], dim=-1)
        return self.fc2(F.gelu(self.fc1(win))).squeeze(-1)


def fit_scorer(scorer: WindowScorer, emb: Tensor, mask: Tensor, target: Tensor, steps: int, seed: int,
               batch: int = 64, lr: float = 1e-3) -> float:
    """Fit to the first-layer term of the trainer's CP loss (``cp_kl_loss`` with one layer: KL(normalised
    saliency || masked softmax of the scores)). Returns the mean KL over the last 100 steps."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(scorer.parameters(), lr=lr, weight_decay=0.01)
    no_eta = torch.zeros(1)  # one layer: the loss's removal step after it is unused
    tail = []
    for _ in range(steps):
        i = torch.randint(0, emb.shape[0], (batch,), generator=g)
        p = masked_distribution(scorer(emb[i], mask[i]), mask[i])
        kl = cp_kl_loss([p], target[i], mask[i], no_eta, None, 1.0, stopgrad=True)
        opt.zero_grad()
        kl.backward()
        opt.step()
        tail = (tail + [kl.item()])[-100:]
    return sum(tail) / len(tail)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_probe_arguments(ap, "run", "a trained AdapLeR run directory (its best/ and saliency/ are read)")
    ap.add_argument("--windows", default="1,3,5", help="scorer windows (odd token counts)")
    ap.add_argument("--steps", type=int, default=1500, help="fitting steps per scorer")
    args = ap.parse_args(argv)
    try:
        windows = [int(w) for w in args.windows.split(",")]
    except ValueError:
        ap.error(f"--windows takes odd whole numbers separated by commas, e.g. 1,3,5; got {args.windows!r}")
    if any(w < 1 or w % 2 == 0 for w in windows):
        ap.error(f"--windows takes odd whole numbers >= 1, got {args.windows!r}")
    tables = sorted((args.run / SALIENCY_DIR).glob("saliency-*.safetensors"))
    if not (args.run / "best").is_dir() or len(tables) != 1:
        ap.error(f"{args.run} needs best/ and one saliency table in {SALIENCY_DIR}/; pass the run directory `train` wrote")
    torch.manual_seed(0)  # before loading, as when §1h was measured: the scorers' initial weights follow from it
    model, cfg, teacher, tok = open_probe(ap, args, args.run / "best")
    data = load_dataset(args.data)
    enc = encode(getattr(data, args.split), tok, cfg["max_length"])

    # the checkpoint's own counts, and the layer-0-full counts at the same FLOPs
    counts, lengths = [], []
    with torch.no_grad():
        for b in batches(enc, args.batch_size):
            counts.append(model(b.input_ids, b.attention_mask, b.token_type_ids, mode="hard").kept_lengths.round().long())
            lengths.append(b.attention_mask.sum(dim=1))
    own, n = torch.cat(counts), torch.cat(lengths)
    full, factor = layer0_full_counts(model, n, own)

    # first-layer scorers fitted on the training split's embeddings (the checkpoint's) and cached targets
    train = encode(data.train, tok, cfg["max_length"])
    sal = load_table(tables[0])
    target = batch_targets(sal, train.ids, train.input_ids.shape[1])
    with torch.no_grad():
        emb = model.embed(train.input_ids, train.token_type_ids)
    mask = train.attention_mask.float()
    scorers, fit_kl = {}, {}
    for w in windows:
        scorers[w] = WindowScorer(emb.shape[-1], w)
        fit_kl[w] = fit_scorer(scorers[w], emb, mask, target, args.steps, seed=w)
        scorers[w].eval()

    # the same, on layer 0's attention output over every token (the attention-first removal's input)
    with torch.no_grad():
        attended = layer0_attention(model, emb, train.attention_mask)
    scorers["attention first"] = WindowScorer(emb.shape[-1], 1)
    fit_kl["attention first"] = fit_scorer(scorers["attention first"], attended, mask, target, args.steps, seed=1)
    scorers["attention first"].eval()
    del emb, attended

    def fitted(w):
        return lambda _l, st: masked_distribution(scorers[w](st.hidden, st.mask.float()), st.mask.float())

    preds: dict[str, list[Tensor]] = {}
    off = 0
    for b in batches(enc, args.batch_size):
        ids, m, types = b.input_ids, b.attention_mask, b.token_type_ids
        rows = slice(off, off + ids.shape[0])
        off += ids.shape[0]
        with torch.no_grad():
            t_pred = teacher(ids, m, types, mode="dense").logits.argmax(-1)
            own_pred = model(ids, m, types, mode="dense").logits.argmax(-1)
        t_sal = at_positions(gradient_scores(teacher, ids, m, t_pred, token_type_ids=types))
        runs: dict[str, ReplayRun | None] = {
            "teacher dense": None,
            "own counts / checkpoint / cp": ReplayRun(model, own, cp_scores(model)),
            "layer 0 full / checkpoint / cp": ReplayRun(model, full, cp_scores(model)),
            "layer 0 full / checkpoint / teacher saliency": ReplayRun(model, full, t_sal),
            "layer 0 full / checkpoint / layer saliency": ReplayRun(model, full, layer_saliency(model, own_pred)),
            "layer 0 full / teacher / teacher saliency": ReplayRun(teacher, full, t_sal),
            "layer 0 full / teacher / layer saliency": ReplayRun(teacher, full, layer_saliency(teacher, t_pred))}
        for w in windows:
            runs[f"own counts / checkpoint / window-{w} scorer then cp"] = ReplayRun(
                model, own, first_then(fitted(w), cp_scores(model)))
        for name, score in (("teacher saliency", t_sal), ("attention-first scorer", fitted("attention first"))):
            runs[f"own counts, layer 0 removal after its attention / checkpoint / {name} then cp"] = ReplayRun(
                model, own, first_then(score, cp_scores(model)), after_attention=True)
        for name, run in runs.items():
            if run is None:
                p = t_pred
            else:
                with torch.no_grad():
                    p = replay(run.encoder, ids, m, types, run.counts[rows], run.score,
                               after_attention=run.after_attention).argmax(-1)
            preds.setdefault(name, []).append(p)
    labels = enc.labels
    acc = {k: float((torch.cat(v) == labels).float().mean()) for k, v in preds.items()}
    speed = {}
    for name, c in (("own counts", own), ("layer 0 full", full)):
        d, p = model_flops(model, n, c.float())
        speed[name] = {"flops_speedup": float(d.sum() / p.sum()),
                       "mean_kept_lengths": [float(v) for v in c.float().mean(dim=0)]}
        if name == "own counts":  # layer 0's attention on every token instead of on the kept ones
            dims = Dims.of(model)
            p = p + f_attn(n.double(), dims) - f_attn(c[:, 0].double(), dims)
            speed["own counts, layer 0 removal after its attention"] = {
                "flops_speedup": float(d.sum() / p.sum()), "mean_kept_lengths": speed[name]["mean_kept_lengths"]}
    result = {"run": str(args.run), "teacher": args.teacher, "data": args.data, "split": args.split,
              "n_examples": len(labels), "counts": speed, "layer0_full_factor": factor,
              "scorer_fit_kl": {str(k): v for k, v in fit_kl.items()}, "steps": args.steps, "accuracy": acc}
    write_json_atomic(args.json, result)
    for name, s in speed.items():
        print(f"{name}: {s['flops_speedup']:.2f}x, kept " + " ".join(f"{v:.1f}" for v in s["mean_kept_lengths"]))
    print("| counts / encoder / token choice | accuracy |\n|---|---|")
    for name, a in acc.items():
        print(f"| {name} | {100 * a:.2f} % |")


if __name__ == "__main__":
    main()
