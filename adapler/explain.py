"""What did the model read? Per layer, the original tokens each layer processed and the selector's scores.

``explain_texts`` runs a checkpoint in torch (hard removal, the deployed rule) and reconstructs, from the
encoder's original-position tracking (``EncoderState.positions``), which tokens every layer processed;
``explain_onnx`` reads the same from an export's ``kept_positions`` output, so the graph that ships is
what is explained. Rendering (terminal table, HTML) is in ``explain_render.py``.

The model's own ranking (``Explanation.own_ranking``, docs/results.md §7): tokens sorted by survival depth
(how many layers processed them; deeper first), ties broken by the score of the last selector that
scored them. Tokens that survive to the same depth were last scored by the same selector, in the same
call, so their scores are comparable; for AdapLeR that is the CP distribution of the layer that dropped
them (or of the last layer, for survivors).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor

from .data import DataError
from .errors import ExportError, UsageError


class ExplainError(UsageError):
    """One-line, user-facing problem with what explain was asked (empty text, both or neither of text and data)."""


@dataclass
class Explanation:
    text: str
    tokens: list[str]  # word pieces, specials included
    special: list[bool]
    method: str
    source: str  # "torch" or the ONNX file that ran
    prediction: str
    probs: list[float]
    kept: list[list[int]]  # per layer, the original positions its FFN processed (ascending)
    scores: list[dict[int, float] | None]  # per layer, score of every token the selector scored there
    thresholds: list[float | None]  # per layer, the keep threshold where the rule has one
    score_name: str  # what the scores are ("CP score", ...), or "n/a"
    score_note: str = ""  # why there are no scores, or how the rule uses them
    truncated: bool = False
    n_tokens_untruncated: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        return len(self.kept)

    def depth(self) -> list[int]:
        """Per token, how many layers processed it (the number of layers is "never dropped")."""
        sets = [set(k) for k in self.kept]
        return [sum(1 for s in sets if p in s) for p in range(len(self.tokens))]

    def last_scores(self) -> list[float | None]:
        """Per token, the score of the last selector that scored it (None if none did)."""
        out: list[float | None] = [None] * len(self.tokens)
        for layer in self.scores:
            for p, s in (layer or {}).items():
                out[p] = s
        return out

    def own_ranking(self) -> list[float]:
        """Per token, a score whose order is the model's own ranking: depth first, then the last score."""
        last, depth = self.last_scores(), self.depth()
        order = sorted(range(len(self.tokens)),
                       key=lambda p: (depth[p], last[p] if last[p] is not None else float("-inf")))
        rank = [0.0] * len(self.tokens)
        for r, p in enumerate(order):
            rank[p] = float(r)
        return rank

    def to_json(self) -> dict:
        d = asdict(self)
        d["scores"] = [None if s is None else {str(p): v for p, v in s.items()} for s in self.scores]
        d["survival_depth"] = self.depth()
        return d


def check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ExplainError("the text is empty; give --text a non-empty string (or --data for a dataset)")
    return text


# ------------------------------------------------------------------------------------------- scores

@contextmanager
def recording_scores(model) -> Iterator[dict]:
    """Record what the selector scores during one forward. This is the one place that knows where each
    selector computes its scores: the CP / policy networks (forward hooks) and attention probabilities
    (PoWER-BERT's significance). A selector that puts per-layer ``aux["scores"]`` needs none of it."""
    sel = model.selector
    rec: dict[str, Any] = {"z": {}, "probs": []}
    handles = []
    nets = list(enumerate(sel.cps)) if hasattr(sel, "cps") else \
        list(zip(sel.points, sel.policies)) if hasattr(sel, "policies") else []
    for layer, net in nets:
        handles.append(net.register_forward_hook(lambda m, i, o, layer=layer: rec["z"].__setitem__(layer, o.detach())))
    if sel.needs_attention_probs:
        inner = model.attention

        def attention(layer, state, need_probs):
            h, p = inner(layer, state, need_probs)
            rec["probs"].append(None if p is None else p.detach())
            return h, p
        model.attention = attention  # instance attribute, removed below
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()
        if "attention" in model.__dict__:
            del model.attention


