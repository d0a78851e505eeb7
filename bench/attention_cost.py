"""Why PoWER-BERT's latency trails its FLOPs on long inputs: it needs the attention probabilities
(significance = attention received), so its layers cannot use the fused ``scaled_dot_product_attention``.

    PYTHONPATH=. python bench/attention_cost.py [--length 496] [--threads 2]

Times one MiniLM-sized attention (12 heads x 32) at batch 1 and 32: explicit softmax that returns the
head-averaged probabilities vs SDPA. A measurement script, not a test.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F


def time_ms(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--length", type=int, default=496)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for batch, repeats in ((1, 20), (32, 3)):
        q, k, v = (torch.randn(batch, 12, args.length, 32) for _ in range(3))
        bias = torch.zeros(batch, 1, 1, args.length)

        def explicit():
            probs = (q @ k.transpose(-1, -2) / 32 ** 0.5 + bias).softmax(-1)
            return probs @ v, probs.mean(1)

        def sdpa():
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)

        a, b = time_ms(explicit, repeats), time_ms(sdpa, repeats)
        print(f"batch {batch:2d}, T {args.length}: explicit + probs {a:8.2f} ms, SDPA {b:8.2f} ms ({a / b:.1f}x)")


if __name__ == "__main__":
    main()
