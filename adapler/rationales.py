"""Are the model's token rankings good rationales? Faithfulness and agreement with human word judgments.

Rankings of the (non-special) tokens of each text, all of the same checkpoint (docs/results.md §7):

- ``own``: the model's own selection (``Explanation.own_ranking``: survival depth, then the score of the
  last selector that scored the token; AdapLeR: its Contribution Predictors; TR-BERT: its policy);
- ``own-first``: the first scoring layer's scores alone (AdapLeR: CP_0 on the embeddings);
- ``attention``: attention received, PoWER-BERT's significance sum_i A[i, k] - A[k, k] (head mean),
  averaged over the layers of a forward with nothing dropped;
- ``grad-x-input``: ||d logit_y / d e_t * e_t||_2 at the embedding output e (as the CP targets,
  docs/method.md §1.8, but for the predicted class y);
- ``integrated-gradients``: ||(e_t - e0_t) * mean_a d logit_y / d e(a)_t||_2 along the straight path from
  e0 (every non-special token replaced by [PAD], positions kept) to e, midpoint rule with ``ig_steps``;
- ``policy``: TR-BERT's policy (the own ranking of a tr-bert checkpoint; n/a otherwise);
- ``random``: a seeded permutation.

Faithfulness (ERASER, DeYoung et al. 2020) with the judge f = the checkpoint with nothing dropped
(``judge_mode="dense"``; ``"hard"`` judges the deployed pruned model), y its prediction on the full text:
comprehensiveness p(y|x) - p(y|x without the top k %), sufficiency p(y|x) - p(y|only the top k %),
k in 1, 5, 10, 20, 50 % of the text's non-special tokens (rounded up, at least one), removal = the tokens
are deleted from the input ([CLS]/[SEP] stay); AOPC = the mean over the five k. Higher comprehensiveness
and lower sufficiency are better.

Agreement with the VADER lexicon rationale set (``lexicon.py``): per text with at least one rationale
token, AUPRC (average precision of the ranking) and token F1 of the top b tokens, b = the number of
non-special tokens the checkpoint itself keeps through its last layer. Differences against the own ranking
come with a paired bootstrap 95 % interval over texts.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data import DataError
from .explain import explain_texts

BINS = (0.01, 0.05, 0.10, 0.20, 0.50)
RANKINGS = ("own", "own-first", "attention", "grad-x-input", "integrated-gradients", "policy", "random")
METRICS = ("comprehensiveness", "sufficiency", "auprc", "f1_at_budget")  # per-text values, bootstrapped


# ------------------------------------------------------------------------------------------- judge

def padded(rows: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def judge_probs(model, rows: list[list[int]], mode: str = "dense", batch_size: int = 64) -> np.ndarray:
    """Class probabilities of ``model`` for token-id lists, batched by length (padding is compute)."""
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = np.zeros((len(rows), model.num_labels), dtype=np.float64)
    with torch.no_grad():
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            ids, mask = padded([rows[i] for i in idx])
            out[idx] = model(ids, mask, mode=mode).logits.float().softmax(-1).numpy()
    return out


# ------------------------------------------------------------------------------------------- rankings

def attention_scores(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, T] PoWER-BERT significance averaged over the layers of a forward with nothing dropped."""
    from .selectors.power_bert import significance
    sigs: list[torch.Tensor] = []
    inner = model.attention

    def attention(layer, state, need_probs):
        h, p = inner(layer, state, True)
        sigs.append(significance(p, state.mask).masked_fill(state.mask == 0, 0.0))
        return h, p
    model.attention = attention
    try:
        with torch.no_grad():
            model(ids, mask, mode="dense")
    finally:
        del model.attention
    return torch.stack(sigs).mean(0)


