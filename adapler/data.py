"""Labelled text data: built-in stand-in corpora (``corpora.py``), local CSV/TSV/JSONL files (``local_files.py``),
optional Hugging Face datasets, seeded stratified splits, and tokenisation into padded tensors. See docs/data.md §2."""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch



class DataError(ValueError):
    """A user-facing, one-line problem with the data and how to fix it."""


@dataclass(frozen=True)
class Example:
    id: str  # stable: keys cached saliency targets, so it must not depend on the split or the seed
    text: str
    label: int
    text_pair: str | None = None


@dataclass
class Dataset:
    name: str
    label_names: list[str]
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    notes: dict[str, int]
    note: str = ""  # one line on how a local file was read when flags and column names did not settle it

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return any(e.text_pair is not None for e in self.train)

    def fingerprint(self, splits: Sequence[str] = ("train", "dev")) -> str:
        """Hash of the label names and every example's content (text, pair, label, in order): equal only
        for the same data, whatever the file is called or where it lies."""
        h = hashlib.sha256(json.dumps(self.label_names).encode())
        for name in splits:
            for e in self.split(name):
                h.update(json.dumps([name, e.text, e.text_pair, e.label], ensure_ascii=False).encode())
        return h.hexdigest()[:16]

    def split(self, name: str) -> list[Example]:
        if name not in ("train", "dev", "test"):
            raise DataError(f"unknown split {name!r}; use one of train, dev, test")
        return getattr(self, name)

    def summary(self) -> str:
        notes = ", ".join(f"{k}={v}" for k, v in sorted(self.notes.items()) if v)
        return (f"{self.name}: train {len(self.train)} / dev {len(self.dev)} / test {len(self.test)}, "
                f"{self.num_labels} classes ({', '.join(self.label_names)})" + (f"; {notes}" if notes else "")
                + (f"; {self.note}" if self.note else ""))


_SPLIT_80_10_10 = (0.8, 0.1, 0.1)


# ---------------------------------------------------------------------------------------- split helpers

def _by_label(rows: list[Example]) -> dict[int, list[Example]]:
    out: dict[int, list[Example]] = {}
    for e in rows:
        out.setdefault(e.label, []).append(e)
    return out


def _stratified(rows: list[Example], fracs: Sequence[float], seed: int, what: str,
                names: Sequence[str] | None = None) -> list[list[Example]]:
    """Seeded per-class shuffle and cut; every later split gets at least one example of every class.
    ``names`` (the label names) make the error name the class rather than its index."""
    rng = random.Random(f"split:{seed}")  # str seeds hash via sha512: stable across runs and PYTHONHASHSEED
    by_label = _by_label(rows)
    out: list[list[Example]] = [[] for _ in fracs]
    for label in sorted(by_label):
        group = list(by_label[label])
        if len(group) < len(fracs):
            shown = repr(names[label]) if names else label
            raise DataError(f"{what}: label {shown} has only {len(group)} example(s), a stratified split needs "
                            f"at least {len(fracs)}; add examples, drop the class, or provide train/dev/test files")
        rng.shuffle(group)
        sizes = [max(1, round(len(group) * f)) for f in fracs[1:]]
        cuts = [len(group) - sum(sizes)]
        for s in sizes:
            cuts.append(cuts[-1] + s)
        for i, part in enumerate(out):
            part.extend(group[(cuts[i - 1] if i else 0):cuts[i]])
    for part in out:
        rng.shuffle(part)  # mix the classes so that slicing a split is not label-ordered
    return out


def _subsample(rows: list[Example], k: int | None, seed: int) -> list[Example]:
    """Seeded subset of size k with per-class counts proportional to the full split (largest remainder)."""
    if k is not None and k < 1:
        raise DataError(f"max_train/max_eval must be at least 1, got {k}")
    if k is None or k >= len(rows):
        return rows
    rng = random.Random(f"subsample:{seed}")
    by_label = _by_label(rows)
    labels = sorted(by_label)
    exact = {lab: k * len(by_label[lab]) / len(rows) for lab in labels}
    take = {lab: int(exact[lab]) for lab in labels}
    for lab in sorted(labels, key=lambda x: (int(exact[x]) - exact[x], x))[:k - sum(take.values())]:
        take[lab] += 1
    chosen = {id(e) for lab in labels for e in rng.sample(by_label[lab], take[lab])}
    return [e for e in rows if id(e) in chosen]


# ------------------------------------------------------------------------ shared with local_files.py

_EXTS = (".csv", ".tsv", ".jsonl", ".json")


