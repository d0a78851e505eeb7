"""keep-first, the static floor: one selector file + one method file, nothing else of another method touched.
Kept sets, soft == hard, FLOPs, the solved --target-speedup, training, checkpoints and the TokenDrop export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ragged_batch, tiny_config, tiny_finetuned

from adapler import methods
from adapler.encoder import PrunedBertClassifier
from adapler.errors import UsageError
from adapler.flops import Dims, dense_flops, model_flops, pruned_flops
from adapler.selectors.keep_first import KeepFirstSelector, keep_counts

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(layers=(1,), fraction=0.5, tokens=None, seed=0) -> PrunedBertClassifier:
    torch.manual_seed(seed)
    cfg = tiny_config(layers=4)
    return PrunedBertClassifier(cfg, 2, KeepFirstSelector(4, list(layers), fraction, tokens)).eval()


def test_keep_counts_round_up_and_keep_cls() -> None:
    n = torch.tensor([10.0, 3.0, 1.0, 7.0])
    assert keep_counts(n, 0.3, None).tolist() == [3.0, 1.0, 1.0, 3.0]  # 0.3 * 10 is 3 (not 4 by float noise)
    assert keep_counts(n, 0.01, None).tolist() == [1.0, 1.0, 1.0, 1.0]  # [CLS] always stays
    assert keep_counts(n, 0.5, 4).tolist() == [4.0, 3.0, 1.0, 4.0]  # tokens wins over the fraction


@pytest.mark.parametrize("layers,fraction,tokens", [((1,), 0.5, None), ((0, 2), 0.6, None), ((2,), 0.5, 5)])
def test_each_layer_keeps_the_first_tokens_of_every_row(layers, fraction, tokens) -> None:
    model = _model(layers, fraction, tokens)
    ids, mask = ragged_batch(5, 24, 1)
    with torch.no_grad():
        out = model(ids, mask, mode="hard", track_positions=True)
    n = mask.sum(1)
    expected = model.selector.kept_lengths(n)
    assert torch.equal(out.kept_lengths.float(), expected)
    for layer, pos in enumerate(out.positions):  # the kept positions are 0 .. k-1, in order
        for b in range(len(n)):
            kept = [p for p in pos[b].tolist() if p >= 0]
            assert kept == list(range(int(expected[b, layer])))
    # each row alone gives the same logits as the batch (compaction to the longest row, padding masked)
    for b in range(len(n)):
        with torch.no_grad():
            one = model(ids[b:b + 1, :n[b]], mask[b:b + 1, :n[b]], mode="hard")
        assert torch.allclose(one.logits, out.logits[b:b + 1], atol=1e-5)


def test_soft_mode_masks_the_same_tokens_as_hard_mode() -> None:
    model = _model((1, 3), 0.4)
    ids, mask = ragged_batch(4, 20, 2)
    with torch.no_grad():
        hard, soft = model(ids, mask, mode="hard"), model(ids, mask, mode="soft")
    assert torch.allclose(hard.logits, soft.logits, atol=1e-5)
    assert torch.equal(hard.kept_lengths.float(), soft.kept_lengths.float())


def test_flops_count_no_predictor_and_match_the_kept_lengths() -> None:
    model = _model((1,), 0.5)
    assert model.selector.predictor_layers(4) == [] and Dims.of(model).h == 0
    ids, mask = ragged_batch(3, 20, 0)
    with torch.no_grad():
        out = model(ids, mask, mode="hard")
    dense, pruned = model_flops(model, mask.sum(1), out.kept_lengths)
    dims = Dims.of(model)
    assert torch.allclose(pruned, pruned_flops(mask.sum(1), model.selector.kept_lengths(mask.sum(1)), dims, []))
    assert torch.all(pruned < dense)


def test_fraction_is_solved_for_a_target_speedup() -> None:
    from adapler.methods.keep_first import KeepFirstConfig, fraction_for_speedup, fraction_speedup
    dims = Dims(d=384, f=1536, L=6, C=2)
    n = torch.tensor([12, 30, 64, 27, 40])
    cfg = KeepFirstConfig(layers="2")
    f = fraction_for_speedup(cfg, n, dims, 1.4)
    assert fraction_speedup(f, cfg, n, dims) >= 1.4 > fraction_speedup(min(1.0, f + 0.02), cfg, n, dims)
    assert fraction_for_speedup(cfg, n, dims, 1.0) == 1.0  # keeping everything already reaches 1x


def test_config_errors_name_the_option() -> None:
    m = methods.get("keep-first")
    with pytest.raises(UsageError, match=r"fraction \(--knob for keep-first\) must be <= 1"):
        m.config(knob=1.5)
    with pytest.raises(UsageError, match="layers must be comma-separated"):
        m.config(layers="two")
    with pytest.raises(UsageError, match="drop --set tokens= or --target-speedup"):
        m.config(tokens=4, target_speedup=2.0)


def test_checkpoint_round_trip_through_the_selector_lookup(tmp_path: Path) -> None:
    from adapler.checkpoint import load_checkpoint, save_checkpoint
    model = _model((0, 2), 0.3)
    save_checkpoint(model, tmp_path / "kf", label_names=["a", "b"], max_length=24)
    loaded, cfg = load_checkpoint(tmp_path / "kf")
    assert cfg["method"] == "keep-first" and cfg["selector"] == {"layers": [0, 2], "fraction": 0.3, "tokens": None}
    ids, mask = ragged_batch(3, 16, 4)
    with torch.no_grad():
        assert torch.equal(loaded(ids, mask).kept_lengths, model(ids, mask).kept_lengths)


def test_train_solve_target_and_no_epochs(tmp_path: Path) -> None:
    from adapler.checkpoint import load_checkpoint
    ds, ft = tiny_finetuned(tmp_path)
    out = methods.train_method("keep-first", ds, ft, tmp_path / "kf", epochs=1, batch_size=16, layers="1")
    model, cfg = load_checkpoint(out / "best")
    state = json.loads((out / "run_state.json").read_text())
    assert state["finished"] and cfg["method"] == "keep-first" and cfg["selector"]["layers"] == [1]
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and history[0]["dev_flops_speedup"] > 1.0 and history[0]["fraction"] == 0.5
    # --target-speedup: the fraction is solved on dev before training, and the selected epoch reaches it
    out = methods.train_method("keep-first", ds, ft, tmp_path / "kf-target", epochs=1, batch_size=16, layers="1",
                               target_speedup=1.3)
    _, cfg = load_checkpoint(out / "best")
    assert cfg["dev_flops_speedup"] >= 1.3 and cfg["target_reached"] is True
    assert cfg["selector"]["fraction"] < 0.9
    # epochs=0: the fine-tuned weights with the drop in place
    out = methods.train_method("keep-first", ds, ft, tmp_path / "kf0", epochs=0, layers="1")
    model0, _ = load_checkpoint(out / "best")
    ft_model, _ = load_checkpoint(ft / "best")
    assert torch.equal(model0.classifier.weight, ft_model.classifier.weight)
    with pytest.raises(UsageError, match="must lie in 0..3"):
        methods.train_method("keep-first", ds, ft, tmp_path / "kf9", epochs=0, layers="9")


def test_exports_through_the_token_drop_path(tmp_path: Path, tiny_bert_dir) -> None:
    """model.onnx / model.std.onnx like AdapLeR; no fused graph (a note says so); ORT agrees with torch."""
    import numpy as np
    from transformers import AutoTokenizer

    from adapler.checkpoint import save_checkpoint
    from adapler.export.onnx import write_export_dir
    from adapler.plugins.token_drop.ort_session import create_session
    model = _model((1,), 0.5)
    ckpt = save_checkpoint(model, tmp_path / "ckpt", tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
                           label_names=["a", "b"], max_length=32)
    meta = write_export_dir(ckpt, tmp_path / "export", custom=False)
    assert meta["files"] == {"std": "model.std.onnx"}
    assert "no model.ort.onnx" in meta["notes"][0] and "'keep-first' has no fused ORT graph" in meta["notes"][0]
    ids, mask = ragged_batch(4, 20, 3)
    with torch.no_grad():
        ref = model(ids, mask, mode="hard")
    sess = create_session(tmp_path / "export" / "model.std.onnx", library=None)
    logits, kept = sess.run(["logits", "kept_lengths"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert np.abs(logits - ref.logits.numpy()).max() <= 1e-4
    assert np.array_equal(kept, ref.kept_lengths.numpy())


def test_dense_flops_helper_unchanged_by_the_selector() -> None:
    """keep-first keeps the FLOPs convention: attention and FFN on the kept tokens, nothing else added."""
    model = _model((0,), 1.0)  # keeps everything
    n = torch.tensor([10, 20])
    kept = model.selector.kept_lengths(n)
    assert torch.equal(kept, n.float()[:, None].expand(2, 4))
    assert torch.allclose(pruned_flops(n, kept, Dims.of(model), []), dense_flops(n, Dims.of(model)))