def gradient_scores(model, ids: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, ig_steps: int = 0,
                    special_ids: tuple[int, ...] = (), pad_id: int = 0,
                    token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] ||grad * input||_2 at the embeddings for the ``target`` logit (``ig_steps`` = 0), or integrated
    gradients from the baseline with every token but ``special_ids`` replaced by ``pad_id``, with
    ``ig_steps`` midpoint steps. Nothing dropped (the drop has no gradient)."""
    keep = torch.isin(ids, torch.tensor(list(special_ids), dtype=ids.dtype)) | (mask == 0)
    with torch.no_grad():
        e = model.embed(ids, token_type_ids)
        e0 = model.embed(torch.where(keep, ids, torch.full_like(ids, pad_id)), token_type_ids) if ig_steps else None
    alphas = [(k + 0.5) / ig_steps for k in range(ig_steps)] if ig_steps else [1.0]
    total = torch.zeros_like(e)
    with torch.enable_grad():
        for a in alphas:
            x = (e if e0 is None else e0 + a * (e - e0)).detach().requires_grad_(True)
            logits = model(ids, mask, token_type_ids, mode="dense", embeddings=x).logits
            (g,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
            total += g
    delta = e if e0 is None else e - e0
    return ((total / len(alphas)) * delta).norm(dim=-1) * mask.float()


def _batched(fn: Callable, rows: list[list[int]], batch_size: int, *args) -> list[np.ndarray]:
    out: list[np.ndarray] = [np.zeros(0)] * len(rows)
    for s in range(0, len(rows), batch_size):
        idx = list(range(s, min(s + batch_size, len(rows))))
        ids, mask = padded([rows[i] for i in idx])
        extra = [a[idx] if isinstance(a, torch.Tensor) else a for a in args]
        scores = fn(ids, mask, *extra).detach()
        for j, i in enumerate(idx):
            out[i] = scores[j, : len(rows[i])].double().numpy()
    return out


# ------------------------------------------------------------------------------------------- metrics

def top_tokens(score: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest-scoring candidates (ties: earlier position first)."""
    order = sorted(candidates.tolist(), key=lambda p: (-score[p], p))
    return np.array(sorted(order[:k]), dtype=int)


def bin_size(m: int, frac: float) -> int:
    return max(1, min(m, math.ceil(frac * m)))


def average_precision(score: np.ndarray, labels: np.ndarray) -> float:
    """AUPRC of one ranking: mean precision at each relevant item (ties: earlier position first)."""
    order = sorted(range(len(score)), key=lambda p: (-score[p], p))
    hits, total = 0, 0.0
    for r, p in enumerate(order, 1):
        if labels[p]:
            hits += 1
            total += hits / r
    return total / hits if hits else float("nan")


