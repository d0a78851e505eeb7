"""Wrong results and data loss (issue 13, items 1-5): caches keyed by content, resume refusing a mismatch,
exclusive result files, checkpoint replacement that survives a crash, no success without a result."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from adapler.checkpoint import CheckpointError, load_checkpoint, load_checkpoint_tokenizer, save_checkpoint
from adapler.data import load_dataset
from conftest import write_sentiment_csv


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under ``root``: equal before and after = untouched."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- 1. saliency targets keyed by content

def test_saliency_cache_not_reused_for_other_data_with_same_ids(finetuned_run, tmp_path):
    """Two CSVs with the same name and line count (so the same example ids) but other texts: the second
    gets its own targets, not the first one's."""
    from adapler.training.saliency import compute_saliencies
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = load_dataset(write_sentiment_csv(tmp_path / "a" / "d.csv", n=40, seed=1))
    b = load_dataset(write_sentiment_csv(tmp_path / "b" / "d.csv", n=40, seed=2))
    assert [e.id for e in a.train] == [e.id for e in b.train] and [e.text for e in a.train] != [e.text for e in b.train]
    tok = load_checkpoint_tokenizer(finetuned_run / "best")
    ckpts = [finetuned_run / "epoch-1"]
    cache = tmp_path / "cache"
    sal_a = compute_saliencies(ckpts, a.train, tok, 32, cache)
    sal_b = compute_saliencies(ckpts, b.train, tok, 32, cache)
    fresh_b = compute_saliencies(ckpts, b.train, tok, 32, tmp_path / "fresh")
    differs = [i for i in sal_a if sal_a[i].shape != sal_b[i].shape or not torch.equal(sal_a[i], sal_b[i])]
    assert differs, "targets of other texts were reused"
    for i in sal_b:
        torch.testing.assert_close(sal_b[i], fresh_b[i])
    assert len(list(cache.glob("saliency-*.safetensors"))) == 2


def test_adapler_writes_its_cache_under_out_not_init(finetuned_run, sentiment_csv, tmp_path, one_thread):
    from adapler.training.train_adapler import AdapLeRConfig, train_adapler
    before = tree(finetuned_run)
    data = load_dataset(sentiment_csv, max_train=16)
    out = train_adapler(data, finetuned_run, tmp_path / "ad", AdapLeRConfig(epochs=1, batch_size=16, saliency_epochs=1))
    assert tree(finetuned_run) == before  # the --init run is read, never written
    assert list((out / "saliency").glob("saliency-*.safetensors"))


def test_resume_of_a_run_interrupted_in_its_first_epoch_keeps_its_cache(finetuned_run, sentiment_csv, tmp_path,
                                                                         one_thread, capsys, monkeypatch):
    """Ctrl-C in epoch 1 says "re-run with --resume"; with only the saliency cache on disk that must start the
    run over (reusing the cache), not refuse. Anything else there is still refused."""
    from adapler.training.common import prepare_out_dir
    from adapler.training.train_adapler import AdapLeRConfig, train_adapler
    monkeypatch.delenv("ADAPLER_QUIET", raising=False)
    data = load_dataset(sentiment_csv, max_train=16)
    cfg = AdapLeRConfig(epochs=1, batch_size=16, saliency_epochs=1)
    done = train_adapler(data, finetuned_run, tmp_path / "done", cfg)
    run = tmp_path / "cut"
    shutil.copytree(done / "saliency", run / "saliency")  # what an interrupt in epoch 1 leaves
    cache = tree(run)
    capsys.readouterr()
    out = train_adapler(data, finetuned_run, run, cfg, resume=True)
    said = " ".join(capsys.readouterr().err.split())
    assert "no epoch of" in said and "starting it from the beginning" in said
    assert "saliency targets: reusing" in said
    assert {k: v for k, v in tree(run).items() if k in cache} == cache  # the cache file itself untouched
    assert (out / "best" / "config.json").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="nothing to resume"):
        prepare_out_dir(tmp_path / "other", overwrite=False, resume=True)


# ---------------------------------------------------------------- 2. --resume checks data and options

@pytest.fixture
def interrupted(finetuned_run, tmp_path):
    """A copy of the fine-tuned run whose state says only epoch 1 of 2 finished."""
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    state = json.loads((run / "run_state.json").read_text())
    state["epochs_done"], state["history"] = 1, state["history"][:1]
    (run / "run_state.json").write_text(json.dumps(state))
    return run


def _ft_config(run: Path, **changes):
    from adapler.training.finetune import FinetuneConfig
    cfg = json.loads((run / "run_state.json").read_text())["config"]
    return FinetuneConfig(**{**cfg, **changes})


