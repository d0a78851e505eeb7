"""A labelled dataset's training split plus unlabelled in-domain sentences labelled by a fine-tuned model.

Distillation on extra teacher-labelled text is the usual lever when a small task set limits a compressed
student (TinyBERT's data augmentation). Measured on vader-movies at 3x (docs/results.md §1h), it did not help:
+0.19 points with 8,454 sentences (p 0.91), -2.08 with 16,908 (p 0.018). This writes a folder that
``cli.py train --data`` reads as given:

- ``train.csv``: the dataset's own training texts and labels, then ``--n`` sentences cut from ``--pool``'s
  texts (its labels ignored; 6-45 words each, deduplicated) with the ``--teacher`` checkpoint's predicted class;
- ``dev.csv``, ``test.csv``: the dataset's own, untouched.

A pool sentence is left out when it equals any text of the dataset (after lower-casing and dropping
non-alphanumerics) or contains a dev or test text longer than 20 such characters, so nothing held out is
trained on.

    PYTHONPATH=. python bench/pseudo_labelled_data.py --data vader-movies --pool pang-lee-reviews \\
        --teacher runs/vader/ft --n 8454 --out runs/vader-aug/data
"""
from __future__ import annotations

import argparse
import csv
import random
import re
import sys

from adapler.checkpoint import checkpoint_dir, load_checkpoint, load_checkpoint_tokenizer
from adapler.data import Example, load_dataset
from adapler.errors import OutputError
from adapler.evaluate import predict
from adapler.files import ensure_writable


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


def pool_sentences(texts: list[str], min_words: int = 6, max_words: int = 45) -> list[str]:
    """Sentences of ``texts`` (split after . ! ?), whitespace-normalised, deduplicated, sorted."""
    out = set()
    for text in texts:
        for s in re.split(r"(?<=[.!?])\s+", text.replace("\n", " ")):
            words = s.split()
            if min_words <= len(words) <= max_words:
                out.add(" ".join(words))
    return sorted(out)


def without_held_out(sentences: list[str], held_out: list[str], seen: list[str]) -> list[str]:
    """``sentences`` minus those equal to a ``seen`` text or containing a ``held_out`` one (normalised)."""
    norms = [_norm(s) for s in sentences]
    big = "\x00".join(norms)
    inside = [h for h in {_norm(t) for t in held_out} if len(h) > 20 and h in big]
    equal = {_norm(t) for t in seen}
    return [s for s, n in zip(sentences, norms) if n not in equal and not any(h in n for h in inside)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the labelled dataset (built-in name, file or folder)")
    ap.add_argument("--pool", required=True, help="where the unlabelled sentences come from (its labels are ignored)")
    ap.add_argument("--teacher", required=True, help="the fine-tuned checkpoint (or run folder) that labels them")
    ap.add_argument("--n", type=int, required=True, help="how many pool sentences to add (a seeded sample)")
    ap.add_argument("--out", required=True, help="a new (or empty) folder for train.csv, dev.csv, test.csv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true", help="replace the CSV files of an existing --out")
    args = ap.parse_args(argv)
    try:  # before any work: an existing folder of CSVs is replaced only with --overwrite
        out = ensure_writable(args.out, args.overwrite, "--out")
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 5
    data, pool = load_dataset(args.data), load_dataset(args.pool)
    sentences = pool_sentences([e.text for e in pool.train + pool.dev + pool.test])
    kept = without_held_out(sentences, [e.text for e in data.dev + data.test],
                            [e.text for e in data.train + data.dev + data.test])
    random.Random(args.seed).shuffle(kept)
    kept = kept[:args.n]
    ckpt = checkpoint_dir(args.teacher)
    model, cfg = load_checkpoint(ckpt)
    tokenizer = load_checkpoint_tokenizer(ckpt)
    rows = [Example(id=f"pool:{i}", text=s, label=0) for i, s in enumerate(kept)]
    preds = predict(model, rows, tokenizer, cfg["max_length"], 64, "hard", "labelling", None)["preds"].tolist()
    print(f"{len(sentences)} pool sentences, {len(kept)} added; "
          f"{len(sentences) - len(kept)} left over or held out; labelled "
          + ", ".join(f"{name} {preds.count(i)}" for i, name in enumerate(data.label_names)))
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": [(e.text, e.label) for e in data.train] + list(zip(kept, preds)),
              "dev": [(e.text, e.label) for e in data.dev], "test": [(e.text, e.label) for e in data.test]}
    for name, items in splits.items():
        with open(out / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((t, data.label_names[y]) for t, y in items)
    print(f"wrote {out}/train.csv ({len(splits['train'])} rows), dev.csv, test.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