def layer_scores(model, rec: dict, aux: dict, entering: list[Tensor]) -> tuple[list, list, str, str]:
    """(scores, thresholds, score name, note) per layer for batch row 0; ``entering[l]`` = the original
    positions of the slots entering layer l ([T_l], -1 = padding)."""
    L, sel = model.num_layers, model.selector
    scores: list[dict[int, float] | None] = [None] * L
    thresholds: list[float | None] = [None] * L

    def as_dict(values: Tensor, pos: Tensor) -> dict[int, float]:
        return {int(p): float(v) for p, v in zip(pos.tolist(), values.tolist()) if p >= 0}

    if isinstance(aux.get("scores"), list):  # a selector that reports its own scores
        for layer, s in enumerate(aux["scores"][:L]):
            if s is not None:
                scores[layer] = as_dict(s[0], entering[layer])
        return scores, thresholds, "selector score", ""
    if hasattr(sel, "cps"):
        from .selectors.contribution import masked_distribution
        for layer, z in rec["z"].items():
            pos = entering[layer]
            alive = (pos >= 0)[None]
            s = masked_distribution(z[:1].masked_fill(~alive, float("-inf")), alive.float())[0]
            scores[layer] = as_dict(s, pos)
            thresholds[layer] = float(sel.eta[layer].detach()) / int(alive.sum())
        return scores, thresholds, "CP score", "a token goes when its score < eta_l / n, the threshold column"
    if hasattr(sel, "policies"):
        for layer, z in rec["z"].items():
            scores[layer] = as_dict(torch.sigmoid(z[0]), entering[layer])
            thresholds[layer] = 0.5
        return scores, thresholds, "policy p", "a token goes when p < 0.5; other layers have no policy"
    if sel.needs_attention_probs:
        from .selectors.power_bert import significance
        retention = aux.get("retention") or []
        for layer, probs in enumerate(rec["probs"]):
            if probs is not None:
                pos = entering[layer]
                scores[layer] = as_dict(significance(probs[:1], (pos >= 0).long()[None])[0], pos)
        return scores, thresholds, "attention significance", \
            f"each layer keeps [CLS] + the top l_j - 1 (l = {retention})"
    from .encoder import TokenSelector
    inert = all(getattr(type(sel), hook) is getattr(TokenSelector, hook) for hook in ("before_layer", "after_attention"))
    return scores, thresholds, "n/a", (f"method {model.method!r} drops no tokens and has no token scores" if inert
                                       else f"the {model.method!r} selector computes no token scores")


# ------------------------------------------------------------------------------------------- torch

def _encode_one(text: str, tokenizer, max_length: int, pair: str | None = None) -> tuple[dict, bool, int]:
    full = len(tokenizer(text, pair, truncation=False, verbose=False)["input_ids"])
    enc = tokenizer(text, pair, truncation=True, max_length=max_length, return_tensors="pt",
                    return_special_tokens_mask=True)
    return enc, full > max_length, full


def explain_texts(model, tokenizer, texts: list[str], max_length: int, label_names: list[str]) -> list[Explanation]:
    """Explain each text at batch 1 with hard removal (the dense model's hard mode drops nothing; scores n/a)."""
    out = []
    for text in texts:
        enc, truncated, full = _encode_one(check_text(text), tokenizer, max_length)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        with torch.no_grad(), recording_scores(model) as rec:
            res = model(ids, mask, enc.get("token_type_ids"), mode="hard", track_positions=True)
        start = torch.where(mask > 0, torch.arange(ids.shape[1]), -1)[0]
        history = [p[0] for p in res.positions]
        entering = [start] + history[:-1]
        scores, thr, name, note = layer_scores(model, rec, res.aux, entering)
        probs = res.logits.softmax(-1)[0]
        out.append(Explanation(
            text=text, tokens=tokenizer.convert_ids_to_tokens(ids[0]),
            special=[bool(v) for v in enc["special_tokens_mask"][0].tolist()], method=model.method, source="torch",
            prediction=_label(label_names, int(probs.argmax())), probs=probs.tolist(),
            kept=[sorted(p for p in h.tolist() if p >= 0) for h in history], scores=scores, thresholds=thr,
            score_name=name, score_note=note, truncated=truncated, n_tokens_untruncated=full))
    return out


