"""Try AdapLeR knob values on the quick preset's data (what `cli.py demo` trains), from one shared fine-tuned
model, and print dev per epoch and test of the selected epoch. How the preset's phi was chosen
(docs/results.md, "make demo").

    PYTHONPATH=. python bench/quick_preset.py --out runs/preset --name p0.05 --phi 0.05 --eta-lr 1e-2 --epochs 3
    PYTHONPATH=. python bench/quick_preset.py --out runs/preset --name t2 --phi 0.01 --target-speedup 2
    PYTHONPATH=. python bench/quick_preset.py --out runs/preset-pang --data pang-lee-reviews --max-eval 250 \
        --max-length 256 --auto --name auto   # the other data, with the `train` defaults
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from adapler import methods
from adapler.recipes import QUICK, evaluate_test, finished, quick_data, train_dense


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="root: finetune/ (shared) and one folder per --name")
    p.add_argument("--name", required=True)
    p.add_argument("--data", default=QUICK.data)
    p.add_argument("--max-train", type=int, default=QUICK.max_train)
    p.add_argument("--max-eval", type=int, default=QUICK.max_eval)
    p.add_argument("--max-length", type=int, default=QUICK.max_length)
    p.add_argument("--finetune-epochs", type=int, default=QUICK.finetune_epochs)
    p.add_argument("--auto", action="store_true", help="phi, eta lr and CP lr from the data (the `train` defaults)")
    p.add_argument("--phi", type=float, default=QUICK.phi)
    p.add_argument("--eta-lr", type=float, default=QUICK.eta_lr)
    p.add_argument("--cp-lr", type=float, default=QUICK.cp_lr)
    p.add_argument("--epochs", type=int, default=QUICK.adapler_epochs)
    p.add_argument("--target-speedup", type=float, default=None, help="default: none (the knob alone; the "
                   f"demo's preset steers to {QUICK.target_speedup})")
    a = p.parse_args(argv)
    preset = dataclasses.replace(QUICK, data=a.data, max_train=a.max_train, max_eval=a.max_eval,
                                 max_length=a.max_length, finetune_epochs=a.finetune_epochs)
    data = quick_data(preset)
    ft = a.out / "finetune"
    if not finished(ft):
        train_dense(ft, data, preset)
    main_method = methods.get(methods.MAIN)
    knobs = {} if a.auto else {"phi": a.phi, "eta_lr": a.eta_lr, "cp_lr": a.cp_lr}
    cfg = main_method.config(epochs=a.epochs, saliency_epochs=min(3, preset.finetune_epochs),
                             target_speedup=a.target_speedup, **knobs)
    run = a.out / a.name
    main_method.train(data, ft, run, cfg, resume=(run / "run_state.json").exists())
    result = {"options": vars(a) | {"out": str(a.out)}, "dev": [
        {k: r[k] for k in ("epoch", "dev_accuracy", "dev_flops_speedup", "phi")}
        for r in json.loads((run / "history.json").read_text())]}
    rows = evaluate_test(data, {"finetuned_test": (ft / "best", "dense"), "selected_test": (run / "best", "hard")})
    for label, m in rows.items():
        result[label] = {"accuracy": m["accuracy"], "flops_speedup": m["flops_speedup"]}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
