"""CLI: bad input gives one line naming the problem and the fix, never a traceback.

The cases run in-process (``cli.run_cli``, as in test_cli_catalogue.py): an interpreter start costs about 8 s
here, mostly imports. One case goes through a real interpreter, so that the entry point itself (exit code, no
traceback on stderr) stays covered."""
import json

import pytest

from conftest import cli_in_process, cli_subprocess


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args)``: ``cli.py args`` in-process, quiet."""
    monkeypatch.setenv("ADAPLER_QUIET", "1")
    return lambda *args: cli_in_process(capsys, *args)


def one_line_error(r, *fragments):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(err) == 1, r.stderr
    for f in fragments:
        assert f in err[0], err[0]


def test_missing_data_path_through_the_interpreter(tmp_path):
    r = cli_subprocess("finetune", "--data", tmp_path / "missing.csv", "--out", tmp_path / "o")
    one_line_error(r, "does not exist")
    assert r.returncode == 3  # a data error (README, "Exit codes")
    assert not (tmp_path / "o").exists()


def test_missing_column(tmp_path, cli):
    (tmp_path / "d.csv").write_text("n,label\n3,1\n")  # no column name fits and no column holds text
    one_line_error(cli("finetune", "--data", tmp_path / "d.csv", "--out", tmp_path / "o"), "--text-col")


def test_one_class(tmp_path, cli):
    (tmp_path / "d.csv").write_text("text,label\n" + "".join(f"t{i},1\n" for i in range(20)))
    one_line_error(cli("finetune", "--data", tmp_path / "d.csv", "--out", tmp_path / "o"), "needs at least two")


def test_model_not_bert(tmp_path, sentiment_csv, cli):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    one_line_error(cli("finetune", "--model", tmp_path / "m", "--data", sentiment_csv, "--out", tmp_path / "o"),
                   "not a BERT")


def test_evaluate_missing_checkpoint(tmp_path, sentiment_csv, cli):
    one_line_error(cli("evaluate", tmp_path / "nope", "--data", sentiment_csv), "does not exist")


def test_export_not_a_checkpoint(tmp_path, tiny_bert_dir, cli):
    one_line_error(cli("export", tiny_bert_dir, "--out", tmp_path / "o"), "not an adapler checkpoint")


def test_existing_output_not_overwritten(tmp_path, finetuned_run, sentiment_csv, cli):
    marker = (finetuned_run / "dev_scores.json").read_text()
    one_line_error(cli("finetune", "--data", sentiment_csv, "--out", finetuned_run), "--overwrite")
    assert (finetuned_run / "dev_scores.json").read_text() == marker


def test_evaluate_json(tmp_path, finetuned_run, sentiment_csv, cli):
    out = tmp_path / "m.json"
    r = cli("evaluate", finetuned_run, "--data", sentiment_csv, "--batch-size", 4, "--mode", "dense", "--json", out)
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    for key in ("accuracy", "flops_speedup", "mean_kept_lengths", "n_examples", "batch_size"):
        assert key in m
    assert m["batch_size"] == 4 and len(m["mean_kept_lengths"]) == 4 and m["flops_speedup"] == pytest.approx(1.0)
    p = m["predictions"]  # per example, in split order: what a paired comparison of two models reads
    assert len(p["ids"]) == len(p["labels"]) == len(p["preds"]) == m["n_examples"] == len(set(p["ids"]))
    assert sum(a == b for a, b in zip(p["labels"], p["preds"])) / m["n_examples"] == pytest.approx(m["accuracy"])
    one_line_error(cli("evaluate", finetuned_run, "--data", sentiment_csv, "--json", out), "--overwrite")


def test_bench_bad_lengths(tmp_path, cli):
    one_line_error(cli("bench", "--lengths", "64,x", "--out", tmp_path / "b"), "--lengths")
    assert not (tmp_path / "b").exists()


def test_train_unknown_adapler_setting(tmp_path, finetuned_run, sentiment_csv, cli):
    one_line_error(cli("train", "--init", finetuned_run, "--data", sentiment_csv, "--out", tmp_path / "a",
                       "--set", "saliency_epoch=1"), "unknown adapler option(s) saliency_epoch", "saliency_epochs")
    assert not (tmp_path / "a").exists()


def test_sweep_unknown_setting(tmp_path, finetuned_run, sentiment_csv, cli):
    one_line_error(cli("sweep", "--method", "tr-bert", "--values", "0.5", "--init", finetuned_run, "--data",
                       sentiment_csv, "--out", tmp_path / "s", "--set", "K=4"), "unknown tr-bert option(s) K", "k,")
    assert not (tmp_path / "s").exists()
