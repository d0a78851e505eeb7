"""bench/oracle_selection.py: the replay keeps exactly the given counts, the chosen tokens, and reproduces the CP."""
import torch
from conftest import adapler_model, ragged_batch

from adapler.bench.oracle_selection import at_positions, cp_scores, first_then, layer_saliency, replay


def test_replaying_the_cps_choice_at_its_own_counts_gives_the_hard_pass():
    model = adapler_model(eta=0.9)
    ids, mask = ragged_batch(6, 20)
    types = torch.zeros_like(ids)
    with torch.no_grad():
        out = model(ids, mask, types, mode="hard")
        counts = out.kept_lengths.round().long()
        assert (counts[:, -1] < mask.sum(dim=1)).any()  # the CPs really drop tokens here
        logits = replay(model, ids, mask, types, counts, cp_scores(model))
    torch.testing.assert_close(logits, out.logits)


def test_a_ranking_by_position_keeps_the_first_k_tokens():
    # keeping the first k tokens before layer 0 and all of them after is the dense model on the first k tokens
    model = adapler_model()
    ids, mask = ragged_batch(5, 16)
    types = torch.zeros_like(ids)
    k = 6
    counts = torch.full((5, model.num_layers), k)
    first = -torch.arange(16, dtype=torch.float32).expand(5, 16)
    with torch.no_grad():
        logits = replay(model, ids, mask, types, counts, at_positions(first))
        want = model(ids[:, :k], mask[:, :k], types[:, :k], mode="dense").logits
    torch.testing.assert_close(logits, want)


def test_counts_are_kept_exactly_and_full_counts_are_the_dense_model():
    model = adapler_model()
    ids, mask = ragged_batch(5, 16)
    types = torch.zeros_like(ids)
    lengths = mask.sum(dim=1)
    seen = []

    def spy(layer, st):  # the alive count each layer starts from is the previous layer's count
        seen.append(st.mask.sum(dim=1).clone())
        return torch.rand(st.mask.shape)
    counts = torch.stack([lengths, (lengths + 1) // 2, (lengths + 2) // 3, torch.ones_like(lengths)], dim=1)
    with torch.no_grad():
        replay(model, ids, mask, types, counts, spy)
    assert torch.equal(torch.stack(seen, 1)[:, 1:], counts[:, :-1])
    full = lengths[:, None].expand(-1, model.num_layers)
    with torch.no_grad():
        dense = model(ids, mask, types, mode="dense").logits
        torch.testing.assert_close(replay(model, ids, mask, types, full, spy), dense)
        # with every token kept the gradient ranking changes nothing either
        torch.testing.assert_close(replay(model, ids, mask, types, full, layer_saliency(model, dense.argmax(-1))),
                                   dense)


def test_an_existing_json_is_not_replaced_without_overwrite(tmp_path, capsys):
    import pytest

    from adapler.bench.oracle_selection import main
    out = tmp_path / "oracle.json"
    out.write_text("{}")
    with pytest.raises(SystemExit):
        main(["run", "--teacher", "ft", "--data", "d.csv", "--json", str(out)])
    assert "already exists; pass --overwrite to replace it or choose another --json" in capsys.readouterr().err
    assert out.read_text() == "{}"


def test_the_probe_writes_every_rule_for_both_encoders(tmp_path, tiny_bert_dir):
    import json

    from conftest import probe_pair

    from adapler.bench.oracle_selection import main
    csv = probe_pair(tmp_path, tiny_bert_dir, tmp_path / "run")
    out = tmp_path / "oracle.json"
    main([str(tmp_path / "run"), "--teacher", str(tmp_path / "ft"), "--data", csv, "--json", str(out)])
    result = json.loads(out.read_text())
    rows = {r["model"]: r for r in result["rows"]}
    rules = ["random", "teacher saliency", "own saliency", "layer saliency"]
    assert set(rows) == {"teacher dense", "checkpoint hard", "checkpoint / cp", "checkpoint / teacher saliency then cp"} | {
        f"{e} / {r}" for e in ("checkpoint", "teacher") for r in rules}
    assert rows["checkpoint / cp"]["accuracy"] == rows["checkpoint hard"]["accuracy"]
    assert rows["teacher dense"]["diff_points"] is None and rows["checkpoint / cp"]["vs_cp_points"] is None
    assert rows["teacher / random"]["vs_cp_points"] is not None
    assert result["n_examples"] == 8 and len(result["mean_kept_lengths"]) == 4 and result["flops_speedup"] > 0


def test_first_then_uses_the_first_rule_before_layer_0_only():
    # the first rule keeps the leading k tokens; with no drop after layer 0 the CPs must keep all of them, so the
    # result is the dense model on the first k tokens, which the CPs' own choice at layer 0 does not give
    model = adapler_model(eta=0.9)
    ids, mask = ragged_batch(6, 20)
    types = torch.zeros_like(ids)
    k = 5
    counts = torch.minimum(mask.sum(dim=1), torch.tensor(k))[:, None].expand(-1, model.num_layers)
    first = -torch.arange(20, dtype=torch.float32).expand(6, 20)
    with torch.no_grad():
        mixed = replay(model, ids, mask, types, counts, first_then(at_positions(first), cp_scores(model)))
        want = model(ids[:, :k], mask[:, :k], types[:, :k], mode="dense").logits
        cp_only = replay(model, ids, mask, types, counts, cp_scores(model))
    torch.testing.assert_close(mixed, want)
    assert not torch.allclose(cp_only, want)
