"""Probe: at a trained model's own kept lengths, how much accuracy does a better token choice buy?

A pruned model loses accuracy for two reasons: it keeps too few tokens, or the wrong ones. This probe holds
the first fixed and varies the second. It runs the checkpoint in hard mode, records how many tokens each layer
kept for every text, then replays the encoder with exactly those counts and another rule picking *which* tokens:

- ``cp``: the checkpoint's Contribution Predictors (the replay must give the checkpoint's own predictions; the
  probe stops if it does not, so the loop below is checked against the encoder's);
- ``random``: a uniform choice among the alive tokens (what the count alone gives);
- ``teacher saliency``: the dense ``--teacher`` model's gradient x input saliency at its embedding output, for the
  class it predicts: what the CPs are trained to imitate, with the label replaced by the prediction (a selector
  cannot see the label). The ranking is fixed for all layers, as the CPs' target is;
- ``own saliency``: the same from the checkpoint's own dense pass;
- ``teacher saliency then cp`` (checkpoint's encoder): the teacher's saliency before layer 0, where a CP sees each
  token's embedding alone, and the CPs before every later layer;
- ``layer saliency``: before each layer, the gradient x input of the tokens still alive, through the remaining
  layers of the pruned pass, for the class the encoder's dense pass predicts: a greedy choice no CP can make
  cheaply (one backward pass per layer), an upper reference for a label-free selector.

Each rule runs on the checkpoint's encoder and on the teacher's (not trained with removal), with the same counts,
so the FLOPs of every row equal the checkpoint's (the CP's own cost aside). Accuracies are compared with the
teacher's dense predictions and with the CPs' choice on the same texts (paired 95 % intervals, adapler.stats).

    PYTHONPATH=. python bench/oracle_selection.py CKPT --teacher FT --data DATA [--split test] --json OUT.json
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from adapler.checkpoint import checkpoint_dir, load_checkpoint, load_checkpoint_tokenizer
from adapler.data import batches, encode, load_dataset
from adapler.encoder import EncoderState, TokenSelector
from adapler.errors import OutputError
from adapler.files import ensure_writable, write_json_atomic
from adapler.flops import model_flops
from adapler.ops import contribution_scores
from adapler.rationales import gradient_scores
from adapler.stats import paired_difference

ScoreFn = Callable[[int, EncoderState], Tensor]  # (layer, state) -> [B, T_now] scores of the current slots


class CountSelector(TokenSelector):
    """Before each layer keep exactly ``counts[:, l]`` tokens ([CLS] included), the ones ``score`` ranks highest
    among those alive: the encoder's own hard pass, with the choice replaced and the count held."""

    def __init__(self, counts: Tensor, score: ScoreFn):
        super().__init__()
        self.counts, self.score = counts, score

    def before_layer(self, layer: int, state: EncoderState) -> None:
        s = self.score(layer, state).float().masked_fill(state.mask == 0, float("-inf"))
        s[:, 0] = float("inf")  # [CLS] always stays, and counts include it
        k = self.counts[:, layer].clamp(min=1, max=s.shape[1])
        state.drop(s, s.sort(dim=1, descending=True).values.gather(1, (k - 1)[:, None]).squeeze(1))


class AttentionFirstCountSelector(CountSelector):
    """:class:`CountSelector`, except that the first removal comes after layer 0's attention (which then reads every
    token) and before its feed-forward, so the score there sees the tokens in context."""

    def before_layer(self, layer: int, state: EncoderState) -> None:
        if layer > 0:
            super().before_layer(layer, state)

    def after_attention(self, layer: int, state: EncoderState, probs: Tensor | None) -> None:
        if layer == 0:
            super().before_layer(0, state)


