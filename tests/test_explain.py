"""explain: kept sets and scores per layer (torch, and ONNX through the kept_positions output), rendering, errors."""
import json
import math

import numpy as np
import pytest
import torch
from transformers import BertConfig

from adapler.encoder import PrunedBertClassifier
from adapler.explain import Explanation, ExplainError, explain, explain_texts
from adapler.explain_render import html_page
from adapler.selectors import build_selector
from conftest import tiny_config

TEXTS = ["A gorgeous, witty, seductive movie.",
         "The plot is nothing but boilerplate cliches from start to finish, and the acting is wooden.",
         "It's not a great film, but it is a worthwhile one, with a few genuinely funny moments."]
MAX_LENGTH = 32


def tiny_model(method: str, seed: int = 0) -> PrunedBertClassifier:
    """A random 4-layer model whose selector actually drops tokens."""
    torch.manual_seed(seed)
    cfg: BertConfig = tiny_config(layers=4)
    options = {"max_length": MAX_LENGTH, "retention": [12, 8, 6, 4]} if method == "power-bert" else {}
    model = PrunedBertClassifier(cfg, 2, build_selector(method, cfg, options)).eval()
    sel = model.selector
    with torch.no_grad():
        for net in list(getattr(sel, "cps", [])) + list(getattr(sel, "policies", [])):
            for lin in (net.fc1, net.fc2):
                lin.weight.normal_(0.0, 1.0)  # far from uniform, so the rule keeps some tokens and drops others
        if method == "adapler":
            sel.eta.fill_(0.9)
    return model


@pytest.fixture(scope="module")
def tokenizer(minilm_tokenizer):
    return minilm_tokenizer


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tokenizer):
    """method -> saved checkpoint directory."""
    from adapler.checkpoint import save_checkpoint
    root = tmp_path_factory.mktemp("explain")
    out = {}
    for method in ("adapler", "tr-bert", "power-bert", "bert"):
        out[method] = save_checkpoint(tiny_model(method), root / method, tokenizer=tokenizer,
                                      label_names=["negative", "positive"], max_length=MAX_LENGTH)
    return out


def explain_one(method, tokenizer, texts=TEXTS):
    model = tiny_model(method)
    return model, explain_texts(model, tokenizer, texts, MAX_LENGTH, ["negative", "positive"])


def test_adapler_kept_sets_follow_the_scores_and_threshold(tokenizer):
    model, expls = explain_one("adapler", tokenizer)
    dropped_any = False
    for e in expls:
        enc = tokenizer(e.text, return_tensors="pt")
        kept_lengths = model(enc["input_ids"], enc["attention_mask"], mode="hard").kept_lengths[0].tolist()
        assert [len(k) for k in e.kept] == kept_lengths  # independent count from the encoder
        entering = list(range(len(e.tokens)))
        for layer, kept in enumerate(e.kept):
            scores, thr = e.scores[layer], e.thresholds[layer]
            assert sorted(scores) == entering  # CP_l scores exactly the tokens alive before layer l
            assert abs(sum(scores.values()) - 1.0) < 1e-5  # a distribution over them
            rule = sorted(p for p in entering if p == 0 or scores[p] >= thr)
            assert kept == rule
            dropped_any |= len(kept) < len(entering)
            entering = kept
    assert dropped_any


def test_tr_bert_scores_at_policy_points_only(tokenizer):
    model, expls = explain_one("tr-bert", tokenizer)
    points = model.selector.points
    for e in expls:
        assert [l for l, s in enumerate(e.scores) if s is not None] == points
        for l in points:
            before = e.kept[l - 1]
            assert sorted(e.scores[l]) == before
            assert e.kept[l] == sorted(p for p in before if p == 0 or e.scores[l][p] >= 0.5)
        assert e.score_name == "policy p"


def test_power_bert_keeps_top_significance(tokenizer):
    model, expls = explain_one("power-bert", tokenizer)
    for e in expls:
        entering = list(range(len(e.tokens)))
        for layer, kept in enumerate(e.kept):
            k = min(model.selector.retention[layer], len(entering))
            sig = e.scores[layer]
            assert sorted(sig) == entering
            top = sorted([p for p in entering if p != 0], key=lambda p: -sig[p])[: k - 1]
            assert kept == sorted([0] + top)
            entering = kept


def test_dense_model_has_no_scores_and_says_why(tokenizer):
    _, expls = explain_one("bert", tokenizer)
    e = expls[0]
    assert all(s is None for s in e.scores)
    assert e.score_name == "n/a" and "drops no tokens" in e.score_note
    assert all(k == list(range(len(e.tokens))) for k in e.kept)


def test_a_selector_without_scores_says_so(tokenizer):
    _, expls = explain_one("keep-first", tokenizer)  # keeps the first half of the row before layer 2
    for e in expls:
        n = len(e.tokens)
        assert e.kept[1] == list(range(n)) and e.kept[2] == list(range(math.ceil(n / 2)))
        assert e.score_name == "n/a" and "computes no token scores" in e.score_note


def test_own_ranking_is_depth_then_last_score():
    e = Explanation(text="x", tokens=["[CLS]", "a", "b", "c", "[SEP]"], special=[True, False, False, False, True],
                    method="adapler", source="torch", prediction="p", probs=[0.5, 0.5],
                    kept=[[0, 1, 2, 3], [0, 2, 3]],
                    scores=[{0: .1, 1: .3, 2: .2, 3: .25, 4: .15}, {0: .2, 2: .5, 3: .3}],
                    thresholds=[.1, .1], score_name="CP score")
    assert e.depth() == [2, 1, 2, 2, 0]
    rank = e.own_ranking()
    order = sorted(range(5), key=lambda p: -rank[p])
    assert order == [2, 3, 0, 1, 4]  # depth 2 by layer-1 score, then depth 1, then depth 0


