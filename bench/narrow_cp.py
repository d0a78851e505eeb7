"""Probe: what a narrower Contribution Predictor costs and saves, without retraining the model.

Each CP of a trained AdapLeR checkpoint is distilled into a CP with a smaller hidden layer (``--hidden``):
the teacher's inputs are recorded on training texts (hard mode, one text at a time, so no padding), and the
student is fitted to the teacher's token distribution (KL over each text's alive tokens, the quantity the
threshold eta / n reads). Encoder, eta and head are kept. The result is an ordinary checkpoint: evaluate,
export and profile it with the usual commands to see the accuracy, kept lengths and selection share a
narrower CP gives. It answers "is a 16-wide CP enough?" in minutes; a model trained with
``--set cp_hidden=16`` is the real thing.

    PYTHONPATH=. python bench/narrow_cp.py CKPT --data DATA --out OUT [--hidden 16] [--texts 400] [--steps 600]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer, save_checkpoint
from adapler.data import encode, load_dataset
from adapler.selectors.contribution import ContributionPredictor, ContributionSelector

@torch.no_grad()
def record_cp_inputs(model, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor) -> list[list[Tensor]]:
    """Per layer, the [n, d] hidden states its CP reads, one entry per text (hard mode, unpadded)."""
    seen: list[list[Tensor]] = [[] for _ in model.selector.cps]
    hooks = [cp.register_forward_pre_hook(lambda _m, args, i=i: seen[i].append(args[0][0].clone()))
             for i, cp in enumerate(model.selector.cps)]
    try:
        for row in range(input_ids.shape[0]):
            n = int(attention_mask[row].sum())
            model(input_ids[row:row + 1, :n], attention_mask[row:row + 1, :n], token_type_ids[row:row + 1, :n],
                  mode="hard")
    finally:
        for h in hooks:
            h.remove()
    return seen


def _padded(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    x = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    alive = torch.zeros(x.shape[:2], dtype=torch.bool)
    for i, r in enumerate(rows):
        alive[i, :r.shape[0]] = True
    return x, alive


def _log_dist(z: Tensor, alive: Tensor) -> Tensor:
    return z.masked_fill(~alive, float("-inf")).log_softmax(dim=-1)


def distill_cp(teacher: ContributionPredictor, rows: list[Tensor], hidden: int, steps: int = 600,
               batch: int = 32, lr: float = 1e-3, seed: int = 0) -> ContributionPredictor:
    """A ``hidden``-wide CP fitted to ``teacher``'s distributions over ``rows`` (each [n, d]).

    Starts from the teacher's ``hidden`` units with the largest output weight x input norm, so that the
    fit begins near the teacher."""
    g = torch.Generator().manual_seed(seed)
    d = teacher.fc1.in_features
    student = ContributionPredictor(d, hidden, act="gelu")
    student.act = teacher.act
    with torch.no_grad():
        strength = teacher.fc2.weight[0].abs() * teacher.fc1.weight.norm(dim=1)
        top = strength.argsort(descending=True)[:hidden]
        student.fc1.weight.copy_(teacher.fc1.weight[top])
        student.fc1.bias.copy_(teacher.fc1.bias[top])
        student.fc2.weight.copy_(teacher.fc2.weight[:, top])
    x, alive = _padded(rows)
    with torch.no_grad():
        target = _log_dist(teacher(x), alive)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (min(batch, x.shape[0]),), generator=g)
        t, a = target[idx], alive[idx]
        s = _log_dist(student(x[idx]), a)
        kl = (t.exp() * (t - s)).masked_fill(~a, 0.0).sum(dim=-1).mean()
        opt.zero_grad()
        kl.backward()
        opt.step()
    return student.eval()


@torch.no_grad()
def keep_agreement(teacher: ContributionPredictor, student: ContributionPredictor, rows: list[Tensor],
                   eta: float) -> float:
    """Share of the tokens (over ``rows``) that both CPs keep or both drop at threshold eta / n."""
    same = total = 0
    for r in rows:
        keep = [torch.softmax(cp(r[None])[0], dim=-1) >= eta / r.shape[0] for cp in (teacher, student)]
        same += int((keep[0] == keep[1]).sum())
        total += r.shape[0]
    return same / max(total, 1)


def narrow_checkpoint(ckpt: str | Path, data: str, out: str | Path, hidden: int = 16, texts: int = 400,
                      steps: int = 600, overwrite: bool = False) -> list[float]:
    """Write ``out``: ``ckpt`` with every CP distilled to ``hidden`` units. Returns the per-layer keep agreement."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise SystemExit(f"error: {out} exists; pass --overwrite to replace it or choose another --out")
    if not 1 <= hidden:
        raise SystemExit(f"error: --hidden must be at least 1, got {hidden}")
    model, cfg = load_checkpoint(ckpt)
    if not isinstance(model.selector, ContributionSelector):
        raise SystemExit(f"error: {ckpt} is a {cfg['method']} checkpoint; narrow_cp needs an AdapLeR one")
    tok = load_checkpoint_tokenizer(ckpt)
    ds = load_dataset(data)
    enc = encode(ds.train[:texts], tok, cfg["max_length"])
    seen = record_cp_inputs(model, enc.input_ids, enc.attention_mask, enc.token_type_ids)
    old = model.selector
    new = ContributionSelector(model.config.hidden_size, len(old.cps), cp_hidden=hidden, act=old.act_name)
    agreement = []
    for i, teacher in enumerate(old.cps):
        new.cps[i] = distill_cp(teacher, seen[i], hidden, steps=steps, seed=i)
        agreement.append(keep_agreement(teacher, new.cps[i], seen[i], float(old.eta[i].detach())))
    with torch.no_grad():
        new.eta.copy_(old.eta)
        new.theta.copy_(old.theta)
    new.lam = old.lam
    model.selector = new.eval()
    extra = dict(cfg)  # carried over; save_checkpoint rewrites what the model itself says (selector, ...)
    extra["narrow_cp"] = {"from": str(ckpt), "hidden": hidden, "texts": len(seen[0]), "steps": steps,
                          "keep_agreement": agreement}
    save_checkpoint(model, out, tokenizer=tok, label_names=cfg["label_names"], max_length=cfg["max_length"],
                    extra=extra)
    return agreement


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ckpt", help="a trained AdapLeR checkpoint directory (or a run directory's best/)")
    p.add_argument("--data", required=True, help="dataset name or CSV path (its training split is used)")
    p.add_argument("--out", required=True)
    p.add_argument("--hidden", type=int, default=16, help="the narrow CP's hidden width (default 16)")
    p.add_argument("--texts", type=int, default=400, help="training texts whose CP inputs are recorded")
    p.add_argument("--steps", type=int, default=600, help="Adam steps per layer")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    from adapler.checkpoint import checkpoint_dir
    agreement = narrow_checkpoint(checkpoint_dir(a.ckpt), a.data, a.out, a.hidden, a.texts, a.steps, a.overwrite)
    print(f"wrote {a.out}: CP hidden {a.hidden}; keep agreement with the teacher per layer (training texts): "
          + " ".join(f"{v:.4f}" for v in agreement))


if __name__ == "__main__":
    sys.exit(main())
