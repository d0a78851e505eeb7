"""A human-made (partial) rationale set from the VADER sentiment lexicon (docs/results.md §7).

``vader_lexicon.txt`` ships in the vaderSentiment sdist that the vader-* corpora already come from
(``corpora.py`` downloads it once, checksummed). Each line is ``word<TAB>mean<TAB>std<TAB>[ten ratings]``,
the mean of ten people's ratings on a -4 (extremely negative) .. +4 (extremely positive) scale.

Rationale rule: a word is a rationale word when ``|mean| >= threshold`` (default 1.0, "clearly
non-neutral": at least a slight lean on average over ten raters; 5,830 of the 7,519 entries).

Alignment rule (tokenization): words are the tokenizer's own pre-tokenized words (for BERT: split on
whitespace and punctuation, so "isn't" is "isn", "'", "t"), looked up lower-cased. Every word piece of a
rationale word inherits the word's label ("un ##watch ##able" are all 1). Special tokens are never
rationale tokens. Lexicon entries that the pre-tokenizer splits (emoticons such as ":)", contractions)
therefore never match; that part of the lexicon is not used.
"""
from __future__ import annotations

from pathlib import Path

from .data import DataError

THRESHOLD = 1.0
LEXICON_MEMBER = "vaderSentiment/vader_lexicon.txt"


def parse_lexicon(text: str) -> dict[str, float]:
    """word -> mean human rating, from the lines of ``vader_lexicon.txt``."""
    out: dict[str, float] = {}
    for line in text.split("\n"):
        parts = line.rstrip("\r").split("\t")
        if len(parts) < 2 or not parts[0]:
            continue
        try:
            out[parts[0].lower()] = float(parts[1])
        except ValueError:
            raise DataError(f"vader_lexicon.txt has a malformed line {line[:60]!r}; "
                            "delete the cached vaderSentiment archive and retry") from None
    return out


def load_vader_lexicon(root: str | Path | None = None) -> dict[str, float]:
    """The VADER lexicon from the cached (or freshly pip-downloaded) vaderSentiment sdist."""
    from .corpora import _ARCHIVES, _fetch, _read_member, cache_root
    root = Path(root) if root is not None else cache_root()
    archive = _fetch(_ARCHIVES["vader"], root / "downloads")
    return parse_lexicon(_read_member(archive, LEXICON_MEMBER).decode("utf-8"))


def rationale_words(lexicon: dict[str, float], threshold: float = THRESHOLD) -> set[str]:
    if not threshold > 0:
        raise ValueError(f"the lexicon threshold must be > 0, got {threshold!r}")
    return {w for w, m in lexicon.items() if abs(m) >= threshold}


def token_labels(text: str, tokenizer, words: set[str], max_length: int) -> list[int]:
    """Per token of ``tokenizer(text)`` (specials included, truncated to ``max_length``): 1 for every piece
    of a rationale word, else 0. Needs a fast tokenizer (word ids and character offsets)."""
    enc = tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    word_ids = enc.word_ids()
    offsets = enc["offset_mapping"]
    spans: dict[int, tuple[int, int]] = {}
    for w, (a, b) in zip(word_ids, offsets):
        if w is not None:
            lo, hi = spans.get(w, (a, b))
            spans[w] = (min(lo, a), max(hi, b))
    is_word = {w: text[a:b].lower() in words for w, (a, b) in spans.items()}
    return [int(w is not None and is_word[w]) for w in word_ids]
