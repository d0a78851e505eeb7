"""rationales: faithfulness arithmetic on a constructed model, ranking metrics, the lexicon alignment rule."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from adapler.lexicon import parse_lexicon, rationale_words, token_labels
from adapler.rationales import (BINS, _faithfulness, average_precision, bin_size, f1_at, gradient_scores,
                                judge_probs, paired_bootstrap, rationale_report, top_tokens)

KEY = 7  # the one token the constructed judge reads
TEXTS = ["A gorgeous, witty, seductive movie.",
         "The plot is nothing but boilerplate cliches from start to finish, and the acting is wooden.",
         "It's not a great film, but it is a worthwhile one, with a few genuinely funny moments."]


def tiny_model(method: str):
    """A random 4-layer model; AdapLeR's CPs far from uniform so that it drops tokens."""
    from adapler.encoder import PrunedBertClassifier
    from adapler.selectors import build_selector
    from conftest import tiny_config
    torch.manual_seed(0)
    cfg = tiny_config(layers=4)
    model = PrunedBertClassifier(cfg, 2, build_selector(method, cfg)).eval()
    if method == "adapler":
        with torch.no_grad():
            for cp in model.selector.cps:
                cp.fc1.weight.normal_(0.0, 1.0)
                cp.fc2.weight.normal_(0.0, 1.0)
            model.selector.eta.fill_(0.9)
    return model


class CountJudge(nn.Module):
    """logit_1 - logit_0 = 2 * (number of KEY tokens) - 1: the prediction hangs on one token."""
    num_labels = 2

    def forward(self, ids, mask, token_type_ids=None, mode="dense"):
        n = ((ids == KEY) & (mask > 0)).sum(1).float()
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(n), 2 * n - 1], dim=1))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_comprehensiveness_and_sufficiency_of_a_known_ranking():
    # [CLS]=1, 19 filler tokens (5) and one KEY, [SEP]=2: 20 candidates.
    row = [1] + [5] * 10 + [KEY] + [5] * 9 + [2]
    cands = np.arange(1, 21)
    judge = CountJudge()
    full = judge_probs(judge, [row])
    y = full.argmax(1)
    assert y.tolist() == [1]
    p_with, p_without = sigmoid(1), sigmoid(-1)
    good = np.zeros(len(row))
    good[11] = 1.0  # KEY first
    bad = np.zeros(len(row))
    bad[11] = -1.0  # KEY last
    comp, suff = _faithfulness(judge, [row], [cands], [good], full, y, "dense")
    # Every bin removes at least one token, so the good ranking always removes KEY, and keeping the top k keeps it.
    assert np.allclose(comp, p_with - p_without) and np.allclose(suff, 0.0)
    comp, suff = _faithfulness(judge, [row], [cands], [bad], full, y, "dense")
    # KEY is last of 20: no bin up to 50 % reaches it.
    assert np.allclose(comp, 0.0) and np.allclose(suff, p_with - p_without)
    assert comp.shape == (1, len(BINS))


def test_bins_round_up_and_keep_one_token():
    assert [bin_size(20, f) for f in BINS] == [1, 1, 2, 4, 10]
    assert bin_size(3, 0.5) == 2 and bin_size(1, 0.01) == 1


def test_top_tokens_breaks_ties_by_position():
    assert top_tokens(np.array([0., 1., 1., 0.5]), np.array([0, 1, 2, 3]), 2).tolist() == [1, 2]
    assert top_tokens(np.array([0., 1., 1., 0.5]), np.array([0, 2, 3]), 2).tolist() == [2, 3]


def test_average_precision_and_f1():
    labels = np.array([1, 0, 1, 0])
    assert average_precision(np.array([4., 3., 2., 1.]), labels) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([1., 4., 2., 3.]), labels) == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert math.isnan(average_precision(np.array([1., 2.]), np.array([0, 0])))
    assert f1_at(np.array([4., 3., 2., 1.]), labels, 1) == pytest.approx(2 * 1 / (1 + 2))
    assert f1_at(np.array([4., 3., 2., 1.]), labels, 3) == pytest.approx(2 * 2 / (3 + 2))


def test_paired_bootstrap():
    a = np.array([1.0, 2.0, 3.0, np.nan])
    same = paired_bootstrap(a, a)
    assert same["mean_diff"] == 0.0 and same["ci95"] == [0.0, 0.0] and same["n"] == 3
    shifted = paired_bootstrap(a + 0.5, a)
    assert shifted["mean_diff"] == pytest.approx(0.5) and shifted["ci95"] == pytest.approx([0.5, 0.5])
    mixed = paired_bootstrap(np.array([1.0, -1.0, 1.0, -1.0]), np.zeros(4))
    lo, hi = mixed["ci95"]
    assert lo < 0 < hi


# ------------------------------------------------------------------------------------------- lexicon

@pytest.fixture(scope="module")
def tokenizer(minilm_tokenizer):
    return minilm_tokenizer


def test_lexicon_threshold_and_parsing():
    lex = parse_lexicon("good\t1.9\t0.9\t[2, 1]\nokay\t0.9\t0.5\t[1]\nawful\t-2.0\t0.4\t[-2]\n\n")
    assert lex == {"good": 1.9, "okay": 0.9, "awful": -2.0}
    assert rationale_words(lex, 1.0) == {"good", "awful"}
    assert rationale_words(lex, 0.5) == {"good", "okay", "awful"}
    with pytest.raises(ValueError, match="threshold"):
        rationale_words(lex, 0)


