"""Probe: the eager torch model at batch 1 with each CPU implementation of ``adapler::token_drop``.

The custom op's CPU kernel is ``token_drop_torch`` (plugins/token_drop/torch_impl.py); ``token_drop_std``, the
standard-op form that ``model.std.onnx`` is traced from, computes the same outputs with more ops. At batch 1 and
tens of tokens each op costs microseconds of dispatch and the op runs once per layer, so the kernel shows in the
model's latency. This times, paired and interleaved (ABBA per repeat) on the same test texts at batch 1: the
dense checkpoint, and the pruned checkpoint with each kernel, after checking that both kernels give the same
kept lengths and logits.

    PYTHONPATH=. python bench/torch_drop_kernel.py PRUNED_CKPT DENSE_CKPT --data DATA [--texts 128]
        [--repeats 4] [--threads 2] [--json OUT]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import adapler.ops as ops
from adapler.bench.profile_ort import emit_json, refuse_taken_json

KERNELS = {"token_drop_torch": ops.token_drop_torch, "token_drop_std": ops.token_drop_std}


def run(pruned: str, dense: str, data: str, texts: int = 128, repeats: int = 4, threads: int = 2) -> dict:
    from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer
    from adapler.data import load_dataset

    torch.set_num_threads(threads)
    model, cfg = load_checkpoint(pruned)
    base, _ = load_checkpoint(dense)
    model.eval(), base.eval()
    tokenizer = load_checkpoint_tokenizer(pruned)
    max_length = int(cfg.get("max_length") or 512)
    enc = [tokenizer(e.text, return_tensors="pt", truncation=True, max_length=max_length)
           for e in load_dataset(data).test[:texts]]
    current = ops.token_drop_torch

    def call(name: str, e) -> object:
        if name == "dense":
            return base(e["input_ids"], e["attention_mask"], mode="dense")
        ops.token_drop_torch = KERNELS[name]  # the op's body looks this name up at call time
        return model(e["input_ids"], e["attention_mask"], mode="hard")

    names = ["dense", *KERNELS]
    times = {n: [[] for _ in enc] for n in names}
    try:
        with torch.inference_mode():
            for e in enc:  # agreement, then one untimed call of each
                a, b = (call(k, e) for k in KERNELS)
                if not (torch.equal(a.kept_lengths, b.kept_lengths) and torch.equal(a.logits, b.logits)):
                    raise RuntimeError("the two kernels disagree; their times would not compare")
                call("dense", e)
            for rep in range(repeats):
                order = names if rep % 2 == 0 else names[::-1]
                for i, e in enumerate(enc):
                    for n in order:
                        t0 = time.perf_counter()
                        call(n, e)
                        times[n][i].append(time.perf_counter() - t0)
    finally:
        ops.token_drop_torch = current
    ms = {n: [1e3 * statistics.median(t) for t in times[n]] for n in names}
    out = {"pruned": pruned, "dense": dense, "texts": len(enc), "repeats": repeats, "threads": threads,
           "mean_ms": {n: statistics.fmean(v) for n, v in ms.items()}}
    out["speedup_vs_dense_median_ratio"] = {k: statistics.median(d / p for d, p in zip(ms["dense"], ms[k]))
                                            for k in KERNELS}
    out["token_drop_torch_vs_std_median_ratio"] = statistics.median(
        s / t for s, t in zip(ms["token_drop_std"], ms["token_drop_torch"]))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="eager torch batch-1 latency with each token_drop CPU kernel")
    ap.add_argument("pruned", help="pruned checkpoint (a method that drops through token_drop, e.g. AdapLeR)")
    ap.add_argument("dense", help="its fine-tuned dense checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--texts", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    args = ap.parse_args(argv)
    refuse_taken_json(args.json)
    emit_json(run(args.pruned, args.dense, args.data, args.texts, args.repeats, args.threads), args.json)


if __name__ == "__main__":
    main()
