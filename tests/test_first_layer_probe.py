"""bench/first_layer_probe.py: equal-FLOPs counts with layer 0 full, the window scorer and its fit, bad input."""
import pytest
import torch
from conftest import adapler_model, ragged_batch

from adapler.bench.first_layer_probe import WindowScorer, fit_scorer, layer0_attention, layer0_full_counts, main
from adapler.bench.oracle_selection import replay
from adapler.flops import model_flops


def _speedup(model, n, c):
    d, p = model_flops(model, n, c.float())
    return float(d.sum() / p.sum())


def test_layer0_full_counts_hold_the_flops_with_the_largest_factor():
    model = adapler_model(eta=0.9)
    ids, mask = ragged_batch(8, 30)
    n = mask.sum(dim=1)
    with torch.no_grad():
        deep = model(ids, mask, mode="hard").kept_lengths.round().long()
    full, f = layer0_full_counts(model, n, deep)  # 3.7x: out of reach once layer 0 runs in full
    assert f == 0 and (full[:, 1:] == 1).all() and _speedup(model, n, full) < _speedup(model, n, deep)
    own = torch.minimum(deep + 4, n[:, None])  # a milder model
    full, f = layer0_full_counts(model, n, own)
    assert 0 < f < 1
    assert torch.equal(full[:, 0], n) and (full >= 1).all() and (full <= n[:, None]).all()
    assert _speedup(model, n, full) >= _speedup(model, n, own)
    more = torch.minimum(torch.clamp(torch.ceil((f + 2e-6) * own[:, 1:].float()), min=1), n[:, None].float())
    assert _speedup(model, n, torch.cat([n[:, None].float(), more], dim=1)) < _speedup(model, n, own)


def test_attention_first_replay_scores_layer0s_attention_output_and_keeps_the_counts():
    model = adapler_model(eta=0.9)
    model.eval()
    ids, mask = ragged_batch(4, 20)
    n = mask.sum(dim=1)
    with torch.no_grad():
        counts = model(ids, mask, mode="hard").kept_lengths.round().long()
        attended = layer0_attention(model, model.embed(ids, None), mask)
    seen = {}

    def score(layer, st):
        seen.setdefault(layer, st.hidden.clone())
        return torch.gather(-st.positions.float(), 1, st.positions.clamp(min=0))  # keep the first tokens

    with torch.no_grad():
        out = replay(model, ids, mask, None, counts, score, after_attention=True)
        before = replay(model, ids, mask, None, counts, score)
        dense = model(ids, mask, mode="dense").logits
        everything = replay(model, ids, mask, None, n[:, None].expand_as(counts), score, after_attention=True)
    torch.testing.assert_close(seen[0], attended)  # the first removal read layer 0's attention over every token
    assert not torch.allclose(out, before)  # and it is not the removal before layer 0
    torch.testing.assert_close(everything, dense, atol=1e-5, rtol=1e-5)  # nothing removed: the dense model


def test_window_scorer_reads_its_neighbours_and_not_the_padding():
    torch.manual_seed(0)
    s1, s3 = WindowScorer(8, 1), WindowScorer(8, 3)
    x, mask = torch.randn(1, 6, 8), torch.tensor([[1, 1, 1, 1, 0, 0]])
    y = x.clone()
    y[0, 3] += 1.0
    assert torch.isclose(s1(x, mask)[0, 2], s1(y, mask)[0, 2]) and not torch.isclose(s3(x, mask)[0, 2], s3(y, mask)[0, 2])
    junk = x.clone()
    junk[0, 4:] = 50.0
    assert torch.allclose(s3(junk, mask)[0, :4], s3(x, mask)[0, :4])


def test_fitting_lowers_the_kl_to_a_learnable_target():
    torch.manual_seed(0)
    emb, mask = torch.randn(256, 10, 8), torch.ones(256, 10)
    mask[:, 7:] = 0
    target = torch.exp(3 * emb[..., 0]) * mask  # the saliency is a function of each token's vector
    before = fit_scorer(WindowScorer(8, 1), emb, mask, target, steps=1, seed=0)
    after = fit_scorer(WindowScorer(8, 1), emb, mask, target, steps=400, seed=0)
    assert after < 0.5 * before


def test_a_run_without_saliency_targets_is_one_line(tmp_path, capsys):
    (tmp_path / "run" / "best").mkdir(parents=True)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "run"), "--teacher", "ft", "--data", "x", "--json", str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "needs best/ and one saliency table" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "run"), "--teacher", "ft", "--data", "x", "--json", str(tmp_path / "o.json"),
              "--windows", "2"])
    assert "odd whole numbers" in capsys.readouterr().err


def test_the_probe_writes_every_row(tmp_path, tiny_bert_dir):
    import json

    from conftest import probe_pair
    from transformers import AutoTokenizer

    from adapler.data import load_dataset
    from adapler.training.common import SALIENCY_DIR
    from adapler.training.saliency import compute_saliencies
    csv = probe_pair(tmp_path, tiny_bert_dir, tmp_path / "run" / "best")
    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    compute_saliencies([tmp_path / "ft"], load_dataset(csv).train, tok, 32, tmp_path / "run" / SALIENCY_DIR)
    out = tmp_path / "probe.json"
    main([str(tmp_path / "run"), "--teacher", str(tmp_path / "ft"), "--data", csv, "--json", str(out),
          "--windows", "1", "--steps", "3"])
    result = json.loads(out.read_text())
    after = "own counts, layer 0 removal after its attention"
    assert set(result["counts"]) == {"own counts", "layer 0 full", after}
    assert result["counts"][after]["flops_speedup"] <= result["counts"]["own counts"]["flops_speedup"]
    assert {f"{after} / checkpoint / teacher saliency then cp", f"{after} / checkpoint / attention-first scorer then cp",
            "own counts / checkpoint / window-1 scorer then cp", "teacher dense"} <= set(result["accuracy"])
    assert set(result["scorer_fit_kl"]) == {"1", "attention first"}