def test_every_piece_of_a_rationale_word_inherits_its_label(tokenizer):
    text = "An UNWATCHABLE mess, but great!"
    labels = token_labels(text, tokenizer, {"unwatchable", "great", "mess"}, 32)
    toks = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    pieces = [t for t in toks if t == "un" or t.startswith("##")]
    assert len(pieces) >= 2  # the word really is split into several pieces
    got = dict(zip(toks, labels))
    assert all(got[p] == 1 for p in pieces)
    assert got["great"] == 1 and got["mess"] == 1 and got["!"] == 0 and got[","] == 0 and got["an"] == 0
    assert labels[0] == 0 and labels[-1] == 0  # [CLS], [SEP]
    assert len(token_labels(" ".join(["great"] * 50), tokenizer, {"great"}, 16)) == 16  # truncated like the model


def test_vader_lexicon_from_the_cached_archive():
    from adapler.corpora import cache_root
    from adapler.lexicon import THRESHOLD, load_vader_lexicon
    if not (cache_root() / "downloads" / "vaderSentiment-3.3.2.tar.gz").exists():
        pytest.skip("the vaderSentiment sdist is not cached (fetched on first use of vader-movies)")
    lex = load_vader_lexicon()
    assert len(lex) > 7000 and lex["good"] == pytest.approx(1.9) and lex["bad"] == pytest.approx(-2.5)
    assert 5000 < len(rationale_words(lex, THRESHOLD)) < len(lex)


# ------------------------------------------------------------------------------------------- end to end

def test_grad_x_input_is_the_cp_target_definition():
    from adapler.training.saliency import saliency_batch
    from conftest import ragged_batch
    model = tiny_model("adapler")
    ids, mask = ragged_batch(3, 12)
    target = torch.tensor([0, 1, 1])
    ours = gradient_scores(model, ids, mask, target)
    ref = saliency_batch(model, ids, mask, None, target)
    assert torch.allclose(ours, ref, atol=1e-6)
    ig = gradient_scores(model, ids, mask, target, ig_steps=4, special_ids=(101, 102))
    assert (ig[mask == 0] == 0).all() and ig.shape == ids.shape


def test_rationale_report_end_to_end(tokenizer):
    words = {"gorgeous", "witty", "wooden", "funny", "great"}
    report = rationale_report(tiny_model("adapler"), tokenizer, TEXTS, 32, ["negative", "positive"],
                              lexicon_words=words, ig_steps=2, batch_size=2)
    r = report["rankings"]
    assert not r["policy"]["available"] and "no policy networks" in r["policy"]["reason"]
    for name in ("own", "own-first", "attention", "grad-x-input", "integrated-gradients", "random"):
        assert r[name]["available"] and len(r[name]["comprehensiveness_per_bin"]) == len(BINS)
        assert 0 <= r[name]["auprc"] <= 1
    assert report["texts_with_rationale_tokens"] == 3
    assert set(report["paired_vs_own"]) == {"own-first", "attention", "grad-x-input", "integrated-gradients", "random"}
    dense = rationale_report(tiny_model("bert"), tokenizer, TEXTS[:1], 32, ["n", "p"], lexicon_words=None, ig_steps=0)
    assert not dense["rankings"]["own"]["available"] and "drops no tokens" in dense["rankings"]["own"]["reason"]
    assert not dense["rankings"]["integrated-gradients"]["available"]
    from adapler.rationales import markdown_table
    table = markdown_table(report)
    assert "n/a: the checkpoint has no policy networks" in table and table.count("\n") == len(r) + 1


def test_cli_rationales_bad_judge(tmp_path, capsys):
    from cli import run_cli
    assert run_cli(["rationales", str(tmp_path), "--judge", "soft"]) == 2
    assert "--judge must be one of dense, hard" in capsys.readouterr().err


def test_cli_rationales_writes_report_and_plot(tmp_path, tokenizer, capsys):
    import json

    from adapler.checkpoint import save_checkpoint
    from adapler.corpora import cache_root
    from cli import run_cli
    from conftest import write_sentiment_csv
    if not (cache_root() / "downloads" / "vaderSentiment-3.3.2.tar.gz").exists():
        pytest.skip("the vaderSentiment sdist (the lexicon) is not cached")
    ckpt = save_checkpoint(tiny_model("adapler"), tmp_path / "ckpt", tokenizer=tokenizer,
                           label_names=["negative", "positive"], max_length=32)
    data = write_sentiment_csv(tmp_path / "d.csv", n=40)
    args = ["rationales", str(ckpt), "--data", data, "--limit", "3", "--ig-steps", "1", "--json",
            str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    assert run_cli(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["n_texts"] == 3 and report["lexicon"]["threshold"] == 1.0 and report["method"] == "adapler"
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    assert "no policy networks" in report["rankings"]["policy"]["reason"]
    assert "no policy networks" in " ".join(capsys.readouterr().out.split())  # the n/a reason, in the caption
    assert run_cli(args) == 5  # nothing replaced without --overwrite