def _label(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else str(i)


# ------------------------------------------------------------------------------------------- ONNX

def is_export_dir(path: str | Path) -> bool:
    return (Path(path) / "export.json").is_file()


def explain_onnx(export_dir: str | Path, texts: list[str], library: Any = "auto") -> list[Explanation]:
    """Explain each text with the export's ONNX graph: kept positions come from its ``kept_positions``
    output (``cli.py export --kept-positions``). The standard-op graph is used (any ONNX Runtime), the
    TokenDrop graph where the export has only that one."""
    import numpy as np
    from transformers import AutoTokenizer

    from adapler.plugins.token_drop.ort_session import create_session
    export_dir = Path(export_dir)
    meta = json.loads((export_dir / "export.json").read_text())
    if "kept_positions" not in meta.get("outputs", []):
        raise ExportError(f"{export_dir} was exported without the kept_positions output; re-export with "
                           f"`python cli.py export CKPT --out DIR --kept-positions`")
    files = meta["files"]
    name = files.get("std") or files.get("custom")
    if name is None:
        raise ExportError(f"{export_dir} holds neither model.std.onnx nor model.onnx; re-export it")
    session = create_session(export_dir / name, library=library if name == files.get("custom") else None)
    tokenizer = AutoTokenizer.from_pretrained(str(export_dir / "tokenizer"))
    out = []
    for text in texts:
        enc, truncated, full = _encode_one(check_text(text), tokenizer, meta["max_length"])
        feed = {k: enc[k].numpy().astype(np.int64) for k in meta["inputs"]}
        logits, kept_positions = session.run(["logits", "kept_positions"], feed)
        probs = torch.from_numpy(np.asarray(logits, dtype=np.float32)).softmax(-1)[0]
        kept = [sorted(int(p) for p in row if p >= 0) for row in kept_positions[0]]
        out.append(Explanation(
            text=text, tokens=tokenizer.convert_ids_to_tokens(enc["input_ids"][0]),
            special=[bool(v) for v in enc["special_tokens_mask"][0].tolist()], method=meta["method"], source=name,
            prediction=_label(meta["label_names"], int(probs.argmax())), probs=probs.tolist(), kept=kept,
            scores=[None] * len(kept), thresholds=[None] * len(kept), score_name="n/a",
            score_note="the ONNX graph outputs kept positions, not scores (explain the checkpoint for scores)",
            truncated=truncated, n_tokens_untruncated=full))
    return out


# ------------------------------------------------------------------------------------------- API

def explain(source: str | Path, texts: list[str] | None = None, *, data=None, split: str = "test",
            limit: int | None = None) -> list[Explanation]:
    """Explain a checkpoint (or run directory) or an ONNX export directory on ``texts`` or on the first
    ``limit`` examples of ``data``'s ``split``."""
    if (texts is None) == (data is None):
        raise ExplainError("give either texts (--text) or a dataset (--data), not both and not neither")
    if data is not None:
        examples = data.split(split)[:limit]
        if not examples:
            raise DataError(f"{data.name} has no {split} examples to explain")
        texts = [e.text for e in examples]
    if is_export_dir(source):
        return explain_onnx(source, texts)
    from .checkpoint import checkpoint_dir
    from .checkpoint import load_checkpoint, load_checkpoint_tokenizer
    ckpt = checkpoint_dir(source)
    model, cfg = load_checkpoint(ckpt)
    return explain_texts(model, load_checkpoint_tokenizer(ckpt), texts, cfg["max_length"], cfg["label_names"])


def write_jsonl(explanations: list[Explanation], path: str | Path, overwrite: bool = False) -> Path:
    from .files import write_text_atomic
    text = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in explanations)
    return write_text_atomic(path, text, overwrite=overwrite)