@torch.no_grad()
def replay(model, ids: Tensor, mask: Tensor, types: Tensor, counts: Tensor, score: ScoreFn,
           after_attention: bool = False) -> Tensor:
    """Logits of ``model`` when layer l keeps exactly ``counts[:, l]`` tokens, those ``score`` ranks highest
    (``model``'s own encoder loop, with a :class:`CountSelector` in place of its selector for the call);
    ``after_attention``: layer 0's removal after its attention (:class:`AttentionFirstCountSelector`)."""
    own = model.selector
    model.selector = (AttentionFirstCountSelector if after_attention else CountSelector)(counts, score)
    try:
        return model(ids, mask, types, mode="hard", track_positions=True).logits
    finally:
        model.selector = own


def at_positions(per_token: Tensor) -> ScoreFn:
    """A fixed per-text ranking (indexed by original position) read at the current slots."""
    return lambda _l, st: torch.gather(per_token, 1, st.positions.clamp(min=0))


def layer_saliency(model, target: Tensor) -> ScoreFn:
    def score(layer_idx: int, st: EncoderState) -> Tensor:
        h = st.hidden.detach().requires_grad_(True)
        x = h
        with torch.enable_grad():
            for layer in model.layers[layer_idx:]:
                x, _ = model.attention(layer, EncoderState(x, st.mask, st.bias, "hard"), False)
                x = model.feed_forward(layer, x)
            logit = model.classify(x[:, 0]).gather(1, target[:, None]).sum()
            (grad,) = torch.autograd.grad(logit, h)
        return (grad * h).norm(dim=-1)
    return score


def first_then(first: ScoreFn, rest: ScoreFn) -> ScoreFn:
    """``first`` before layer 0, ``rest`` before every later layer."""
    return lambda layer_idx, st: first(layer_idx, st) if layer_idx == 0 else rest(layer_idx, st)


def cp_scores(model) -> ScoreFn:
    sel = model.selector

    def score(layer_idx: int, st: EncoderState) -> Tensor:
        z = sel.cps[layer_idx](st.hidden)
        return contribution_scores(z, st.mask, sel.eta[layer_idx:layer_idx + 1])[0]
    return score


def add_probe_arguments(ap: argparse.ArgumentParser, target: str, target_help: str) -> None:
    """The options every probe of a trained AdapLeR run against its dense teacher takes."""
    ap.add_argument(target, type=Path, help=target_help)
    ap.add_argument("--teacher", required=True, help="the dense fine-tuned checkpoint it was trained from")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test", choices=("dev", "test"))
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json")


