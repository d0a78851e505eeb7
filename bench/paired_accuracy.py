"""Paired accuracy difference between models evaluated on the same examples, with its uncertainty.

"Within 1 point" is read on a test split of a few hundred or thousand texts, where one text is 0.1-0.4
point. Two models scored on the same texts differ only where their predictions differ, so the paired
difference is far more precise than two separate accuracies, and its interval says whether a gap is a
measurement or noise. For each model against the base (both ``cli.py evaluate --json`` files, which hold
each example's prediction; the statistics are ``adapler/stats.py``, shared with ``bench`` and ``verify``):

- ``diff_points``: accuracy difference in points (model minus base);
- ``ci95_points``: 95 % percentile interval of that difference from a paired bootstrap over examples;
- ``mcnemar_p``: exact two-sided McNemar test (binomial on the texts only one of the two gets right);
- ``only_base_right`` / ``only_model_right``: those texts' counts;
- ``within_points_at_95``: the interval's lower end is at or above ``-drop`` (the loss is smaller than
  ``drop`` points with 95 % confidence); False does not mean the loss is larger, only that this split
  cannot tell.

    PYTHONPATH=. python bench/paired_accuracy.py BASE.json MODEL.json [MODEL.json ...] [--drop 1.0]
        [--samples 10000] [--seed 0] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from adapler.bench.profile_ort import emit_json, refuse_taken_json
from adapler.stats import paired_difference


def read_predictions(path: str | Path) -> dict:
    """The ``predictions`` of an ``evaluate --json`` file, with its data and split; ValueError if it has none."""
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable JSON file ({e})") from None
    p = m.get("predictions") if isinstance(m, dict) else None
    if not isinstance(p, dict) or not all(k in p for k in ("ids", "labels", "preds")):
        raise ValueError(f"{path} has no per-example predictions; write it again with "
                         "`python cli.py evaluate CKPT --data DATA --split test --json FILE` (files written before "
                         "predictions were recorded lack them)")
    return {"path": str(path), "data": m.get("data"), "split": m.get("split"), "ids": list(p["ids"]),
            "correct": np.asarray(p["labels"]) == np.asarray(p["preds"])}


def compare_files(base: str | Path, models: list[str | Path], samples: int = 10000, seed: int = 0,
                  drop: float = 1.0) -> dict:
    """:func:`paired_difference` of each model file against the base file; ValueError when a file was not
    evaluated on the same examples (data, split, example ids and their order)."""
    b = read_predictions(base)
    out = {"base": b["path"], "data": b["data"], "split": b["split"], "samples": samples, "seed": seed, "models": {}}
    for path in models:
        m = read_predictions(path)
        if (m["data"], m["split"]) != (b["data"], b["split"]) or m["ids"] != b["ids"]:
            raise ValueError(f"{path} was evaluated on other examples than {base} ({m['data']}/{m['split']}, "
                             f"{len(m['ids'])} ids against {b['data']}/{b['split']}, {len(b['ids'])}); evaluate both "
                             "on the same --data, --split and --seed")
        out["models"][str(path)] = paired_difference(b["correct"], m["correct"], samples, seed, drop)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="paired accuracy difference of models against a base, with a 95 % interval")
    ap.add_argument("base", type=Path, help="evaluate --json file of the base model (e.g. the fine-tuned one)")
    ap.add_argument("models", type=Path, nargs="+", help="evaluate --json files of the models to compare")
    ap.add_argument("--drop", type=float, default=1.0, help="the accuracy loss (points) the verdict is about")
    ap.add_argument("--samples", type=int, default=10000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the result here (refuses to overwrite)")
    args = ap.parse_args(argv)
    refuse_taken_json(args.json)
    if args.samples < 100 or args.drop < 0:
        raise SystemExit("error: --samples must be at least 100 and --drop not negative")
    try:
        out = compare_files(args.base, args.models, args.samples, args.seed, args.drop)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    for path, r in out["models"].items():  # one line each for people; the JSON follows on stdout
        lo, hi = r["ci95_points"]
        print(f"{path}: {r['diff_points']:+.2f} points (95 % CI {lo:+.2f} to {hi:+.2f}; McNemar p {r['mcnemar_p']:.3f}; "
              f"within {args.drop:g} point(s) at 95 %: {'yes' if r['within_points_at_95'] else 'cannot tell'})",
              file=sys.stderr)
    emit_json(out, args.json)


if __name__ == "__main__":
    main()
