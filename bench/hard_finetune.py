"""Probe: does fine-tuning a trained AdapLeR model in hard mode (what inference runs) win back accuracy?

AdapLeR trains with soft removal (tokens fade out through a sigmoid of their CP score) and runs with hard
removal. This probe freezes the selector (CPs, eta, theta), so the token choice stays the trained one up to the
drift of the hidden states the CPs read, and fine-tunes the encoder and head for ``--epochs`` on the training
split with hard removal, as PoWER-BERT's re-training phase does for its retention. The task loss is CE, or with
``--distill A`` mixed with the KL to the dense ``--teacher`` model's logits (training.distill). Dev and test
accuracy and FLOPs speedup are printed and written to ``--json`` before the first step and after each epoch.
Nothing is saved as a checkpoint: the probe answers whether such a phase is worth adding to ``train``.

    PYTHONPATH=. python bench/hard_finetune.py CKPT --data DATA --json OUT.json [--lr 1e-5] [--epochs 2]
        [--distill 1.0 --teacher FT_CKPT]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from adapler.checkpoint import checkpoint_dir, load_checkpoint, load_checkpoint_tokenizer
from adapler.data import load_dataset
from adapler.evaluate import evaluate
from adapler.errors import OutputError
from adapler.files import ensure_writable, write_json_atomic
from adapler.training.auto import steps_per_epoch
from adapler.training.common import TrainData, linear_warmup, param_groups, seed_everything
from adapler.training.distill import DEFAULT_TEMPERATURE, distilled_task_loss


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--json", required=True, type=Path)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--distill", type=float, default=0.0, help="weight of the KL to --teacher (0: CE only)")
    ap.add_argument("--teacher", help="dense fine-tuned checkpoint (needed with --distill)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    args = ap.parse_args(argv)
    if args.distill > 0 and not args.teacher:
        ap.error("--distill needs --teacher (the dense fine-tuned checkpoint)")
    try:  # before any work; the probe then rewrites its own file after each epoch
        ensure_writable(args.json, args.overwrite, "--json")
    except OutputError as e:
        ap.error(str(e))
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    data = load_dataset(args.data)
    ckpt = checkpoint_dir(args.checkpoint)  # a run directory means its best/
    model, cfg = load_checkpoint(ckpt)
    tokenizer = load_checkpoint_tokenizer(ckpt)
    max_length, batch_size = cfg["max_length"], cfg["adapler"]["batch_size"]
    td = TrainData.make(data, tokenizer, max_length)
    teacher = load_checkpoint(checkpoint_dir(args.teacher))[0].eval() if args.distill > 0 else None
    for p in model.selector.parameters():
        p.requires_grad_(False)
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(param_groups(params, 0.01), lr=args.lr, eps=1e-12)
    sched = linear_warmup(opt, steps_per_epoch(len(td.train), batch_size) * args.epochs, 0.06)
    rows: list[dict] = []

    def record(tag: str, seconds: float | None = None) -> None:
        model.eval()
        dev = evaluate(model, data.dev, tokenizer, max_length, mode="hard")
        test = evaluate(model, data.test, tokenizer, max_length, mode="hard")
        rows.append({"after": tag, "train_seconds": seconds, "dev_accuracy": dev["accuracy"],
                     "dev_flops_speedup": dev["flops_speedup"], "test_accuracy": test["accuracy"],
                     "test_flops_speedup": test["flops_speedup"]})
        print(json.dumps(rows[-1]), flush=True)
        write_json_atomic(args.json, {"checkpoint": args.checkpoint, "data": args.data, "lr": args.lr,
                                      "distill": args.distill, "teacher": args.teacher, "rows": rows})

    record("start")
    for epoch in range(args.epochs):
        model.train()
        t0 = time.time()
        for b in td.epoch(batch_size, 1000 + epoch):
            o = model(b.input_ids, b.attention_mask, b.token_type_ids, mode="hard")
            target = None
            if teacher is not None:
                with torch.no_grad():
                    target = teacher(b.input_ids, b.attention_mask, b.token_type_ids, mode="dense").logits
            loss = distilled_task_loss(o.logits, b.labels, target, args.distill, DEFAULT_TEMPERATURE)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        record(f"epoch {epoch + 1}", round(time.time() - t0, 1))


if __name__ == "__main__":
    main()