def test_long_text_is_truncated_and_said(tokenizer):
    _, (e,) = explain_one("adapler", tokenizer, [" ".join(["wonderful"] * 80)])
    assert e.truncated and len(e.tokens) == MAX_LENGTH and e.n_tokens_untruncated == 82
    from adapler.explain_render import header
    assert "truncated to 32 of 82 tokens" in header(e)


def test_empty_text_is_refused(tokenizer):
    with pytest.raises(ExplainError, match="text is empty"):
        explain_one("adapler", tokenizer, ["   "])


def test_html_is_self_contained_and_jsonl_round_trips(tokenizer, tmp_path):
    from adapler.explain import write_jsonl
    _, expls = explain_one("adapler", tokenizer)
    page = html_page(expls)
    assert "<script" not in page and "http" not in page and "src=" not in page
    for e in expls:
        for tok in e.tokens:
            assert tok.replace("&", "&amp;").replace("'", "&#x27;") in page
    assert "kept by every layer" in page and "dropped before layer 0" in page
    path = write_jsonl(expls, tmp_path / "x.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len(TEXTS)
    assert rows[1]["kept"] == expls[1].kept and rows[1]["survival_depth"] == expls[1].depth()
    assert rows[1]["scores"][0] == {str(p): v for p, v in expls[1].scores[0].items()}
    with pytest.raises(Exception, match="already exists"):
        write_jsonl(expls, path)


@pytest.mark.parametrize("method", ["adapler", "power-bert"])
def test_onnx_kept_positions_match_torch(method, tiny_ckpt, tokenizer, tmp_path):
    """The exported graph's kept_positions (standard-op graph, and the TokenDrop graph where the ORT library is
    built) equal the torch positions, batch-1 through explain and on a ragged batch."""
    texts = TEXTS
    from adapler.export.onnx import write_export_dir
    from adapler.plugins.token_drop.ort_session import create_session
    out = tmp_path / "export"
    # PoWER-BERT's graph has no TokenDrop node (static gathers), so its TokenDrop graph would be the same one.
    meta = write_export_dir(tiny_ckpt[method], out, ort=False, custom=method != "power-bert", kept_positions=True)
    assert meta["outputs"] == ["logits", "kept_lengths", "kept_positions"]
    torch_expl = explain(tiny_ckpt[method], texts)
    onnx_expl = explain(out, texts)
    for a, b in zip(onnx_expl, torch_expl):
        assert a.kept == b.kept and a.source == "model.std.onnx"
        assert np.allclose(a.probs, b.probs, atol=1e-4)
        assert a.score_name == "n/a" and "kept positions" in a.score_note
    from adapler.checkpoint import load_checkpoint
    model, _ = load_checkpoint(tiny_ckpt[method])
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(enc["input_ids"], enc["attention_mask"], mode="hard", track_positions=True).positions
    feed = {"input_ids": enc["input_ids"].numpy(), "attention_mask": enc["attention_mask"].numpy()}
    graphs = ["model.std.onnx"]
    if method != "power-bert":
        from adapler.plugins.token_drop.build import find_ort_library
        if find_ort_library() is not None:  # without the library the TokenDrop graph is covered where it is built
            graphs.append("model.onnx")
    for g in graphs:
        (pos,) = create_session(out / g).run(["kept_positions"], feed)
        assert pos.shape == (len(texts), 4, enc["input_ids"].shape[1])
        for layer, r in enumerate(ref):
            want = torch.nn.functional.pad(r, (0, pos.shape[2] - r.shape[1]), value=-1).numpy()
            assert (pos[:, layer] == want).all(), (g, layer)


def test_cli_explain(tiny_ckpt, tmp_path, capsys):
    from cli import run_cli
    html, jsonl = tmp_path / "e.html", tmp_path / "e.jsonl"
    rc = run_cli(["explain", str(tiny_ckpt["adapler"]), "--text", " ".join(["great"] * 50), "--html", str(html),
                  "--jsonl", str(jsonl)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "CP score" in out and "truncated to 32 of 52 tokens" in out
    assert html.read_text().startswith("<!DOCTYPE html>") and len(jsonl.read_text().splitlines()) == 1
    assert run_cli(["explain", str(tiny_ckpt["adapler"]), "--text", "x", "--html", str(html)]) == 5  # no --overwrite
    assert run_cli(["explain", str(tiny_ckpt["adapler"]), "--text", ""]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "text is empty" in err
    assert run_cli(["explain", str(tiny_ckpt["adapler"])]) == 2  # neither --text nor --data


def test_cli_explain_refuses_an_export_without_kept_positions(tmp_path, capsys):
    from cli import run_cli
    (tmp_path / "x").mkdir()  # what `export` without --kept-positions records (graphs are not read before the check)
    (tmp_path / "x" / "export.json").write_text(json.dumps({"format": "adapler-onnx-export", "method": "adapler",
                                                            "outputs": ["logits", "kept_lengths"], "files": {}}))
    assert run_cli(["explain", str(tmp_path / "x"), "--text", "good"]) == 4
    assert "--kept-positions" in capsys.readouterr().err