def open_probe(ap: argparse.ArgumentParser, args: argparse.Namespace, ckpt: Path) -> tuple:
    """(model, its config, teacher, tokenizer), both models in eval mode; a one-line error (ap.error) when --json
    exists without --overwrite or ``ckpt`` is not an AdapLeR checkpoint."""
    try:
        ensure_writable(args.json, args.overwrite, "--json")
    except OutputError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)
    model, cfg = load_checkpoint(ckpt)
    if not hasattr(model.selector, "cps"):
        ap.error(f"{ckpt} is not an AdapLeR checkpoint (method {model.method}); pass a trained AdapLeR run")
    teacher = load_checkpoint(checkpoint_dir(args.teacher))[0]
    model.eval()
    teacher.eval()
    return model, cfg, teacher, load_checkpoint_tokenizer(ckpt)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_probe_arguments(ap, "checkpoint", "a trained AdapLeR run (its best/) or checkpoint")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random choice")
    args = ap.parse_args(argv)
    model, cfg, teacher, tok = open_probe(ap, args, checkpoint_dir(args.checkpoint))
    data = load_dataset(args.data)
    examples = getattr(data, args.split)
    enc = encode(examples, tok, cfg["max_length"])
    gen = torch.Generator().manual_seed(args.seed)

    rules = ["cp", "random", "teacher saliency", "own saliency", "layer saliency"]
    preds: dict[str, list[Tensor]] = {"teacher dense": [], "checkpoint hard": []}
    # the CPs read the checkpoint's hidden states, so "cp" runs on the checkpoint's encoder only
    # "... then cp": the teacher's saliency before layer 0 only (where a CP sees no context), the CPs after it
    runs = [("checkpoint", r) for r in rules + ["teacher saliency then cp"]] + [("teacher", r) for r in rules[1:]]
    preds.update({f"{e} / {r}": [] for e, r in runs})
    kept, lengths = [], []
    for b in batches(enc, args.batch_size):
        ids, mask, types = b.input_ids, b.attention_mask, b.token_type_ids
        with torch.no_grad():
            t_pred = teacher(ids, mask, types, mode="dense").logits.argmax(-1)
            own_pred = model(ids, mask, types, mode="dense").logits.argmax(-1)
            out = model(ids, mask, types, mode="hard")
        counts = out.kept_lengths.round().long()
        kept.append(out.kept_lengths)
        lengths.append(mask.sum(dim=1))
        preds["teacher dense"].append(t_pred)
        preds["checkpoint hard"].append(out.logits.argmax(-1))
        # gradient x input at the embeddings for the predicted class: the CP targets' quantity without the label
        t_sal = gradient_scores(teacher, ids, mask, t_pred, token_type_ids=types)
        own_sal = gradient_scores(model, ids, mask, own_pred, token_type_ids=types)
        noise = torch.rand(ids.shape, generator=gen)
        fixed: dict[str, ScoreFn] = {"cp": cp_scores(model), "random": at_positions(noise),
                                     "teacher saliency": at_positions(t_sal), "own saliency": at_positions(own_sal)}
        fixed["teacher saliency then cp"] = first_then(fixed["teacher saliency"], fixed["cp"])
        for enc_name, r in runs:
            encoder, target = (model, own_pred) if enc_name == "checkpoint" else (teacher, t_pred)
            score = fixed[r] if r in fixed else layer_saliency(encoder, target)
            preds[f"{enc_name} / {r}"].append(replay(encoder, ids, mask, types, counts, score).argmax(-1))
    labels = enc.labels.numpy()
    flat = {k: torch.cat(v).numpy() for k, v in preds.items()}
    mismatch = int((flat["checkpoint / cp"] != flat["checkpoint hard"]).sum())
    if mismatch:  # the replay is the encoder's hard pass with the CP's own choice: it must agree
        raise SystemExit(f"the replay of the CP's choice disagrees with the checkpoint on {mismatch} texts: a bug here")
    dense_flops, pruned_flops = model_flops(model, torch.cat(lengths), torch.cat(kept))
    base, own = flat["teacher dense"] == labels, flat["checkpoint / cp"] == labels
    rows = []
    for name, p in flat.items():
        right = p == labels
        d = paired_difference(base, right) if name != "teacher dense" else None
        c = paired_difference(own, right) if name not in ("teacher dense", "checkpoint hard", "checkpoint / cp") else None
        rows.append({"model": name, "accuracy": float(right.mean()),
                     "diff_points": None if d is None else d["diff_points"],
                     "ci95_points": None if d is None else d["ci95_points"],
                     "vs_cp_points": None if c is None else c["diff_points"],
                     "vs_cp_ci95_points": None if c is None else c["ci95_points"]})
    result = {"checkpoint": str(args.checkpoint), "teacher": args.teacher, "data": args.data, "split": args.split,
              "n_examples": len(labels), "flops_speedup": float(dense_flops.sum() / pruned_flops.sum()),
              "mean_kept_lengths": [float(v) for v in torch.cat(kept).float().mean(dim=0)], "rows": rows}
    write_json_atomic(args.json, result)
    print(f"{args.split}: {len(labels)} texts, {result['flops_speedup']:.2f}x FLOPs, kept per layer "
          + " ".join(f"{v:.1f}" for v in result["mean_kept_lengths"]))
    print("| encoder / token choice | accuracy | against the dense teacher | against the CPs' choice |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {100 * r['accuracy']:.2f} % | {_diff(r['diff_points'], r['ci95_points'])} | "
              f"{_diff(r['vs_cp_points'], r['vs_cp_ci95_points'])} |")


def _diff(points: float | None, ci: list[float] | None) -> str:
    """A paired difference with its 95 % interval, or blank."""
    return "" if points is None else f"{points:+.2f} ({ci[0]:+.2f} to {ci[1]:+.2f})"


if __name__ == "__main__":
    main()