@pytest.mark.parametrize("change, fragment", [
    ({"data": "other"}, "other data"),
    ({"data": "three-class"}, "3 classes"),
    ({"lr": 0.5}, "lr is 0.5"),
])
def test_resume_refuses_other_data_or_options(interrupted, sentiment_csv, tmp_path, change, fragment):
    from adapler.training.finetune import finetune
    data = load_dataset(sentiment_csv)
    if change.get("data") == "other":
        data = load_dataset(write_sentiment_csv(tmp_path / "other.csv", seed=5))
    elif change.get("data") == "three-class":
        rows = ["text,label"] + [f"text number {i},{('a', 'b', 'c')[i % 3]}" for i in range(60)]
        (tmp_path / "three.csv").write_text("\n".join(rows) + "\n")
        data = load_dataset(str(tmp_path / "three.csv"))
    before = tree(interrupted)
    cfg = _ft_config(interrupted, **{k: v for k, v in change.items() if k != "data"})
    with pytest.raises(CheckpointError, match=fragment):
        finetune(data, interrupted, cfg, resume=True)
    assert tree(interrupted) == before  # run_state.json keeps the run's own config


# ---------------------------------------------------------------- 3. results are created exclusively

def test_json_written_meanwhile_is_not_replaced(tmp_path):
    from adapler.files import write_json_atomic
    path = tmp_path / "m.json"
    write_json_atomic(path, {"run": 1}, overwrite=False)
    with pytest.raises(CheckpointError, match="already exists"):
        write_json_atomic(path, {"run": 2}, overwrite=False)
    assert json.loads(path.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind
    write_json_atomic(path, {"run": 3}, overwrite=True)
    assert json.loads(path.read_text()) == {"run": 3}


# ---------------------------------------------------------------- 4. checkpoint replacement survives a crash

@pytest.fixture
def small_model():
    from conftest import adapler_model
    return adapler_model(0)


def test_crash_during_replacement_keeps_a_complete_checkpoint(small_model, tmp_path, monkeypatch):
    path = save_checkpoint(small_model, tmp_path / "last", label_names=["a", "b", "c"], max_length=32,
                           extra={"epoch": 1})
    real_replace = os.replace

    def crash_when_new_moves_in(src, dst):
        if str(src).endswith(".tmp"):
            raise KeyboardInterrupt  # power cut between moving the old copy aside and moving the new one in
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_when_new_moves_in)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(small_model, path, label_names=["a", "b", "c"], max_length=32, extra={"epoch": 2})
    monkeypatch.setattr(os, "replace", real_replace)
    survivors = [d for d in tmp_path.iterdir() if (d / "model.safetensors").exists() and (d / "config.json").exists()]
    assert survivors, "no complete copy left on disk"
    from adapler.checkpoint import recover_checkpoint
    recover_checkpoint(path)
    _, cfg = load_checkpoint(path)
    assert cfg["epoch"] == 1  # the copy run_state.json still refers to


def test_resume_recovers_a_checkpoint_left_as_tmp(interrupted, sentiment_csv, one_thread):
    """The older save deleted last/ before renaming last.tmp in; a crash there must not block --resume."""
    from adapler.training.finetune import finetune
    os.replace(interrupted / "epoch-1", interrupted / "epoch-1.tmp")
    shutil.rmtree(interrupted / "epoch-2")
    finetune(load_dataset(sentiment_csv), interrupted, _ft_config(interrupted), resume=True)
    assert [s["epoch"] for s in json.loads((interrupted / "dev_scores.json").read_text())] == [1, 2]
    assert (interrupted / "epoch-1" / "config.json").exists() and not (interrupted / "epoch-1.tmp").exists()


# ---------------------------------------------------------------- 5. no success without a result

def test_finetune_zero_epochs_refused(tiny_bert_dir, sentiment_csv, tmp_path):
    from adapler.training.finetune import FinetuneConfig, finetune
    with pytest.raises(ValueError, match="epochs"):
        finetune(load_dataset(sentiment_csv), tmp_path / "o", FinetuneConfig(model=str(tiny_bert_dir), epochs=0))
    assert not (tmp_path / "o").exists()


def test_overwrite_removes_stale_epochs(finetuned_run, sentiment_csv, tmp_path, one_thread):
    from adapler.training.finetune import finetune
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    (run / "notes.txt").write_text("mine")  # not a run output: stays
    finetune(load_dataset(sentiment_csv), run, _ft_config(run, epochs=1), overwrite=True)
    assert not (run / "epoch-2").exists() and (run / "epoch-1").exists() and (run / "notes.txt").exists()


# ---------------------------------------------------------------- loaders and runtime limits

