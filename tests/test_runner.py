"""The one training runner: run-state formats, is_finished, resume from older states, the selection rule passed
in, --device/--precision checks, bf16 autocast on the CPU."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from adapler.checkpoint import OutputError, load_checkpoint, load_checkpoint_tokenizer
from adapler.data import load_dataset
from adapler.errors import UsageError
from adapler.training.distributed import TrainEnv, check_device_options, resolve_device
from adapler.training.runner import MostAccurate, Phase, Run, is_finished
from conftest import ROOT


def run_dir(tmp_path: Path, state: dict | None, best: bool = True, name: str = "run") -> Path:
    run = tmp_path / name
    run.mkdir()
    if best:
        (run / "best").mkdir()
        (run / "best" / "config.json").write_text("{}")
    if state is not None:
        (run / "run_state.json").write_text(json.dumps(state))
    return run


@pytest.mark.parametrize("state, finished", [
    # format 1: fine-tuning and AdapLeR counted epochs, the baselines had a flag
    ({"stage": "finetune", "epochs_done": 2, "dev_scores": [], "config": {"epochs": 2}}, True),
    ({"stage": "adapler", "epochs_done": 1, "history": [], "config": {"epochs": 2}}, False),
    ({"method": "power-bert", "phase": "retrain", "epochs_done": 1, "finished": True}, True),
    ({"method": "tr-bert", "phase": "rl", "epochs_done": 1, "finished": False}, False),
    # format 2: the flag, and the position at the end of the plan
    ({"format": 2, "phases": [[None, 2]], "phase": None, "epochs_done": 2, "finished": True}, True),
    ({"format": 2, "phases": [[None, 2]], "phase": None, "epochs_done": 1, "finished": True}, False),
    ({"format": 2, "phases": [["search", 1], ["retrain", 1]], "phase": "search", "epochs_done": 1,
      "finished": True}, False),
    ({"format": 2, "phases": [["search", 1], ["retrain", 1]], "phase": "retrain", "epochs_done": 1,
      "finished": False}, False),
])
def test_is_finished_reads_every_state_format(tmp_path, state, finished):
    assert is_finished(run_dir(tmp_path, state)) is finished


def test_is_finished_needs_best_and_a_readable_state(tmp_path):
    done = {"format": 2, "phases": [[None, 1]], "phase": None, "epochs_done": 1, "finished": True}
    assert not is_finished(run_dir(tmp_path, done, best=False, name="no-best"))
    assert not is_finished(run_dir(tmp_path, None, name="no-state"))
    broken = run_dir(tmp_path, None, name="broken")
    (broken / "run_state.json").write_text("{not json")
    assert not is_finished(broken)


def test_sweep_and_bench_ask_the_runner(tmp_path):
    from adapler.training.sweep import _finished
    from adapler.bench.defaults import finished
    for state in ({"epochs_done": 2, "config": {"epochs": 2}}, {"finished": False}):
        run = run_dir(tmp_path, state, name=f"r{len(list(tmp_path.iterdir()))}")
        assert _finished(run, "adapler") == finished(run) == is_finished(run)


def test_finetune_resumes_from_an_old_format_state(finetuned_run, sentiment_csv, tmp_path, one_thread):
    """A run_state.json written before the runner (fine-tuning's dev_scores, no best, no plan) is continued."""
    from adapler.training.finetune import FinetuneConfig, finetune
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    state = json.loads((run / "run_state.json").read_text())
    old = {"stage": "finetune", "epochs_done": 1, "dev_scores": state["history"][:1], "config": state["config"],
           "fingerprint": state["fingerprint"]}
    (run / "run_state.json").write_text(json.dumps(old))
    assert not is_finished(run)
    finetune(load_dataset(sentiment_csv), run, FinetuneConfig(**state["config"]), resume=True)
    new = json.loads((run / "run_state.json").read_text())
    assert new["format"] == 2 and new["finished"] and [h["epoch"] for h in new["history"]] == [1, 2]
    assert new["world_size"] == 1 and new["device"] == "cpu" and new["precision"] == "fp32"
    assert json.loads((run / "dev_scores.json").read_text()) == new["history"] and is_finished(run)
    best = max(new["history"], key=lambda r: r["dev_accuracy"])["epoch"]  # the first of equals
    assert new["best"]["epoch"] == best and load_checkpoint(run / "best")[1]["epoch"] == best


def test_adapler_resumes_from_an_old_format_state(finetuned_run, sentiment_csv, tmp_path, one_thread):
    from adapler.training.train_adapler import AdapLeRConfig, train_adapler
    data = load_dataset(sentiment_csv, max_train=16)
    cfg = AdapLeRConfig(epochs=2, batch_size=16, saliency_epochs=1)
    out = train_adapler(data, finetuned_run, tmp_path / "ad", cfg)
    state = json.loads((out / "run_state.json").read_text())
    h1 = state["history"][0]
    old = {"stage": "adapler", "epochs_done": 1, "history": [h1], "config": state["config"],
           "best": {"speedup": h1["dev_flops_speedup"], "epoch": 1, "qualified": True, "dev_accuracy": h1["dev_accuracy"]},
           "fingerprint": state["fingerprint"]}
    (out / "run_state.json").write_text(json.dumps(old))
    train_adapler(data, finetuned_run, out, cfg, resume=True)
    new = json.loads((out / "run_state.json").read_text())
    assert [h["epoch"] for h in new["history"]] == [1, 2] and new["finished"] and new["phases"] == [[None, 2]]


def test_resume_refuses_another_world_size(finetuned_run, sentiment_csv, tmp_path):
    from adapler.training.finetune import FinetuneConfig, finetune
    run = tmp_path / "run"
    shutil.copytree(finetuned_run, run)
    state = json.loads((run / "run_state.json").read_text())
    state.update(world_size=4, epochs_done=1, history=state["history"][:1])
    (run / "run_state.json").write_text(json.dumps(state))
    before = (run / "run_state.json").read_text()
    with pytest.raises(OutputError, match=r"trained by 4 process\(es\), this launch has 1; resume with "
                                          r"`torchrun --nproc-per-node 4`"):
        finetune(load_dataset(sentiment_csv), run, FinetuneConfig(**state["config"]), resume=True)
    assert (run / "run_state.json").read_text() == before


class LeastAccurate:
    """A rule of the caller's: the runner must keep what it says, not its own idea of best."""
    def better(self, row, best_row):
        return best_row is None or row["dev_accuracy"] <= best_row["dev_accuracy"]

    def record(self, row):
        return {"selection": "least accurate (test rule)"}

    def closing_note(self, row, where, candidates=()):
        return f"note from the rule: {where}"


@pytest.mark.parametrize("selection, chosen", [(MostAccurate(), 1), (LeastAccurate(), 3)])
def test_selection_rule_is_passed_in(finetuned_run, sentiment_csv, tmp_path, selection, chosen):
    """Three epochs that change nothing (equal accuracy): the default keeps the first, the given rule the last."""
    from adapler.training.common import TrainData
    data = load_dataset(sentiment_csv, max_train=8)
    model, cfg = load_checkpoint(finetuned_run / "best")
    tok = load_checkpoint_tokenizer(finetuned_run / "best")
    steps = []
    run = Run(tmp_path / "out", model, data, tok, cfg["max_length"], "finetune", {"epochs": 3}, {"stage": "test"},
              selection=selection, eval_mode="dense")
    run.out.mkdir()
    phase = Phase(None, 3, lambda start: lambda b: steps.append(len(b)) or {"loss": 0.5})
    run.run([phase], TrainData.make(data, tok, cfg["max_length"]), batch_size=4, seed=0)
    assert steps == [4, 4] * 3
    best = json.loads((run.out / "best" / "config.json").read_text())
    assert best["epoch"] == chosen and json.loads((run.out / "run_state.json").read_text())["best"]["epoch"] == chosen
    assert ("selection" in best) == isinstance(selection, LeastAccurate)
    assert [h["loss"] for h in json.loads((run.out / "history.json").read_text())] == [0.5] * 3


# ---------------------------------------------------------------------------------------------- devices

def test_device_and_precision_checks():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="--device must be auto, cpu, cuda or cuda:N, got 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(UsageError, match="--precision fp16 needs a GPU"):
        check_device_options("cpu", "fp16")
    with pytest.raises(UsageError, match="--precision must be one of"):
        check_device_options("cpu", "fp8")
    assert check_device_options("cpu", "bf16") == torch.device("cpu")  # CPU autocast has bf16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_gpu_is_one_line(tmp_path, capsys, monkeypatch, tiny_bert_dir, sentiment_csv):
    sys.path.insert(0, str(ROOT))
    import cli
    monkeypatch.setenv("ADAPLER_QUIET", "1")
    for extra, fragment in ((["--device", "cuda"], "--device cuda: torch sees no GPU"),
                            (["--device", "cuda:1"], "--device cuda:1: torch sees no GPU"),
                            (["--precision", "fp16", "--device", "cpu"], "--precision fp16 needs a GPU"),
                            (["--device", "gpu0"], "--device must be auto, cpu, cuda or cuda:N")):
        capsys.readouterr()
        rc = cli.run_cli(["finetune", "--model", str(tiny_bert_dir), "--data", sentiment_csv,
                          "--out", str(tmp_path / "o"), *extra])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert rc == 2 and len(errors) == 1 and fragment in errors[0], err
        assert not (tmp_path / "o").exists()


def test_bf16_autocast_trains_on_the_cpu(tiny_bert_dir, sentiment_csv, tmp_path, one_thread):
    """--precision bf16 on the CPU: the forward runs in bfloat16, weights and losses stay float32."""
    from adapler.training.finetune import FinetuneConfig, finetune
    data = load_dataset(sentiment_csv, max_train=16)
    cfg = FinetuneConfig(model=str(tiny_bert_dir), epochs=1, batch_size=8, max_length=16, lr=5e-4)
    fp32 = finetune(data, tmp_path / "fp32", cfg, device="cpu")
    bf16 = finetune(data, tmp_path / "bf16", cfg, device="cpu", precision="bf16")
    state = json.loads((bf16 / "run_state.json").read_text())
    assert state["precision"] == "bf16" and state["finished"]
    m32, _ = load_checkpoint(fp32 / "best")
    m16, _ = load_checkpoint(bf16 / "best")
    a, b = m32.classifier.weight, m16.classifier.weight
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.05)  # rounded differently, trained alike
    loss32 = json.loads((fp32 / "dev_scores.json").read_text())[0]["train_loss"]
    loss16 = state["history"][0]["train_loss"]
    assert loss16 == pytest.approx(loss32, abs=0.05)


def test_env_shard_weights_uneven_batches():
    """Rank shares of a global batch of 5 on 2 ranks are 2/5 and 3/5; a rank without a row gets share 0."""
    from adapler.data import Encoded
    b = Encoded(torch.arange(10).view(5, 2), torch.ones(5, 2, dtype=torch.long), torch.zeros(5, 2, dtype=torch.long),
                torch.arange(5), [str(i) for i in range(5)], 0)
    shares, rows = [], []
    for rank in range(2):
        env = TrainEnv(rank=rank, world_size=2)
        rows.append(env.shard(b).ids)
        shares.append(env.share)
    assert rows == [["0", "1"], ["2", "3", "4"]] and shares == [0.4, 0.6]
    env = TrainEnv(rank=0, world_size=3)  # rows 0..1 go to ranks 1 and 2
    one = Encoded(b.input_ids[:2], b.attention_mask[:2], b.token_type_ids[:2], b.labels[:2], ["0", "1"], 0)
    assert env.shard(one).ids == ["0"] and env.share == 0.0
