"""Padded vs packed on ONNX Runtime, side by side (docs/deploy.md, "Packed batches").

For a pruned (AdapLeR) and a dense checkpoint, this builds ``model.ort.onnx`` (padded: every layer on
``[B, L, D]``, rows padded to the longest kept row) and ``model.ort.packed.onnx`` (packed: token-wise
work on the real tokens ``[N, D]``, attention per row), optionally their dynamic int8 forms, checks that
padded and packed agree (kept lengths equal, max |logits difference|), and times all forms in one paired,
interleaved run (``bench.timing.time_paired``) on the same batches. Per batch size it reports:

- each form's median latency;
- ``packed / padded``: the packed form's speedup over the padded form of the same model and precision;
- ``pruned / dense``: the pruned model's speedup over the dense one in the same layout and precision,
  next to the FLOPs speedup on unpadded lengths (``adapler.flops``) and their ratio (``follows``: 1.0 =
  latency gains exactly what the FLOPs promise);
- the padding fraction per layer of the padded pruned form (``1 - sum_b n_b / (B * max_b n_b)``, over
  all batches) and of the dense form (its input's).

Input sets: ``mixed`` = the test texts of vader-movies and pang-lee-reviews shuffled together (max length
256 by default); ``pang-lee`` = pang-lee-reviews test (512); ``vader`` = vader-movies test (64).

    python -m adapler.bench.packed --pruned runs/vader/adapler-phi0.01/best --dense runs/vader/ft/best \\
        --set mixed --batch-sizes 1,32 --int8 --threads 2 --out runs/packed-bench
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

SETS = {"mixed": (("vader-movies", "pang-lee-reviews"), 256), "pang-lee": (("pang-lee-reviews",), 512),
        "vader": (("vader-movies",), 64)}


def set_texts(name: str, seed: int = 0) -> tuple[list[str], int]:
    """``(texts, default max length)`` of an input set; test splits, shuffled with ``seed``."""
    from adapler.data import load_dataset
    corpora, max_length = SETS[name]
    texts = [e.text for c in corpora for e in load_dataset(c).test]
    random.Random(seed).shuffle(texts)
    return texts, max_length


def make_feeds(texts: list[str], tokenizer: Any, batch_size: int, n_batches: int, max_length: int) -> list[dict]:
    feeds = []
    for i in range(0, min(len(texts), batch_size * n_batches), batch_size):
        enc = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_length, padding="longest",
                        return_tensors="np")
        feeds.append({"input_ids": enc["input_ids"].astype(np.int64),
                      "attention_mask": enc["attention_mask"].astype(np.int64)})
    return feeds


def build_graphs(models: dict[str, Any], out: Path, int8: bool) -> dict[str, Path]:
    """``{"<model>.<layout>[.int8]": path}``; layout ``padded`` (model.ort.onnx) or ``packed``."""
    from adapler.export.deploy import quantize_int8
    from adapler.export.ort_graph import write_ort_graph
    from adapler.export.packed_graph import write_packed_graph
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, model in models.items():
        files[f"{name}.padded"] = write_ort_graph(model, out / f"{name}.ort.onnx")
        files[f"{name}.packed"] = write_packed_graph(model, out / f"{name}.ort.packed.onnx")
        if int8:
            for layout in ("padded", "packed"):
                src = files[f"{name}.{layout}"]
                files[f"{name}.{layout}.int8"] = quantize_int8(src, src.with_name(src.name.replace(".onnx", ".int8.onnx")))
    return files


def outputs(session: Any, feeds: list[dict]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(logits, kept_lengths)`` of an ORT session on every feed, given only the inputs its graph takes."""
    names = [i.name for i in session.get_inputs()]
    return [tuple(session.run(["logits", "kept_lengths"], {n: f[n] for n in names})) for f in feeds]