def test_csv_field_over_128k_is_read(tmp_path):
    long = " ".join(["word"] * 100_000)
    rows = ["text,label"] + [f"\"{long if i == 0 else 'short text'}\",{i % 2}" for i in range(30)]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(str(tmp_path / "long.csv"))
    assert max(len(e.text) for e in ds.train + ds.dev + ds.test) == len(long)


def test_onnx_session_rejects_inputs_longer_than_positions(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from adapler.plugins.token_drop.ort_session import InputTooLong, create_session
    table = helper.make_tensor("bert.embeddings.position_embeddings.weight", TensorProto.FLOAT, [8, 2],
                               [float(i) for i in range(16)])
    graph = helper.make_graph([helper.make_node("Gather", ["bert.embeddings.position_embeddings.weight", "input_ids"],
                                                ["out"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", "T", 2])], [table])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, tmp_path / "m.onnx")
    sess = create_session(tmp_path / "m.onnx", library=None)
    ok = sess.run(None, {"input_ids": np.zeros((1, 8), dtype=np.int64)})
    assert ok[0].shape == (1, 8, 2)
    with pytest.raises(InputTooLong, match="input_ids has 9 tokens but m.onnx has 8 positions"):
        sess.run(None, {"input_ids": np.zeros((1, 9), dtype=np.int64)})


def test_resume_after_crash_between_checkpoint_and_state(finetuned_run, sentiment_csv, tmp_path, one_thread,
                                                        monkeypatch):
    """Killed after last/ of epoch 2 was saved but before run_state.json said so: --resume starts from the
    epoch-1 copy the state names instead of training epoch 2 again on top of epoch-2 weights."""
    import adapler.training.runner as runner
    import adapler.training.train_adapler as ta
    data = load_dataset(sentiment_csv, max_train=16)
    cfg = ta.AdapLeRConfig(epochs=2, batch_size=16, saliency_epochs=1)
    out = tmp_path / "ad"
    real_write, real_load = runner.write_state, runner.load_checkpoint

    def die_before_second_state(out_, state):
        if state["epochs_done"] == 2:
            raise KeyboardInterrupt
        real_write(out_, state)

    monkeypatch.setattr(runner, "write_state", die_before_second_state)
    with pytest.raises(KeyboardInterrupt):
        ta.train_adapler(data, finetuned_run, out, cfg)
    monkeypatch.setattr(runner, "write_state", real_write)
    assert load_checkpoint(out / "last")[1]["epoch"] == 2  # the new copy is in, the state still says 1
    resumed_from = []

    def recording_load(path, *a, **kw):
        model, c = real_load(path, *a, **kw)
        if Path(path).name == "last":
            resumed_from.append(c["epoch"])
        return model, c

    monkeypatch.setattr(runner, "load_checkpoint", recording_load)
    ta.train_adapler(data, finetuned_run, out, cfg, resume=True)
    assert resumed_from == [1]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and load_checkpoint(out / "last")[1]["epoch"] == 2
    assert not any(p.name.endswith((".old", ".tmp")) for p in out.iterdir())


def test_bench_cache_trained_on_other_data_is_not_reused(finetuned_run, sentiment_csv, tmp_path):
    from adapler.bench.defaults import default_models
    cache = tmp_path / "cache"
    shutil.copytree(finetuned_run / "best", cache / "finetune" / "best")
    state = {"epochs_done": 2, "config": {"epochs": 2}, "fingerprint": {"data": "not-this-data"}}
    (cache / "finetune" / "run_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="trained on other data"):
        default_models(cache, (), demo=None, data=load_dataset(sentiment_csv))


def test_session_spinning_policies():
    """"run" spins between nodes and stops after the run; "off" sleeps; a policy name that does not exist
    is refused with the choices."""
    from adapler.plugins.token_drop.ort_session import session_options

    def entries(options):
        def get(key):
            try:
                return options.get_session_config_entry(key)
            except RuntimeError:  # ORT raises for a key that was never set
                return None
        return {k: get(k) for k in ("session.intra_op.allow_spinning", "session.force_spinning_stop")}
    assert entries(session_options(spinning="run")) == {"session.intra_op.allow_spinning": "1",
                                                        "session.force_spinning_stop": "1"}
    assert entries(session_options())["session.force_spinning_stop"] == "1"  # "run" is the default
    assert entries(session_options(spinning="off"))["session.intra_op.allow_spinning"] == "0"
    assert entries(session_options(spinning="always")) == {"session.intra_op.allow_spinning": None,
                                                           "session.force_spinning_stop": None}
    with pytest.raises(ValueError, match="spinning=True is not a policy; use one of run, off, always"):
        session_options(spinning=True)
