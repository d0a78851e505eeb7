"""Explanations for people: a rich table per text in the terminal, one self-contained HTML file per run."""
from __future__ import annotations

import html
from pathlib import Path

from rich.table import Table

from .explain import Explanation

# One colour per survival depth: dropped before layer 0 (red) .. processed by every layer (green).
_PALETTE = ["#f4a6a6", "#f7c59f", "#f9e79f", "#d5f5a3", "#a9dfbf", "#7fcdbb", "#5dade2", "#a29bfe"]


def depth_colour(depth: int, num_layers: int) -> str:
    if depth >= num_layers:
        return "#58d68d"
    return _PALETTE[min(len(_PALETTE) - 1, round(depth * (len(_PALETTE) - 1) / max(1, num_layers)))]


def header(e: Explanation) -> str:
    probs = " ".join(f"{p:.3f}" for p in e.probs)
    trunc = (f"; truncated to {len(e.tokens)} of {e.n_tokens_untruncated} tokens (the model's max length)"
             if e.truncated else "")
    return f"{e.text[:80]!r}{'...' if len(e.text) > 80 else ''} -> {e.prediction} ({probs}) [{e.method}, {e.source}]{trunc}"


def explanation_table(e: Explanation) -> Table:
    """Per layer: how many tokens it processed, its threshold, and the tokens (score in brackets, · = gone)."""
    t = Table(title=header(e), title_justify="left", show_lines=False,
              caption=f"scores: {e.score_name}" + (f" ({e.score_note})" if e.score_note else ""), caption_justify="left")
    t.add_column("layer", justify="right")
    t.add_column("kept", justify="right")
    t.add_column("threshold", justify="right")
    t.add_column("tokens the layer processes \\[score]; · = dropped before this layer")
    for layer, kept in enumerate(e.kept):
        keep, scores = set(kept), e.scores[layer] or {}
        cells = []
        for p, tok in enumerate(e.tokens):
            if p not in keep:
                cells.append("[dim]·[/dim]")
                continue
            s = scores.get(p)
            cells.append(tok.replace("[", "\\[") + (f"[dim]\\[{s:.3g}][/dim]" if s is not None else ""))
        thr = e.thresholds[layer]
        t.add_row(str(layer), f"{len(keep)}/{len(e.tokens)}", "n/a" if thr is None else f"{thr:.3g}", " ".join(cells))
    return t


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}
.text{line-height:2.2em;margin:.5em 0 1.5em 0}.tok{padding:.15em .25em;margin:0 .08em;border-radius:.25em}
.legend span{padding:.15em .5em;margin-right:.3em;border-radius:.25em}table{border-collapse:collapse;font-size:.85em}
td,th{border:1px solid #ccc;padding:.2em .4em;text-align:left}.gone{color:#bbb}.note{color:#666;font-size:.9em}"""


def _token_title(e: Explanation, p: int, depth: int) -> str:
    where = "never dropped" if depth >= e.num_layers else f"dropped before layer {depth}"
    scored = [f"L{l}: {s[p]:.4g}" for l, s in enumerate(e.scores) if s and p in s]
    return where + ("; " + ", ".join(scored) if scored else "")


def explanation_html(e: Explanation) -> str:
    depth = e.depth()
    spans = "".join(
        f'<span class="tok" style="background:{depth_colour(d, e.num_layers)}" '
        f'title="{html.escape(_token_title(e, p, d))}">{html.escape(tok)}</span>'
        for p, (tok, d) in enumerate(zip(e.tokens, depth)))
    rows = []
    for layer, kept in enumerate(e.kept):
        keep, scores = set(kept), e.scores[layer] or {}
        cells = " ".join(html.escape(tok) + (f"<sub>{scores[p]:.3g}</sub>" if p in scores else "") if p in keep
                         else '<span class="gone">·</span>' for p, tok in enumerate(e.tokens))
        thr = e.thresholds[layer]
        rows.append(f"<tr><td>{layer}</td><td>{len(keep)}/{len(e.tokens)}</td>"
                    f"<td>{'n/a' if thr is None else f'{thr:.3g}'}</td><td>{cells}</td></tr>")
    note = html.escape(f"scores: {e.score_name}" + (f" ({e.score_note})" if e.score_note else ""))
    return (f"<h3>{html.escape(header(e))}</h3><div class='text'>{spans}</div>"
            f"<details><summary>per layer</summary><table><tr><th>layer</th><th>kept</th><th>threshold</th>"
            f"<th>tokens the layer processes (score); · = dropped</th></tr>{''.join(rows)}</table>"
            f"<p class='note'>{note}</p></details>")


def html_page(explanations: list[Explanation], title: str = "adapler explain") -> str:
    """One self-contained page (inline CSS, no scripts, no external files)."""
    L = explanations[0].num_layers if explanations else 0
    legend = "".join(f'<span style="background:{depth_colour(d, L)}">'
                     f'{"kept by every layer" if d == L else f"dropped before layer {d}"}</span>' for d in range(L + 1))
    body = "".join(explanation_html(e) for e in explanations)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p class='legend'>{legend}</p><p class='note'>Hover a token for its scores.</p>{body}</body></html>")


def write_html(explanations: list[Explanation], path: str | Path, title: str = "adapler explain",
               overwrite: bool = False) -> Path:
    from .files import write_text_atomic
    return write_text_atomic(path, html_page(explanations, title), overwrite=overwrite)