def f1_at(score: np.ndarray, labels: np.ndarray, budget: int) -> float:
    if budget <= 0 or labels.sum() == 0:
        return 0.0
    chosen = np.zeros(len(score), bool)
    chosen[top_tokens(score, np.arange(len(score)), budget)] = True
    tp = float((chosen & (labels > 0)).sum())
    return 0.0 if tp == 0 else 2 * tp / (chosen.sum() + labels.sum())


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Mean of a - b over texts (NaNs dropped pairwise) and its 95 % percentile interval."""
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    if len(d) == 0:
        return {"mean_diff": None, "ci95": None, "n": 0}
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), (n, len(d)))].mean(axis=1)
    return {"mean_diff": float(d.mean()), "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "n": int(len(d))}


# ------------------------------------------------------------------------------------------- the run

def rationale_report(model, tokenizer, texts: list[str], max_length: int, label_names: list[str], *,
                     lexicon_words: set[str] | None, judge_mode: str = "dense", ig_steps: int = 16,
                     batch_size: int = 32, seed: int = 0, progress: Callable[[str], None] = lambda s: None) -> dict:
    """Every ranking's faithfulness and lexicon agreement on ``texts``; per-text values for the bootstrap."""
    from .lexicon import token_labels
    if judge_mode not in ("dense", "hard"):
        raise ValueError(f"judge_mode must be dense or hard, got {judge_mode!r}")
    progress("model's own selection")
    expls = explain_texts(model, tokenizer, texts, max_length, label_names)
    rows = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    cands = [np.array([p for p, s in enumerate(e.special) if not s], dtype=int) for e in expls]
    if any(len(c) == 0 for c in cands):
        raise DataError("a text has no tokens besides [CLS]/[SEP]; drop it from the data")
    L = model.num_layers
    budgets = [int(sum(1 for p, d in enumerate(e.depth()) if d == L and not e.special[p])) for e in expls]
    full = judge_probs(model, rows, judge_mode)
    y = full.argmax(1)
    target = torch.from_numpy(y)

    rankings: dict[str, list[np.ndarray] | None] = {}
    reasons: dict[str, str] = {}
    if expls[0].score_name == "n/a":
        rankings["own"] = rankings["own-first"] = None
        reasons["own"] = reasons["own-first"] = expls[0].score_note
    else:
        rankings["own"] = [np.array(e.own_ranking()) for e in expls]
        first = next(i for i, s in enumerate(expls[0].scores) if s is not None)
        rankings["own-first"] = [np.array([e.scores[first].get(p, -np.inf) for p in range(len(e.tokens))])
                                 for e in expls]
        reasons["own"] = f"{expls[0].score_name}: survival depth, then the last score"
        reasons["own-first"] = f"{expls[0].score_name} of layer {first}"
    progress("attention")
    rankings["attention"] = _batched(lambda i, m: attention_scores(model, i, m), rows, batch_size)
    progress("gradient x input")
    rankings["grad-x-input"] = _batched(lambda i, m, t: gradient_scores(model, i, m, t), rows, batch_size, target)
    progress(f"integrated gradients ({ig_steps} steps)")
    specials = tuple(tokenizer.all_special_ids)
    rankings["integrated-gradients"] = _batched(
        lambda i, m, t: gradient_scores(model, i, m, t, ig_steps, specials, tokenizer.pad_token_id or 0), rows,
        batch_size, target) if ig_steps > 0 else None
    if ig_steps <= 0:
        reasons["integrated-gradients"] = "skipped (ig_steps = 0)"
    if hasattr(model.selector, "policies"):
        rankings["policy"] = rankings["own"]
        reasons["policy"] = "the checkpoint's own ranking"
    else:
        rankings["policy"] = None
        reasons["policy"] = f"the checkpoint has no policy networks (method {model.method}); explain a tr-bert one"
    rng = np.random.default_rng(seed)
    rankings["random"] = [rng.permutation(len(r)).astype(float) for r in rows]
    reasons["random"] = f"seeded permutation (seed {seed})"

    labels = [np.array(token_labels(t, tokenizer, lexicon_words, max_length)) for t in texts] \
        if lexicon_words is not None else None
    results: dict[str, Any] = {}
    per_text: dict[str, dict[str, np.ndarray]] = {}
    for name in RANKINGS:
        ranking = rankings[name]
        if ranking is None:
            results[name] = {"available": False, "reason": reasons[name]}
            continue
        progress(f"faithfulness of {name}")
        comp, suff = _faithfulness(model, rows, cands, ranking, full, y, judge_mode)
        vals = {"comprehensiveness": comp.mean(1), "sufficiency": suff.mean(1)}
        res = {"available": True, "how": reasons.get(name, ""),
               "comprehensiveness_aopc": float(vals["comprehensiveness"].mean()),
               "sufficiency_aopc": float(vals["sufficiency"].mean()),
               "comprehensiveness_per_bin": comp.mean(0).tolist(), "sufficiency_per_bin": suff.mean(0).tolist()}
        if labels is not None:
            ap, f1 = [], []
            for s, lab, c, b in zip(ranking, labels, cands, budgets):
                lab_c = lab[c]
                ap.append(average_precision(s[c], lab_c) if lab_c.any() else float("nan"))
                f1.append(f1_at(s[c], lab_c, b) if lab_c.any() else float("nan"))
            vals["auprc"], vals["f1_at_budget"] = np.array(ap), np.array(f1)
            res["auprc"] = float(np.nanmean(vals["auprc"]))
            res["f1_at_budget"] = float(np.nanmean(vals["f1_at_budget"]))
        results[name] = res
        per_text[name] = vals
    paired: dict[str, Any] = {}
    if "own" in per_text:
        for name, vals in per_text.items():
            if name != "own":
                paired[name] = {m: paired_bootstrap(per_text["own"][m], vals[m], seed=seed) for m in vals}
    n_pos = [int(lab[c].sum()) for lab, c in zip(labels, cands)] if labels is not None else None
    return {"n_texts": len(texts), "judge_mode": judge_mode, "ig_steps": ig_steps, "bins": list(BINS),
            "judge_predictions": y.tolist(),
            "mean_candidates": float(np.mean([len(c) for c in cands])), "mean_budget": float(np.mean(budgets)),
            "texts_with_rationale_tokens": None if n_pos is None else int(sum(1 for n in n_pos if n)),
            "mean_rationale_tokens": None if n_pos is None else float(np.mean(n_pos)),
            "rankings": results, "paired_vs_own": paired}