def _label_key(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _sorted_labels(keys: set[str]) -> list[str]:
    if all(re.fullmatch(r"-?\d+", k) for k in keys):
        return sorted(keys, key=int)  # ints sort numerically: "-1" < "1" < "10"
    return sorted(keys)


def _check_columns(where: str, columns: Sequence[Any], cols: tuple[str, str | None, str]) -> None:
    for col, flag in zip(cols, ("--text-col", "--text-pair-col", "--label-col")):
        if col is not None and col not in columns:
            raise DataError(f"{where} has no column {col!r} (columns: {', '.join(map(str, columns))}); "
                            f"set {flag} to the right one")


# ---------------------------------------------------------------------------------------- Hugging Face

_HF_COLUMNS = {"glue/sst2": ("sentence", None), "glue/cola": ("sentence", None),
               "glue/mrpc": ("sentence1", "sentence2"), "glue/rte": ("sentence1", "sentence2"),
               "glue/qnli": ("question", "sentence"), "glue/qqp": ("question1", "question2"),
               "glue/mnli": ("premise", "hypothesis"), "imdb": ("text", None), "ag_news": ("text", None),
               "dbpedia_14": ("content", None)}


def _load_hf(spec: str, text_col: str | None, pair_col: str | None, label_col: str | None,
             seed: int) -> tuple[list[str], list[list[Example]], dict[str, int]]:
    from .corpora import BUILTIN_DATASETS
    try:
        import datasets as hf  # optional: heavy, and only needed for Hub names
    except ImportError:
        raise DataError(f"{spec!r} is not a built-in dataset ({', '.join(BUILTIN_DATASETS)}) nor an existing "
                        f"file/directory; to load it from the Hugging Face Hub install the optional extra: "
                        f"pip install 'adapler[datasets]'") from None
    path, config = spec, None  # "name:config" in general; GLUE's familiar "glue/sst2" shorthand too
    if ":" in spec:
        path, config = spec.split(":", 1)
    elif spec.startswith(("glue/", "super_glue/")):
        path, config = spec.split("/", 1)
    key = spec if spec in _HF_COLUMNS else spec.rsplit("/", 1)[-1]
    text_col = text_col or _HF_COLUMNS.get(key, ("text", None))[0]
    pair_col = pair_col or _HF_COLUMNS.get(key, ("text", None))[1]
    label_col = label_col or "label"
    try:
        dd = hf.load_dataset(path, config)
    except Exception as e:  # offline, unknown name, missing config: all end the same way for the user
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DataError(f"could not load Hugging Face dataset {spec!r} ({msg}); check the name and network "
                        f"access, or use a built-in name or a local CSV") from None
    if "train" not in dd:
        raise DataError(f"{spec!r} has no train split (splits: {', '.join(dd)})")
    _check_columns(repr(spec), dd["train"].column_names, (text_col, pair_col, label_col))
    feature = dd["train"].features.get(label_col)
    if getattr(feature, "names", None):
        label_names = [str(n) for n in feature.names]
        index = {str(i): i for i in range(len(label_names))}
    else:
        label_names = _sorted_labels({_label_key(v) for v in dd["train"][label_col] if v is not None})
        index = {k: i for i, k in enumerate(label_names)}
    notes = {"dropped_empty": 0, "dropped_unlabelled": 0}

    def convert(split: str) -> list[Example]:
        ds = dd[split]
        texts, labels = list(ds[text_col]), list(ds[label_col])
        pairs = list(ds[pair_col]) if pair_col else [None] * len(texts)
        out = []
        for i, (t, p, lab) in enumerate(zip(texts, pairs, labels)):
            k = None if lab is None else _label_key(lab)
            if k not in index:
                notes["dropped_unlabelled"] += 1  # GLUE test rows carry label -1
            elif not (t or "").strip() or (pair_col and not (p or "").strip()):
                notes["dropped_empty"] += 1
            else:
                out.append(Example(f"{spec}:{split}:{i}", t.strip(), index[k], p.strip() if pair_col else None))
        return out

    train = convert("train")
    val = "validation_matched" if "validation_matched" in dd else ("validation" if "validation" in dd else None)
    test = convert("test") if "test" in dd else []
    if test:
        dev = convert(val) if val else None
    else:  # test labels hidden (GLUE) or no test split: the official validation becomes the test set
        test = convert(val) if val else []
        dev = None
    if not test:
        train, test = _stratified(train, (0.9, 0.1), seed, spec, label_names)
    if dev is None:
        train, dev = _stratified(train, (0.9, 0.1), seed, spec, label_names)
    return label_names, [train, dev, test], notes


# ---------------------------------------------------------------------------------------- entry point

def load_dataset(spec: str, *, text_col: str | None = None, text_pair_col: str | None = None,
                 label_col: str | None = None, seed: int = 0, max_train: int | None = None,
                 max_eval: int | None = None, encoding: str = "utf-8",
                 cache_dir: str | Path | None = None) -> Dataset:
    """A built-in name, a local file/directory, or (with the optional `datasets` extra) a Hub name."""
    from .corpora import BUILTIN_DATASETS, cache_root, load_builtin  # corpora builds this module's Examples
    from .local_files import load_local
    path = Path(spec).expanduser()
    note = ""
    if spec in BUILTIN_DATASETS:
        rows, label_names, notes = load_builtin(spec, Path(cache_dir) if cache_dir else cache_root())
        fracs = (4 / 6, 1 / 6, 1 / 6) if spec == "pang-lee-reviews" else _SPLIT_80_10_10  # 1000/250/250
        splits = _stratified(rows, fracs, seed, spec, label_names)
        notes = dict(notes)
    elif path.exists():
        label_names, splits, notes, note = load_local(path, (text_col, text_pair_col, label_col), encoding, seed)
    elif path.suffix.lower() in _EXTS or spec.startswith((".", "/", "~")):
        raise DataError(f"{spec} does not exist; pass an existing file/directory or a built-in name "
                        f"({', '.join(BUILTIN_DATASETS)})")
    else:
        label_names, splits, notes = _load_hf(spec, text_col, text_pair_col, label_col, seed)
    train, dev, test = splits
    if max_train is not None and max_train < len(train):
        notes["subsampled_train_from"] = len(train)
    if max_eval is not None and max_eval < max(len(dev), len(test)):
        notes["subsampled_eval_from"] = len(test)
    return Dataset(spec, label_names, _subsample(train, max_train, seed), _subsample(dev, max_eval, seed),
                   _subsample(test, max_eval, seed), notes, note)


# ---------------------------------------------------------------------------------------- tensors

@dataclass
class Encoded:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    n_truncated: int
    truncated: torch.Tensor | None = None  # per-example bool, so batches can report their own n_truncated

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


def encode(examples: list[Example], tokenizer: Any, max_length: int) -> Encoded:
    """Tokenise, truncate to max_length and pad to the longest example in the list (not to max_length)."""
    if not examples:
        raise DataError("encode() got no examples; check the split is not empty (max_train/max_eval > 0)")
    texts = [e.text for e in examples]
    pairs = [e.text_pair or "" for e in examples] if any(e.text_pair is not None for e in examples) else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding="longest", return_tensors="pt")
    # Only rows that hit max_length can have been truncated: re-tokenise just those, untruncated, to be sure
    # (verbose=False silences the "longer than the maximum" warning).
    truncated = torch.zeros(len(examples), dtype=torch.bool)
    cand = (enc["attention_mask"].sum(1) >= max_length).nonzero().flatten().tolist()
    if cand:
        full = tokenizer([texts[i] for i in cand], [pairs[i] for i in cand] if pairs else None, truncation=False,
                         padding=False, verbose=False, return_attention_mask=False, return_token_type_ids=False)
        truncated[cand] = torch.tensor([len(ids) > max_length for ids in full["input_ids"]])
    input_ids = enc["input_ids"]
    tt = enc.get("token_type_ids")
    return Encoded(input_ids=input_ids, attention_mask=enc["attention_mask"],
                   token_type_ids=tt if tt is not None else torch.zeros_like(input_ids),
                   labels=torch.tensor([e.label for e in examples], dtype=torch.long),
                   ids=[e.id for e in examples], n_truncated=int(truncated.sum()), truncated=truncated)


def batches(enc: Encoded, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[Encoded]:
    """Slices of `enc`, each trimmed to its own longest row (padding is compute); with shuffle, a
    torch.Generator(seed) permutation."""
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    n = len(enc)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if shuffle else None
    for start in range(0, n, batch_size):
        idx: Any = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
        ids = [enc.ids[i] for i in idx.tolist()] if order is not None else enc.ids[idx]
        trunc = enc.truncated[idx] if enc.truncated is not None else None
        mask = enc.attention_mask[idx]
        width = max(1, int(mask.sum(dim=1).max()))
        yield Encoded(enc.input_ids[idx][:, :width], mask[:, :width], enc.token_type_ids[idx][:, :width],
                      enc.labels[idx], ids, int(trunc.sum()) if trunc is not None else 0, trunc)
