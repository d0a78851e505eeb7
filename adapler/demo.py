"""The demo: fine-tune MiniLM on a subset of vader-movies, train AdapLeR, evaluate, show surviving tokens.

Every stage caches its output under ``out`` and is skipped when already finished, so re-running is fast.
"""
from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from . import methods
from .checkpoint import load_checkpoint, load_checkpoint_tokenizer
from .files import write_json_atomic
from .progress import log
from .recipes import QUICK, QuickPreset, evaluate_test, finished, quick_data, train_dense, train_quick

__all__ = ["DEMO_SENTENCES", "QUICK", "QuickPreset", "kept_tokens_table", "run_demo"]

console = Console()


DEMO_SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The plot is nothing but boilerplate cliches from start to finish, and the acting is wooden.",
    "It's not a great film, but it is a worthwhile one, with a few genuinely funny moments.",
]


def kept_tokens_table(model, tokenizer, text: str, max_length: int) -> Table:
    """Which tokens each layer processes (batch 1, hard removal)."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        out = model(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"), mode="hard",
                    track_positions=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    label = model.config.id2label.get(int(out.logits.argmax()), str(int(out.logits.argmax())))
    t = Table(title=f"{text!r} -> {label}", show_lines=False, title_justify="left")
    t.add_column("layer", justify="right")
    t.add_column("kept", justify="right")
    t.add_column("tokens the layer processes (· = dropped)")
    for layer, pos in enumerate(out.positions):
        keep = set(pos[0].tolist()) - {-1}
        shown = " ".join(tok if i in keep else "[dim]·[/dim]" for i, tok in enumerate(tokens))
        t.add_row(str(layer), f"{len(keep)}/{len(tokens)}", shown)
    return t


def run_demo(out: str | Path = "runs/demo", overwrite: bool = False, preset: QuickPreset = QUICK) -> dict:
    """Train (or reuse) the quick-preset dense and AdapLeR models, evaluate on test, show kept tokens."""
    out = Path(out)
    if overwrite and out.exists():
        import shutil
        shutil.rmtree(out)
    main = methods.get(methods.MAIN)
    data = quick_data(preset)
    log(data.summary())
    for name, run, train in (("fine-tuned model", out / "finetune", lambda r: train_dense(r, data, preset)),
                             (f"{main.title} model", out / main.name,
                              lambda r: train_quick(main.name, out / "finetune", r, data, preset))):
        if finished(run):
            log(f"{name}: reusing {run}")
        else:
            train(run)

    rows = evaluate_test(data, {"fine-tuned BERT (MiniLM-L6)": (out / "finetune" / "best", "dense"),
                                main.title: (out / main.name / "best", "hard")})
    table = Table(title=f"{preset.data} test ({len(data.test)} examples), MiniLM-L6, max length {preset.max_length}")
    for col in ("model", "accuracy", "FLOPs speedup", "GFLOPs/example", "mean kept length per layer"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, m in rows.items():
        table.add_row(name, f"{100 * m['accuracy']:.1f}%", f"{m['flops_speedup']:.2f}x",
                      f"{m['gflops_per_example']:.3f}", " ".join(f"{v:.1f}" for v in m["mean_kept_lengths"]))
    console.print(table)
    model, cfg = load_checkpoint(out / main.name / "best")
    model.config.id2label = dict(enumerate(cfg["label_names"]))
    tok = load_checkpoint_tokenizer(out / main.name / "best")
    for text in DEMO_SENTENCES:
        console.print(kept_tokens_table(model, tok, text, cfg["max_length"]))
    write_json_atomic(out / "demo_results.json", rows)
    return rows