def _faithfulness(model, rows, cands, ranking, full, y, judge_mode) -> tuple[np.ndarray, np.ndarray]:
    """[N, bins] comprehensiveness and sufficiency of one ranking."""
    removed, kept = [], []
    for r, c, s in zip(rows, cands, ranking):
        special = [p for p in range(len(r)) if p not in set(c.tolist())]
        for frac in BINS:
            top = set(top_tokens(s, c, bin_size(len(c), frac)).tolist())
            removed.append([t for p, t in enumerate(r) if p not in top])
            kept.append([t for p, t in enumerate(r) if p in top or p in special])
    p_rem, p_kept = _unique_probs(model, removed, judge_mode), _unique_probs(model, kept, judge_mode)
    n, k = len(rows), len(BINS)
    base = full[np.arange(n), y][:, None]
    cls = np.repeat(y, k)
    comp = base - p_rem[np.arange(n * k), cls].reshape(n, k)
    suff = base - p_kept[np.arange(n * k), cls].reshape(n, k)
    return comp, suff


def _unique_probs(model, rows: list[list[int]], mode: str) -> np.ndarray:
    """``judge_probs`` computing each distinct row once (short texts give the same top-1 token for several bins)."""
    index: dict[tuple[int, ...], int] = {}
    for r in rows:
        index.setdefault(tuple(r), len(index))
    probs = judge_probs(model, [list(r) for r in index], mode)
    return probs[[index[tuple(r)] for r in rows]]


def run_rationales(ckpt: str | Path, data, split: str = "test", limit: int | None = None, *,
                   lexicon_threshold: float | None = None, judge_mode: str = "dense", ig_steps: int = 16,
                   batch_size: int = 32, seed: int = 0, progress: Callable[[str], None] = lambda s: None) -> dict:
    """``rationale_report`` for a checkpoint (or run directory) on ``data``'s ``split`` (first ``limit``)."""
    from .checkpoint import checkpoint_dir
    from .checkpoint import check_classes, load_checkpoint, load_checkpoint_tokenizer
    from .lexicon import THRESHOLD, load_vader_lexicon, rationale_words
    ckpt = checkpoint_dir(ckpt)
    model, cfg = load_checkpoint(ckpt)
    check_classes(ckpt, cfg, data)
    examples = data.split(split)[:limit]
    if not examples:
        raise DataError(f"{data.name} has no {split} examples")
    if any(e.text_pair is not None for e in examples):
        raise DataError(f"{data.name} is sentence-pair data; rationales support single texts only")
    threshold = THRESHOLD if lexicon_threshold is None else lexicon_threshold
    words = rationale_words(load_vader_lexicon(), threshold)
    report = rationale_report(model, load_checkpoint_tokenizer(ckpt), [e.text for e in examples], cfg["max_length"],
                              cfg["label_names"], lexicon_words=words, judge_mode=judge_mode, ig_steps=ig_steps,
                              batch_size=batch_size, seed=seed, progress=progress)
    golds = np.array([e.label for e in examples])
    report.update(checkpoint=str(ckpt), method=cfg["method"], data=data.name, split=split,
                  judge_accuracy=float((np.array(report["judge_predictions"]) == golds).mean()),
                  lexicon={"source": "vaderSentiment 3.3.2 vader_lexicon.txt", "threshold": threshold,
                           "rule": "|mean rating| >= threshold; every word piece of a matching word (the tokenizer's "
                                   "pre-tokenized word, lower-cased) is a rationale token"})
    return report


# ------------------------------------------------------------------------------------------- reports