def parity(packed: list[tuple[np.ndarray, np.ndarray]], padded: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """A packed form's outputs against its padded form's on the same feeds (``outputs``)."""
    return {"kept_lengths_equal": all(np.array_equal(a[1], b[1]) for a, b in zip(packed, padded)),
            "max_abs_logit_diff": float(max(np.abs(a[0] - b[0]).max() for a, b in zip(packed, padded)))}


def padding_per_layer(kept: list[np.ndarray]) -> list[float]:
    """Share of padded slots per layer over all batches: ``1 - sum n / sum_batches (B * max n)``."""
    real = sum(k.sum(axis=0) for k in kept)
    slots = sum(k.shape[0] * k.max(axis=0) for k in kept)
    return [round(float(v), 4) for v in 1.0 - real / slots]


@torch.no_grad()
def flops_speedup(model: Any, feeds: list[dict], kept: list[np.ndarray]) -> float:
    from adapler.flops import model_flops
    n = torch.from_numpy(np.concatenate([f["attention_mask"].sum(1) for f in feeds]))
    dense, pruned = model_flops(model, n, torch.from_numpy(np.concatenate(kept)))
    return float(dense.sum() / pruned.sum())


def run_batch_size(sessions: dict[str, Any], feeds: list[dict], pruned_model: Any, repeats: int,
                   warmup: int) -> dict:
    """Parity, padding, FLOPs and the paired timing of every form on ``feeds``."""
    from .timing import ratio, summarize, time_paired
    outs = {k: outputs(s, feeds) for k, s in sessions.items()}
    precisions = sorted({k.split(".", 2)[2] if k.count(".") == 2 else "fp32" for k in sessions})
    entry: dict[str, Any] = {"batch_size": int(feeds[0]["attention_mask"].shape[0]), "n_batches": len(feeds),
                             "mean_tokens": float(np.mean(np.concatenate([f["attention_mask"].sum(1) for f in feeds]))),
                             "mean_padded_length": float(np.mean([f["attention_mask"].shape[1] for f in feeds])),
                             "parity": {}, "flops_speedup": {}, "padding_fraction": {}}
    for key in sessions:
        if ".packed" in key:
            entry["parity"][key] = parity(outs[key], outs[key.replace(".packed", ".padded")])
    for prec in precisions:
        sfx = "" if prec == "fp32" else f".{prec}"
        kept = [o[1] for o in outs[f"pruned.padded{sfx}"]]
        entry["flops_speedup"][prec] = round(flops_speedup(pruned_model, feeds, kept), 4)
        entry["padding_fraction"][f"pruned{sfx}"] = padding_per_layer(kept)
    entry["padding_fraction"]["dense"] = padding_per_layer([o[1] for o in outs["dense.padded"]])
    times = time_paired({k: (lambda f, s=s: s.run(["logits"], f)) for k, s in sessions.items()}, feeds,
                        warmup=warmup, repeats=repeats)
    entry["latency"] = {k: summarize(v) for k, v in times.items()}
    entry["packed_vs_padded"], entry["pruned_vs_dense"] = {}, {}
    for key in sessions:
        if ".packed" in key:
            entry["packed_vs_padded"][key] = ratio(times[key.replace(".packed", ".padded")], times[key], repeats)
        if key.startswith("pruned."):
            r = ratio(times[key.replace("pruned.", "dense.")], times[key], repeats)
            prec = key.split(".", 2)[2] if key.count(".") == 2 else "fp32"
            r["follows_flops"] = r["median_of_ratios"] / entry["flops_speedup"][prec]
            entry["pruned_vs_dense"][key] = r
    return entry


def _x(v: float | None) -> str:
    return f"{v:.2f}x" if v else ""


def markdown(results: dict) -> str:
    lines = [f"# Padded vs packed: {results['set']} (max length {results['max_length']}, {results['threads']} threads)",
             "", f"uptime at start: `{results['uptime']}`", ""]
    for e in results["entries"]:
        lines += [f"## batch {e['batch_size']} ({e['n_batches']} batches, {e['mean_tokens']:.1f} tokens per row, "
                  f"padded length {e['mean_padded_length']:.1f})", "",
                  "| form | median ms | packed / padded | pruned / dense (same form) | FLOPs speedup | follows |",
                  "|---|---|---|---|---|---|"]
        for key, lat in e["latency"].items():
            pvp = e["packed_vs_padded"].get(key, {}).get("median_of_ratios")
            pvd = e["pruned_vs_dense"].get(key)
            prec = key.split(".", 2)[2] if key.count(".") == 2 else "fp32"
            cells = [key, f"{lat['median_ms']:.2f}", _x(pvp), _x(pvd and pvd["median_of_ratios"]),
                     _x(pvd and e["flops_speedup"][prec]), f"{pvd['follows_flops']:.2f}" if pvd else ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "padding fraction per layer (padded forms): " +
                  "; ".join(f"{k} {', '.join(f'{v:.2f}' for v in vals)}" for k, vals in e["padding_fraction"].items()),
                  "", "parity packed vs padded: " +
                  "; ".join(f"{k} kept equal {p['kept_lengths_equal']}, max |dlogits| {p['max_abs_logit_diff']:.1e}"
                            for k, p in e["parity"].items()), ""]
    return "\n".join(lines)


def run(pruned: str, dense: str, set_name: str, out: str | Path, batch_sizes: tuple[int, ...] = (1, 32),
        n_batches: int = 4, batch1_inputs: int = 32, repeats: int = 3, warmup: int = 1, threads: int = 2,
        int8: bool = False, max_length: int | None = None, overwrite: bool = False) -> dict:
    """Run the comparison and write ``packed.json`` and ``packed.md`` under ``out``."""
    import os

    from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer
    from adapler.files import ensure_out_dir, ensure_writable, write_json_atomic, write_text_atomic
    from adapler.plugins.token_drop.ort_session import create_session
    out = ensure_out_dir(out)
    ensure_writable(out / "packed.json", overwrite)
    models = {"dense": load_checkpoint(dense)[0], "pruned": load_checkpoint(pruned)[0]}
    tokenizer = load_checkpoint_tokenizer(pruned)
    texts, default_len = set_texts(set_name)
    max_length = max_length or default_len
    files = build_graphs(models, out / "graphs", int8)
    sessions = {k: create_session(p, threads=threads) for k, p in files.items()}
    results = {"set": set_name, "max_length": max_length, "threads": threads, "pruned": str(pruned),
               "dense": str(dense), "repeats": repeats, "warmup": warmup,
               "uptime": os.popen("uptime").read().strip(), "entries": []}
    for bs in batch_sizes:
        feeds = make_feeds(texts, tokenizer, bs, batch1_inputs if bs == 1 else n_batches, max_length)
        results["entries"].append(run_batch_size(sessions, feeds, models["pruned"], repeats, warmup))
        write_json_atomic(out / "packed.json", results)
    write_text_atomic(out / "packed.md", markdown(results))
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m adapler.bench.packed", description=__doc__.split("\n\n")[0])
    p.add_argument("--pruned", required=True, help="AdapLeR checkpoint directory")
    p.add_argument("--dense", required=True, help="dense (fine-tuned) checkpoint directory")
    p.add_argument("--set", dest="set_name", choices=sorted(SETS), default="mixed")
    p.add_argument("--max-length", type=int, default=None, help="default: the set's (mixed 256, pang-lee 512, vader 64)")
    p.add_argument("--batch-sizes", default="1,32")
    p.add_argument("--batches", type=int, default=4, help="batches per batch size > 1")
    p.add_argument("--batch1-inputs", type=int, default=32, help="inputs at batch size 1")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--int8", action="store_true", help="also the dynamic int8 forms")
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    try:
        sizes = tuple(int(v) for v in a.batch_sizes.split(","))
        if min(sizes) < 1 or a.batches < 1 or a.repeats < 1 or a.threads < 1:
            raise ValueError
    except ValueError:
        p.error("--batch-sizes takes positive integers separated by commas (e.g. 1,32); "
                "--batches, --repeats and --threads must be >= 1")
    from adapler.cli_args import exit_code
    try:
        res = run(a.pruned, a.dense, a.set_name, a.out, sizes, a.batches, a.batch1_inputs, a.repeats,
                  threads=a.threads, int8=a.int8, max_length=a.max_length, overwrite=a.overwrite)
    except Exception as e:  # the CLI's error classes: one line and their exit code, anything else a traceback
        code = exit_code(e)
        if code is None:
            raise
        print(f"error: {e}", file=sys.stderr)
        return code
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
