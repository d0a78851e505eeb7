"""The bad-input catalogue of issue 13, run against the CLI in-process (no interpreter start per case).

Each case: the command, the expected exit code, a fragment of the one ``error:`` line, and that no file
outside ``--out`` changed (the working directory, the data, the --init run and the model stay untouched).
Exit codes: 2 usage, 3 data, 4 model/checkpoint, 5 output conflict (README, "Exit codes").
"""
import json
import pickle
import shutil
from pathlib import Path

import pytest

from conftest import cli_in_process


def tree(*roots: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file() and not (skip is not None and p.is_relative_to(skip)):
                out[str(p)] = (p.stat().st_size, p.stat().st_mtime_ns)
    return out


@pytest.fixture
def env(tmp_path, monkeypatch, tiny_bert_dir, sentiment_csv, finetuned_run):
    """Working directory, data, model and run to watch; ADAPLER_QUIET keeps stderr to the error lines."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("ADAPLER_QUIET", "1")
    return {"tmp": tmp_path, "csv": sentiment_csv, "bert": tiny_bert_dir, "run": finetuned_run,
            "watch": [tmp_path, Path(sentiment_csv).parent, tiny_bert_dir, finetuned_run]}


def check(env, capsys, args, code: int, *fragments: str, out: Path | None = None) -> str:
    """Run ``cli.py args``; assert exit code, one error line with the fragments, nothing changed outside ``out``."""
    before = tree(*env["watch"], skip=out)
    r = cli_in_process(capsys, *args)  # an unexpected exception (traceback) fails the test here
    rc, err = r.returncode, r.stderr
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], lines[0]
    assert tree(*env["watch"], skip=out) == before, "files outside --out changed"
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), f"{out} was written although the command failed"
    return lines[0]


def model_dir(root: Path, config, files: dict | None = None) -> Path:
    root.mkdir()
    (root / "config.json").write_text(json.dumps(config))
    for name, data in (files or {}).items():
        (root / name).write_bytes(data)
    return root


# ------------------------------------------------------------------ usage errors: exit 2, before any work

@pytest.mark.parametrize("args, fragment", [
    (["evaluate", "{run}", "--data", "{csv}", "--mode", "turbo"], "'turbo' is not one of"),
    (["evaluate", "{run}", "--data", "{csv}", "--split", "val"], "'val' is not one of"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--init-weights", "random"], "--init-weights"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--length-loss", "foo"], "--length-loss"),
    (["train", "--method", "distilbert", "--init", "{run}", "--data", "{csv}", "--out", "{out}"], "--method"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--set", "saliency_epochs=abc"],
     "saliency_epochs takes an integer"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--set", "length_loss=foo"], "length_loss"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--set", "theta=maybe"], "true or false"),
    (["train", "--method", "tr-bert", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--set", "k=0"], "k must be >= 1"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--set", "max_length=100000"],
     "exceeds the 128 positions"),
    (["bench", "--threads=-2", "--out", "{out}"], "--threads"),
    (["bench", "--repeats", "0", "--out", "{out}"], "--repeats"),
    (["bench", "--baseline", "nope", "--out", "{out}"], "--baseline"),
    (["bench", "--targets", "2,0.5", "--out", "{out}"], "--targets are FLOPs speedups"),
    (["bench", "--sweeps", "{out}-no-sweeps", "--out", "{out}"], "is not a folder"),
    (["finetune", "--model", "{bert}", "--data", "{csv}", "--out", "{out}", "--epochs", "0"], "--epochs"),
    (["finetune", "--model", "{bert}", "--data", "{csv}", "--out", "{out}", "--max-length", "1"], "--max-length"),
    (["finetune", "--model", "{bert}", "--data", "{csv}", "--out", "{out}", "--max-length", "100000"],
     "exceeds the 128 positions"),
    (["finetune", "--model", "{bert}", "--data", "{csv}", "--out", "{out}", "--batch-size", "0"], "--batch-size"),
    (["sweep", "--method", "adapler", "--values", "-1", "--init", "{run}", "--data", "{csv}", "--out", "{out}"], "--values"),
    (["sweep", "--method", "adapler", "--init", "{run}", "--data", "{csv}", "--out", "{out}"],
     "give exactly one of --values"),
    (["sweep", "--method", "adapler", "--values", "1e-3", "--targets", "2", "--init", "{run}", "--data", "{csv}",
      "--out", "{out}"], "give exactly one of --values"),
    (["sweep", "--method", "adapler", "--targets", "2,0.5", "--init", "{run}", "--data", "{csv}", "--out", "{out}"],
     "--targets are FLOPs speedups"),
    (["sweep", "--method", "power-bert", "--targets", "2", "--set", "lam=1e-3", "--init", "{run}", "--data", "{csv}",
      "--out", "{out}"], "drop --set lam="),
    (["export", "{run}", "--target", "tensorflow", "--out", "{out}"], "--target"),
    (["nosuch-command"], "No such command"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--target-speedup", "0.5"],
     "target_speedup (--target-speedup"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--max-accuracy-drop", "-1"],
     "max_accuracy_drop (--max-accuracy-drop"),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--target-speedup", "2", "--knob", "0.01"],
     "drop --knob or drop --target-speedup"),
    (["train", "--method", "tr-bert", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--target-speedup", "2",
      "--set", "alpha=0.5"], "drop --set alpha="),
    (["train", "--init", "{run}", "--data", "{csv}", "--out", "{out}", "--preset", "fast"], "--preset"),
    (["finetune", "--model", "{bert}", "--data", "{csv}", "--out", "{out}", "--target-speedup", "2"],
     "No such option: --target-speedup"),  # a dense model has no knob to steer
])
def test_usage_errors(env, capsys, args, fragment):
    out = env["tmp"] / "out"
    subst = {"run": env["run"], "csv": env["csv"], "out": out, "bert": env["bert"]}
    check(env, capsys, [a.format(**subst) for a in args], 2, fragment, out=out)
    assert not out.exists()


@pytest.mark.parametrize("method", ["adapler", "power-bert", "tr-bert"])
def test_unreachable_target_speedup(env, capsys, method):
    """A target beyond what keeping only [CLS] would give on the dev lengths: refused before any training."""
    out = env["tmp"] / "out"
    check(env, capsys, ["train", "--method", method, "--init", env["run"], "--data", env["csv"], "--out", out,
                        "--target-speedup", "40"], 2, "--target-speedup 40 is above what the dev inputs allow",
          out=out)


# ------------------------------------------------------------------ bad models and checkpoints: exit 4

def test_model_config_not_an_object(env, capsys):
    m = model_dir(env["tmp"] / "m", [1, 2, 3])
    check(env, capsys, ["finetune", "--model", m, "--data", env["csv"], "--out", env["tmp"] / "o"], 4, "JSON object",
          out=env["tmp"] / "o")


@pytest.mark.parametrize("config, fragment", [
    ({"model_type": "bert", "hidden_size": 30, "num_attention_heads": 4}, "not divisible by num_attention_heads"),
    ({"model_type": "bert", "hidden_size": "big"}, "hidden_size must be a positive integer"),
    ({"model_type": "bert", "num_hidden_layers": -1}, "num_hidden_layers must be a positive integer"),
])
def test_model_config_bad_sizes(env, capsys, config, fragment):
    m = model_dir(env["tmp"] / "m", config)
    check(env, capsys, ["finetune", "--model", m, "--data", env["csv"], "--out", env["tmp"] / "o"], 4, fragment,
          out=env["tmp"] / "o")


class _Payload:
    """Unpickling this would create the marker file: proof that nothing was unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def test_pickle_only_model_is_refused_unopened(env, capsys):
    marker = env["tmp"] / "pwned"
    m = model_dir(env["tmp"] / "m", {"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4},
                  {"pytorch_model.bin": pickle.dumps(_Payload(marker))})
    check(env, capsys, ["finetune", "--model", m, "--data", env["csv"], "--out", env["tmp"] / "o"], 4,
          "pytorch_model.bin", "safetensors", out=env["tmp"] / "o")
    assert not marker.exists()


@pytest.mark.parametrize("mutate, fragment", [
    (lambda c: [c], "must hold a JSON object"),
    (lambda c: {**c, "backbone": {**c["backbone"], "hidden_size": 62}}, "not divisible"),
    (lambda c: {**c, "backbone": {**c["backbone"], "num_attention_heads": "four"}}, "positive integer"),
])
def test_checkpoint_config_broken(env, capsys, mutate, fragment):
    ckpt = env["tmp"] / "ckpt"
    shutil.copytree(env["run"] / "best", ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps(mutate(cfg)))
    env["watch"].append(ckpt)
    check(env, capsys, ["evaluate", ckpt, "--data", env["csv"]], 4, fragment)


# ------------------------------------------------------------------ outputs: exit 5, nothing replaced

def test_export_out_is_a_file(env, capsys):
    target = env["tmp"] / "file.txt"
    target.write_text("keep me")
    check(env, capsys, ["export", env["run"], "--out", target], 5, "is a file")
    assert target.read_text() == "keep me"


def test_evaluate_json_written_meanwhile_is_kept(env, capsys, monkeypatch):
    """Two evaluate runs on one --json: the one finishing second fails instead of replacing the result."""
    import adapler.api
    path = env["tmp"] / "m.json"
    real = adapler.api.evaluate_checkpoint

    def other_run_finishes_first(*a, **kw):
        metrics = real(*a, **kw)
        path.write_text('{"other": "run"}')
        return metrics

    monkeypatch.setattr(adapler.api, "evaluate_checkpoint", other_run_finishes_first)
    env["watch"].remove(env["tmp"])
    check(env, capsys, ["evaluate", env["run"], "--data", env["csv"], "--mode", "dense", "--max-eval", "4",
                        "--json", path], 5, "already exists")
    assert json.loads(path.read_text()) == {"other": "run"}


@pytest.fixture
def interrupted(env):
    run = env["tmp"] / "run"
    shutil.copytree(env["run"], run)
    state = json.loads((run / "run_state.json").read_text())
    state["epochs_done"], state["history"] = 1, state["history"][:1]
    (run / "run_state.json").write_text(json.dumps(state))
    return run, state["config"]


def _resume_args(env, run, cfg, data):
    return ["finetune", "--model", cfg["model"], "--data", data, "--out", run, "--resume", "--epochs", cfg["epochs"],
            "--max-length", cfg["max_length"], "--batch-size", cfg["batch_size"], "--lr", cfg["lr"]]


def test_resume_other_data_refused(env, capsys, interrupted):
    run, cfg = interrupted
    from conftest import write_sentiment_csv
    other = write_sentiment_csv(env["tmp"] / "other.csv", seed=9)
    check(env, capsys, _resume_args(env, run, cfg, other), 5, "other data")


def test_resume_other_label_count_refused(env, capsys, interrupted):
    run, cfg = interrupted
    rows = ["text,label"] + [f"text number {i},{('a', 'b', 'c')[i % 3]}" for i in range(60)]
    (env["tmp"] / "three.csv").write_text("\n".join(rows) + "\n")
    check(env, capsys, _resume_args(env, run, cfg, env["tmp"] / "three.csv"), 5, "3 classes")


def test_resume_other_lr_refused(env, capsys, interrupted):
    run, cfg = interrupted
    args = _resume_args(env, run, cfg, env["csv"])
    args[args.index("--lr") + 1] = 0.5
    check(env, capsys, args, 5, "lr is 0.5")


def test_existing_output_refused(env, capsys):
    check(env, capsys, ["finetune", "--model", env["bert"], "--data", env["csv"], "--out", env["run"]], 5, "--overwrite")


# ------------------------------------------------------------------ data errors: exit 3

def test_missing_data_file(env, capsys):
    check(env, capsys, ["finetune", "--model", env["bert"], "--data", env["tmp"] / "none.csv", "--out",
                        env["tmp"] / "o"], 3, "does not exist", out=env["tmp"] / "o")


def test_label_count_differs_from_init(env, capsys):
    rows = ["text,label"] + [f"text number {i},{('a', 'b', 'c')[i % 3]}" for i in range(60)]
    (env["tmp"] / "three.csv").write_text("\n".join(rows) + "\n")
    check(env, capsys, ["train", "--init", env["run"], "--data", env["tmp"] / "three.csv", "--out", env["tmp"] / "o"],
          4, "predicts 2 classes", out=env["tmp"] / "o")


# ------------------------------------------------------------------ writing only under --out

def test_bench_exports_under_out(env, monkeypatch):
    """bench used to export into ./runs/bench/exports of the working directory."""
    from adapler.bench import defaults as bench_defaults
    from adapler.bench import run as bench_run
    from adapler.bench.main import bench_command
    seen = {}
    monkeypatch.setattr(bench_defaults, "default_data", lambda spec=None: None)
    monkeypatch.setattr(bench_defaults, "default_models", lambda *a, **kw: {})
    monkeypatch.setattr(bench_run, "run_bench", lambda models, ds, **kw: seen.update(kw) or {})
    out = env["tmp"] / "b"
    bench_command("bert", out=out)
    assert seen.get("export_cache") is None or Path(seen["export_cache"]).is_relative_to(out)
    assert seen["out_dir"] == out
