"""How long `explain` takes for one long text on the CPU (issue: explanations; docs/results.md §7).

    python -m adapler.bench.explain_latency --ckpt runs/vader/adapler-phi0.01 [--export DIR] --length 512 --json FILE

The text is the first pang-lee-reviews review with at least ``--length`` tokens (the corpus is fetched on
first use), explained at batch 1 with the checkpoint's max length raised to ``--length`` (a vader-movies
model is trained at 64 tokens; MiniLM has 512 positions, so the model runs, on inputs longer than it was
trained on). Reported: the median of ``--repeats`` calls of ``explain_texts`` (model loaded once) and of a
plain hard-mode forward on the same tokens (their ratio is explain's overhead, which load on a shared
machine changes less than the times themselves), the
same for the ONNX export if given (``explain_onnx``: session creation included, it is per call), and the
one-off model load. Timings on a shared machine are noisy; the median of a few repeats is what we report.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def long_text(tokenizer, length: int) -> str:
    from adapler.data import load_dataset
    ds = load_dataset("pang-lee-reviews")
    for e in ds.test + ds.dev + ds.train:
        if len(tokenizer(e.text, truncation=False, verbose=False)["input_ids"]) >= length:
            return e.text
    raise SystemExit(f"no pang-lee review has {length} tokens")


def median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def measure(ckpt: str, export: str | None, length: int, repeats: int, threads: int | None) -> dict:
    import torch

    from adapler.checkpoint import checkpoint_dir
    from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer
    from adapler.explain import explain_onnx, explain_texts
    if threads:
        torch.set_num_threads(threads)
    t = time.perf_counter()
    ckpt_dir = checkpoint_dir(ckpt)
    model, cfg = load_checkpoint(ckpt_dir)
    tokenizer = load_checkpoint_tokenizer(ckpt_dir)
    load_s = time.perf_counter() - t
    text = long_text(tokenizer, length)
    out: dict = {"checkpoint": str(ckpt_dir), "method": cfg["method"], "trained_max_length": cfg["max_length"],
                 "length": length, "repeats": repeats, "threads": torch.get_num_threads(), "model_load_s": load_s}
    for n in sorted({cfg["max_length"], length}):
        (e,) = explain_texts(model, tokenizer, [text], n, cfg["label_names"])
        med, times = median_seconds(lambda: explain_texts(model, tokenizer, [text], n, cfg["label_names"]), repeats)
        enc = tokenizer(text, truncation=True, max_length=n, return_tensors="pt")

        def forward():
            with torch.no_grad():
                model(enc["input_ids"], enc["attention_mask"], mode="hard")
        fwd, _ = median_seconds(forward, repeats)
        out[f"torch_{n}"] = {"tokens": len(e.tokens), "kept_last_layer": len(e.kept[-1]), "median_s": med,
                             "times_s": times, "plain_forward_median_s": fwd, "explain_over_forward": med / fwd}
    if export:
        med, times = median_seconds(lambda: explain_onnx(export, [text]), repeats)
        (e,) = explain_onnx(export, [text])
        out["onnx"] = {"export": export, "tokens": len(e.tokens), "median_s": med, "times_s": times,
                       "note": "the export's own max length; session creation included"}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--export", default=None, help="export directory made with --kept-positions")
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    res = measure(args.ckpt, args.export, args.length, args.repeats, args.threads)
    print(json.dumps(res, indent=1))
    if args.json:
        from adapler.files import write_json_atomic
        write_json_atomic(args.json, res, overwrite=False)


if __name__ == "__main__":
    main()