LABELS = {"own": "own selection", "own-first": "own, first scoring layer", "attention": "attention (PoWER-BERT)",
          "grad-x-input": "gradient x input", "integrated-gradients": "integrated gradients",
          "policy": "TR-BERT policy", "random": "random"}


def _ci(paired: dict, name: str, metric: str) -> str:
    d = paired.get(name, {}).get(metric)
    if not d or d["mean_diff"] is None:
        return ""
    lo, hi = d["ci95"]
    return f"{d['mean_diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def report_rows(report: dict) -> list[list[str]]:
    """One row per ranking: name, comprehensiveness AOPC, sufficiency AOPC, AUPRC, F1 at budget, and the
    own-minus-this differences with their 95 % intervals (or n/a and the reason)."""
    rows = []
    for name in RANKINGS:
        r = report["rankings"][name]
        label = LABELS[name] + (f" ({r['how']})" if name.startswith("own") and r.get("how") else "")
        if not r["available"]:
            rows.append([label, "n/a", "n/a", "n/a", "n/a", f"n/a: {r['reason']}", "", ""])
            continue
        p = report.get("paired_vs_own", {})
        rows.append([label, f"{r['comprehensiveness_aopc']:.3f}", f"{r['sufficiency_aopc']:.3f}",
                     f"{r['auprc']:.3f}" if "auprc" in r else "n/a",
                     f"{r['f1_at_budget']:.3f}" if "f1_at_budget" in r else "n/a",
                     _ci(p, name, "comprehensiveness"), _ci(p, name, "sufficiency"), _ci(p, name, "auprc")])
    return rows


COLUMNS = ["ranking", "comprehensiveness AOPC (higher = better)", "sufficiency AOPC (lower = better)",
           "AUPRC vs lexicon", "token F1 at kept budget", "own - this: comprehensiveness [95 % CI]",
           "own - this: sufficiency", "own - this: AUPRC"]


def markdown_table(report: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in report_rows(report)]
    return "\n".join(lines)


SHORT = ["ranking", "comp. AOPC (up)", "suff. AOPC (down)", "AUPRC", "F1 @ budget", "own - this: comp.",
         "own - this: suff.", "own - this: AUPRC"]


def rich_table(report: dict):
    """The markdown table's rows with short headers; reasons for n/a rows in the caption."""
    from rich.table import Table
    rows = report_rows(report)
    na = [f"{r[0]}: {r[5][5:]}" for r in rows if r[1] == "n/a"]
    t = Table(title=f"rationales: {report.get('method', '?')} on {report.get('data', '?')} {report.get('split', '')} "
                    f"({report['n_texts']} texts, judge: {report['judge_mode']})", title_justify="left",
              caption="n/a: " + "; ".join(na) if na else None, caption_justify="left")
    for c in SHORT:
        t.add_column(c, justify="left" if c == "ranking" else "right")
    for row in rows:
        t.add_row(*(row[:5] + (["", "", ""] if row[1] == "n/a" else row[5:])))
    return t


def plot(report: dict, path: str | Path, title: str | None = None) -> Path:
    """Bars per ranking: comprehensiveness AOPC, sufficiency AOPC and AUPRC."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [n for n in RANKINGS if report["rankings"][n]["available"]]
    keys = [("comprehensiveness_aopc", "comprehensiveness AOPC (higher better)"),
            ("sufficiency_aopc", "sufficiency AOPC (lower better)"), ("auprc", "AUPRC vs VADER lexicon")]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    w = 0.8 / len(keys)
    for j, (key, label) in enumerate(keys):
        vals = [report["rankings"][n].get(key, float("nan")) for n in names]
        ax.bar([i + (j - 1) * w for i in range(len(names))], vals, w, label=label)
    ax.set_xticks(range(len(names)), [LABELS[n] for n in names], rotation=15, fontsize=8)
    ax.set_title(title or f"{report.get('method')} on {report.get('data')} ({report['n_texts']} {report.get('split')} texts)",
                 fontsize=10)
    ax.set_ylim(0, 1.2 * max(report["rankings"][n].get(k, 0) for n in names for k, _ in keys))
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
