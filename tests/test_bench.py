"""bench/: paired ABBA timing, ratios, backends and skip reasons, results schema, reports, interruption, compare.

No timing thresholds: timings here only have to exist and be paired. Tiny random 2-layer models."""
import copy
import json

import pytest
import torch

from adapler.bench.compare import compare_results
from adapler.bench.report import LATENCY, MODEL, TOP, ceiling_rows, check_schema
from adapler.bench.run import run_bench
from adapler.bench.timing import ratio, summarize, time_paired
from conftest import tiny_config

PNG = b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ timing

def test_ratio_exact_paired_numbers():
    # 3 inputs x 2 repeats; per-input medians: dense 4.5, 6, 2 / other 2, 3, 1 -> ratios 2.25, 2, 2
    r = ratio([4.0, 5.0, 6.0, 6.0, 1.0, 3.0], [2.0, 2.0, 2.0, 4.0, 1.0, 1.0], repeats=2)
    assert r == {"median_of_ratios": 2.0, "ratio_of_medians": 2.25, "n_pairs": 3}
    # repeats=1: per-call pairs 2, 4, 1 -> median 2; medians 3 / 2
    assert ratio([2.0, 8.0, 3.0], [1.0, 2.0, 3.0]) == {"median_of_ratios": 2.0, "ratio_of_medians": 1.5, "n_pairs": 3}
    with pytest.raises(ValueError):
        ratio([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        ratio([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], repeats=2)


def test_summarize():
    s = summarize([0.001, 0.002, 0.003, 0.004])
    assert s["n"] == 4
    assert s["median_ms"] == pytest.approx(2.5) and s["mean_ms"] == pytest.approx(2.5)
    assert s["p90_ms"] == pytest.approx(3.7) and s["min_ms"] == pytest.approx(1.0)


def test_time_paired_warms_each_input_then_abba():
    calls, clock = [], [0.0]
    cost = {"A": 2.0, "B": 1.0}

    def make(name):
        def fn(x):
            calls.append((name, x))
            clock[0] += cost[name]
        return fn

    times = time_paired({"A": make("A"), "B": make("B")}, ["x", "y"], warmup=1, repeats=2, timer=lambda: clock[0])
    # per input: warm-up A B (untimed), then A B | B A (the order flips at every timed repetition)
    assert calls == [(n, x) for x in "xy" for n in "AB" + "ABBA"]
    assert times == {"A": [2.0] * 4, "B": [1.0] * 4}  # warm-up calls are not timed
    assert ratio(times["A"], times["B"], repeats=2)["median_of_ratios"] == 2.0  # B is twice as fast as A

    calls.clear()
    cost["C"] = 1.0
    time_paired({n: make(n) for n in "ABC"}, ["z"], warmup=0, repeats=3)
    assert "".join(n for n, _ in calls) == "ABC" + "CBA" + "ABC"
    calls.clear()
    time_paired({n: make(n) for n in "AB"}, ["z"], warmup=0, repeats=2, order="fixed")
    assert "".join(n for n, _ in calls) == "ABAB"
    with pytest.raises(ValueError, match="order"):
        time_paired({"A": make("A")}, ["z"], order="random")


# ------------------------------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, tiny_bert_dir):
    from transformers import AutoTokenizer

    from adapler.checkpoint import save_checkpoint
    from adapler.encoder import PrunedBertClassifier
    from adapler.selectors import ContributionSelector
    tok = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    d = tmp_path_factory.mktemp("bench_ckpts")
    torch.manual_seed(0)
    cfg = tiny_config(layers=2, hidden=32)
    dense = PrunedBertClassifier(cfg, 2).eval()
    sel = ContributionSelector(cfg.hidden_size, 2)
    pruned = PrunedBertClassifier(cfg, 2, sel).eval()
    pruned.load_state_dict(dense.state_dict(), strict=False)
    with torch.no_grad():  # sharpen the random CPs so that tokens really are dropped
        sel.eta.fill_(0.9)
        for cp in sel.cps:
            cp.fc1.weight.mul_(8.0)
            cp.fc2.weight.mul_(8.0)
    labels = ["negative", "positive"]
    return {"bert": save_checkpoint(dense, d / "bert", tokenizer=tok, label_names=labels, max_length=32),
            "adapler": save_checkpoint(pruned, d / "adapler", tokenizer=tok, label_names=labels, max_length=32)}


@pytest.fixture(scope="module")
def data(sentiment_csv):
    from adapler.data import load_dataset
    return load_dataset(sentiment_csv)


QUICK = dict(n_latency_examples=6, repeats=2, threads=1)


@pytest.fixture(scope="module")
def full_run(ckpts, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out")
    return out, run_bench(ckpts, data, batch_sizes=(1, 3), lengths=(8, 16), n_length_inputs=2, out_dir=out, **QUICK)


# ------------------------------------------------------------------------------------------ full run

def test_deployed_table(full_run):
    """Every model on every ORT form in one paired run, against the optimized dense fp32 graph."""
    out, r = full_run
    assert r["backends"]["ort-opt"]["status"] == r["backends"]["ort-int8"]["status"] == "ran"
    batch = [e for e in r["deployed"] if "length" not in e]
    assert [e["batch_size"] for e in batch] == [1, 3]
    assert sorted(e["length"] for e in r["deployed"] if "length" in e) == [8, 16]
    for e in r["deployed"]:
        assert e["reference"] == "bert@ort-opt"
        forms = {f"{m}@{b}" for m in ("bert", "adapler") for b in ("ort-opt", "ort-int8")}
        assert forms <= set(e["models"]) and set(e["speedup"]) == set(e["models"]) - {"bert@ort-opt"}
        assert e["models"]["bert@ort-opt"]["n"] == e["models"]["adapler@ort-int8"]["n"]  # paired
        assert set(e["speedup_same_precision"]) == {n for n in e["models"] if n.startswith("adapler@")}
        assert e["flops_speedup"]["adapler@ort-int8"] == e["flops_speedup"]["adapler@ort-opt"] > 1.0
    assert set(r["fixed_cost"]["deployed"]) == set(r["deployed"][0]["models"])  # per-call cost of every form
    assert check_schema(r) == []
    md = (out / "results.md").read_text()
    assert "## Deployed speed" in md and "| 3 | adapler@ort-int8 |" in md
    assert "| 3 | adapler@ort-packed |" in md and "| 3 | adapler@ort-packed | `model.ort.onnx` |" in md
    exports = out / "exports"
    assert (exports / "bert" / "reference" / "model.hf.opt.int8.onnx").exists()
    assert (exports / "adapler" / "model.ort.int8.onnx").exists()


def test_batch1_ceiling_from_the_dense_per_call_cost():
    """T / (a + (T - a) / S) per pruned form against the dense model in the same form; forms whose dense
    intercept is noise (<= 0) or missing are left out, and nothing is said without --lengths."""
    entry = {"reference": "bert@ort-opt", "batch_size": 1,
             "models": {"bert@ort-opt": {"median_ms": 10.0}, "bert@ort-int8": {"median_ms": 6.0},
                        "adapler@ort-opt": {"median_ms": 8.0}, "adapler@ort-int8": {"median_ms": 5.0},
                        "adapler@ort-custom": {"median_ms": 9.0}},
             "speedup_same_precision": {"adapler@ort-opt": {"median_of_ratios": 1.25},
                                        "adapler@ort-int8": {"median_of_ratios": 1.2},
                                        "adapler@ort-custom": {"median_of_ratios": 1.1}},
             "flops_speedup": {"adapler@ort-opt": 2.0, "adapler@ort-int8": 2.0, "adapler@ort-custom": 2.0}}
    results = {"deployed": [entry, {**entry, "batch_size": 32}],
               "fixed_cost": {"deployed": {"bert@ort-opt": {"intercept_ms": 4.0}, "bert@ort-int8": {"intercept_ms": -0.1}}}}
    # 10 / (4 + 6 / 2) = 1.4286; measured 1.25 = 0.625 of the FLOPs, 0.875 of the ceiling
    assert ceiling_rows(results) == [["adapler@ort-opt", "2.00×", "4.00 of 10.00", "1.43×", "1.25×", "0.71", "0.62",
                                      "0.88"]]
    assert ceiling_rows({"deployed": [entry], "fixed_cost": {}}) == []


def test_deployed_table_has_the_packed_forms(full_run):
    """Both models have a fused graph: packed fp32 and int8 rows in the same paired run, parity with the padded
    graph, and the padded graph's padding fraction."""
    out, r = full_run
    packed = {f"{m}@{b}" for m in ("bert", "adapler") for b in ("ort-packed", "ort-packed-int8")}
    assert r["backends"]["ort-packed"]["status"] == r["backends"]["ort-packed-int8"]["status"] == "ran"
    for e in r["deployed"]:
        assert packed <= set(e["models"]) and set(e["packed"]) == packed
        assert e["models"]["adapler@ort-packed"]["n"] == e["models"]["bert@ort-opt"]["n"]  # paired with the reference
        assert {"adapler@ort-packed", "bert@ort-packed"} <= set(e["speedup"])
        # the pruned padded row runs the very graph that is packed; the dense ort-opt row is the standard export
        assert set(e["packed_vs_padded"]) == {"adapler@ort-packed", "adapler@ort-packed-int8"}
        assert e["speedup_same_precision"]["adapler@ort-packed"]["n_pairs"] == e["n_inputs"]  # vs bert@ort-packed
        for name in ("bert@ort-packed", "adapler@ort-packed"):
            c = e["packed"][name]
            assert c["padded_graph"] == "model.ort.onnx" and c["kept_lengths_equal"] is True
            assert c["max_abs_logit_diff"] <= 1e-4
        assert e["packed"]["adapler@ort-packed-int8"]["padded_graph"] == "model.ort.int8.onnx"
        assert e["packed"]["adapler@ort-packed-int8"]["kept_lengths_equal"] is True
        for c in e["packed"].values():
            assert len(c["padding_fraction"]) == 2 and all(0.0 <= v < 1.0 for v in c["padding_fraction"])
        dense = e["packed"]["bert@ort-packed"]["padding_fraction"]
        assert dense[0] == dense[1]  # the dense model keeps every token: the input's padding at every layer
        if e["batch_size"] == 1:
            assert all(v == 0.0 for c in e["packed"].values() for v in c["padding_fraction"])
    assert "adapler@ort-packed" in r["fixed_cost"]["deployed"]
    assert (out / "exports" / "adapler" / "model.ort.packed.int8.onnx").exists()


def test_terminal_table_fits_100_columns(full_run):
    import io

    from rich.console import Console

    from adapler.bench.report import print_summary
    buf = io.StringIO()
    print_summary(full_run[1], Console(file=buf, width=100, color_system=None))
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "adapler@ort-packed-int8" in text and "vs padded" in text  # model names are never wrapped
    assert "batch 3: padding fraction of the padded graphs (mean over layers) bert" in text.replace("\n", " ")


def test_model_without_fused_graph_gets_no_packed_row(tmp_path, full_run, ckpts, data, tiny_bert_dir,
                                                        monkeypatch):
    from transformers import AutoTokenizer

    from adapler.checkpoint import save_checkpoint
    from adapler.encoder import PrunedBertClassifier
    from adapler.selectors import build_selector
    cfg = tiny_config(layers=2, hidden=32)
    model = PrunedBertClassifier(cfg, 2, build_selector("power-bert", cfg, {"retention": [8, 4]})).eval()
    pb = save_checkpoint(model, tmp_path / "pb", tokenizer=AutoTokenizer.from_pretrained(str(tiny_bert_dir)),
                         label_names=["negative", "positive"], max_length=32)
    lines = []
    monkeypatch.setattr("adapler.bench.deployed.log", lines.append)
    r = run_bench({**ckpts, "power-bert": pb}, data, backends=("ort-opt", "ort-packed"), batch_sizes=(2,), lengths=(),
                  out_dir=tmp_path / "out", plots=False, export_cache=full_run[0] / "exports", **QUICK)
    (e,) = r["deployed"]
    assert set(e["models"]) == {"bert@ort-opt", "adapler@ort-opt", "bert@ort-packed", "adapler@ort-packed"}
    assert set(e["packed"]) == {"bert@ort-packed", "adapler@ort-packed"}
    reason = r["backends"]["ort-packed"]["skipped_models"]["power-bert"]
    assert r["backends"]["ort-packed"]["status"] == "ran"
    assert "'power-bert' has no fused ORT graph" in reason and "no model.ort.packed.onnx" in reason
    assert check_schema(r) == []
    assert f"**ort-packed** / power-bert: {reason}" in (tmp_path / "out" / "results.md").read_text()
    assert f"deployed: power-bert@ort-packed skipped[/yellow] ({reason})" in "\n".join(lines)  # said, not only in the JSON


def test_schema_checks_the_packed_fields(full_run):
    r = copy.deepcopy(full_run[1])
    e = r["deployed"][0]
    e["packed"]["adapler@ort-packed"]["kept_lengths_equal"] = "yes"
    del e["packed_vs_padded"]
    assert check_schema(r) == ["deployed[0].packed_vs_padded: missing",
                               "deployed[0].packed.adapler@ort-packed.kept_lengths_equal: str is not bool"]
    for e in r["deployed"]:  # a file from before the packed rows
        e.pop("packed"), e.pop("packed_vs_padded", None)
    assert check_schema(r) == []


def test_results_schema(full_run):
    out, r = full_run
    assert check_schema(r) == []
    saved = json.loads((out / "results.json").read_text())
    assert check_schema(saved) == [] and saved["status"] == "finished"
    assert list(saved["models"]) == ["bert", "adapler"]
    assert saved["models"]["bert"]["flops_speedup"] == 1.0 and saved["models"]["adapler"]["flops_speedup"] > 1.0
    assert len(saved["models"]["adapler"]["mean_kept_lengths"]) == 2
    # the pruned model's paired accuracy difference to the dense one; per-example predictions stay out of the file
    vs = saved["models"]["adapler"]["accuracy_vs_dense"]
    a, b = saved["models"]["adapler"]["accuracy"], saved["models"]["bert"]["accuracy"]
    assert vs["diff_points"] == pytest.approx(100 * (a - b)) and vs["ci95_points"][0] <= vs["diff_points"] <= vs["ci95_points"][1]
    assert 0 <= vs["mcnemar_p"] <= 1 and "accuracy_vs_dense" not in saved["models"]["bert"]
    assert not any("predictions" in m for m in saved["models"].values())
    from adapler.bench.deployed import ONLY_HERE
    ran = [b for b, s in saved["backends"].items() if s["status"] == "ran" and b not in ONLY_HERE]
    assert "torch" in ran and "ort-std" in ran
    assert {(e["backend"], e["batch_size"]) for e in saved["latency"]} == {(b, s) for b in ran for s in (1, 3)}
    assert {(e["backend"], e["length"]) for e in saved["latency_vs_length"]} == {(b, n) for b in ran for n in (8, 16)}
    for e in saved["latency"] + saved["latency_vs_length"]:
        assert set(e["models"]) == {"bert", "adapler"} and set(e["speedup"]) == {"adapler"}  # dense is the reference
        assert e["models"]["bert"]["n"] == e["models"]["adapler"]["n"] == e["n_inputs"] * 2  # same inputs, paired
        assert e["speedup"]["adapler"]["n_pairs"] == e["n_inputs"]
        assert isinstance(e["speedup"]["adapler"]["median_of_ratios"], float)
    assert saved["latency"][0]["n_inputs"] == 6 and saved["latency"][1]["examples_per_input"] == 3
    env = saved["environment"]
    assert env["ort_spinning"] == "run" and env["torch_threads"] == 1 and "torch" in env["versions"]
    assert set(saved["fixed_cost"]) == set(ran) | {"deployed"}


def test_readme_documents_every_key():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "bench" / "README.md").read_text()
    for key in list(TOP) + list(MODEL) + list(LATENCY):
        assert f"`{key}`" in doc or f"{key}" in doc.replace("`", ""), key


def test_backends_skipped_with_reasons(full_run):
    from adapler.plugins.token_drop.trt.qdp import TENSORRT_AVAILABLE, TENSORRT_UNAVAILABLE_REASON
    out, r = full_run
    if torch.cuda.is_available() or TENSORRT_AVAILABLE:
        pytest.skip("this machine has CUDA/TensorRT")
    assert r["backends"]["torch-cuda"] == {"status": "skipped", "reason": "torch sees no CUDA device",
                                           "skipped_models": {"bert": "torch sees no CUDA device",
                                                              "adapler": "torch sees no CUDA device"}}
    assert r["backends"]["tensorrt"]["status"] == "skipped"
    assert r["backends"]["tensorrt"]["reason"] == TENSORRT_UNAVAILABLE_REASON
    custom = r["backends"]["ort-custom"]
    assert custom["status"] == "ran" or "build-plugins" in custom["reason"]
    md = (out / "results.md").read_text()
    assert "## Skipped" in md and "torch sees no CUDA device" in md and TENSORRT_UNAVAILABLE_REASON in md


def test_reports_and_plots_written(full_run):
    out, r = full_run
    md = (out / "results.md").read_text()
    for heading in ("## Accuracy and FLOPs", "## Latency (paired, interleaved)", "## Latency vs sequence length",
                    "## Environment", "| torch | 1 | adapler |", "vs bert (95 % interval)"):
        assert heading in md
    assert r["files"]["accuracy_vs_flops"] == "accuracy_vs_flops.png"
    for name in ("accuracy_vs_flops.png", "latency_vs_length.png"):
        blob = (out / name).read_bytes()
        assert blob.startswith(PNG) and len(blob) > 5000
    assert (out / "exports" / "adapler" / "model.std.onnx").exists()


def test_accuracy_plot_with_sweep_pareto(tmp_path, full_run):
    from adapler.bench.plots import pareto_front, plot_accuracy_vs_flops
    assert pareto_front([(1.0, 0.9), (2.0, 0.85), (1.5, 0.8), (3.0, 0.86)]) == [(1.0, 0.9), (3.0, 0.86)]
    rows = [{"method": "adapler", "knob": "phi", "value": v, "dev_accuracy": a, "test_accuracy": a,
             "flops_speedup": s, "mean_kept_lengths": [5.0, 3.0], "checkpoint": "x"}
            for v, a, s in ((0.001, 0.9, 1.5), (0.01, 0.85, 3.0), (0.1, 0.7, 2.0))]
    (tmp_path / "sweep-adapler.json").write_text(json.dumps(rows))
    path = plot_accuracy_vs_flops(full_run[1], tmp_path / "acc.png", tmp_path)
    assert path.read_bytes().startswith(PNG)


# ------------------------------------------------------------------------------------------ safety

def test_overwrite_refused(tmp_path, ckpts, data):
    from adapler.bench.main import bench_command
    (tmp_path / "results.json").write_text('{"keep": true}')
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_bench(ckpts, data, out_dir=tmp_path)
    with pytest.raises(FileExistsError, match="--overwrite"):  # before any model is looked up or trained
        bench_command("all", out=tmp_path, cache=tmp_path / "nothing-here")
    assert json.loads((tmp_path / "results.json").read_text()) == {"keep": True}
    assert not (tmp_path / "nothing-here").exists()


def test_bench_command_with_given_checkpoints(tmp_path, ckpts, sentiment_csv):
    from adapler.bench import BenchError
    from adapler.bench.main import bench_command, parse_batch_sizes
    assert parse_batch_sizes("1, 32") == (1, 32)
    with pytest.raises(BenchError, match="batch-sizes"):
        parse_batch_sizes("1,x")
    r = bench_command("bert", ckpt=ckpts["adapler"], baseline_ckpts=[ckpts["bert"]], data=sentiment_csv,
                      batch_sizes="2", out=tmp_path / "res", cache=tmp_path / "cache", backends=("torch",),
                      lengths=(), plots=False, **QUICK)
    assert list(r["models"]) == ["bert", "adapler"] and r["config"]["batch_sizes"] == [2]
    assert r["status"] == "finished" and check_schema(r) == []


def test_parse_lengths():
    from adapler.bench import BenchError
    from adapler.bench.main import parse_lengths
    assert parse_lengths("64, 128,512") == (64, 128, 512)
    assert parse_lengths("none") == () and parse_lengths("") == ()
    with pytest.raises(BenchError, match="comma-separated"):
        parse_lengths("64,long")
    with pytest.raises(BenchError, match="2..512"):
        parse_lengths("64,1024")


def test_interrupt_keeps_finished_measurements(tmp_path, ckpts, data):
    from adapler.bench.backends import BACKENDS
    calls = {"n": 0}

    def boom(spec, ctx):
        def run(feed):
            calls["n"] += 1
            if calls["n"] > 3:  # after the warm-up of both models, in the first timed pair
                raise KeyboardInterrupt
        return run

    with pytest.raises(KeyboardInterrupt):
        run_bench(ckpts, data, backends={"torch": BACKENDS["torch"], "boom": boom}, batch_sizes=(1, 2), lengths=(),
                  out_dir=tmp_path, plots=False, **QUICK)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["status"] == "interrupted" and check_schema(saved) == []
    assert [(e["backend"], e["batch_size"]) for e in saved["latency"]] == [("torch", 1), ("torch", 2)]
    assert set(saved["models"]) == {"bert", "adapler"}
    assert "interrupted" in (tmp_path / "results.md").read_text()


def test_compare_flags_regressions(tmp_path, full_run, ckpts, data):
    r = full_run[1]
    assert compare_results(r, r, 0.1) == []
    old = copy.deepcopy(r)
    old["models"]["adapler"]["accuracy"] += 0.02  # 2 points better before
    old["models"]["adapler"]["flops_speedup"] *= 1.5
    old["latency"][0]["speedup"]["adapler"]["median_of_ratios"] = 1000.0
    regs = compare_results(old, r, 0.1)
    assert {g["kind"] for g in regs} == {"accuracy", "flops_speedup", "latency_speedup"}
    lat = next(g for g in regs if g["kind"] == "latency_speedup")
    assert (lat["backend"], lat["batch_size"], lat["model"]) == (r["latency"][0]["backend"], 1, "adapler")
    old["models"]["adapler"]["accuracy"] = r["models"]["adapler"]["accuracy"] + 0.004  # within 0.5 pt
    assert "accuracy" not in {g["kind"] for g in compare_results(old, r, 0.1)}

    old["models"]["adapler"]["accuracy"] += 0.02
    (tmp_path / "old.json").write_text(json.dumps(old))
    exported = full_run[0] / "exports" / "adapler" / "model.std.onnx"
    stamp = exported.stat().st_mtime_ns
    new = run_bench(ckpts, data, backends=("torch", "ort-std"), batch_sizes=(1,), lengths=(), out_dir=tmp_path / "new",
                    compare=tmp_path / "old.json", plots=False, export_cache=full_run[0] / "exports", **QUICK)
    assert exported.stat().st_mtime_ns == stamp  # the cached export of an unchanged checkpoint is reused
    kinds = {g["kind"] for g in new["regressions"]}
    assert {"accuracy", "flops_speedup", "latency_speedup"} <= kinds and check_schema(new) == []
    assert new["compare"]["path"] == str(tmp_path / "old.json")
    assert "REGRESSION" in (tmp_path / "new" / "results.md").read_text()


# ------------------------------------------------------------------------------------------ defaults

def _fake_run(path, ckpt, state):
    import shutil
    shutil.copytree(ckpt, path / "best")
    (path / "run_state.json").write_text(json.dumps(state))
    return path


def test_default_models_reuses_finished_runs(tmp_path, ckpts, data, monkeypatch):
    from adapler.bench.defaults import default_models, parse_baseline
    assert parse_baseline("all") == ("power-bert", "tr-bert", "keep-first") and parse_baseline("bert") == ()
    assert parse_baseline("keep-first") == ("keep-first",)
    with pytest.raises(ValueError, match="--baseline"):
        parse_baseline("nope")
    demo, cache = tmp_path / "demo", tmp_path / "cache"
    _fake_run(demo / "finetune", ckpts["bert"], {"epochs_done": 2, "config": {"epochs": 2}})
    _fake_run(demo / "adapler", ckpts["adapler"], {"epochs_done": 3, "config": {"epochs": 3}})
    _fake_run(cache / "power-bert", ckpts["adapler"], {"finished": True})
    models = default_models(cache, ("power-bert",), demo=demo)
    assert models == {"bert": demo / "finetune" / "best", "adapler": demo / "adapler" / "best",
                      "power-bert": cache / "power-bert" / "best"}
    _fake_run(cache / "finetune", ckpts["bert"], {"epochs_done": 2, "config": {"epochs": 2}})
    _fake_run(cache / "adapler", ckpts["adapler"], {"epochs_done": 2, "config": {"epochs": 2}})
    assert list(default_models(cache, (), demo=None)) == ["bert", "adapler"]
    # a missing model is trained by the recipe layer with the preset's config for its method
    from adapler import methods
    trained = []
    monkeypatch.setattr(methods.get("tr-bert"), "train", lambda data, init, out, cfg, **kw: trained.append(
        (init, out, cfg.rl_epochs, cfg.joint_epochs, cfg.k)))
    models = default_models(cache, ("tr-bert",), demo=None, data=data)
    assert trained == [(cache / "finetune", cache / "tr-bert", 1, 1, 4)] and models["tr-bert"] == cache / "tr-bert"


def test_tradeoff_table_and_plot_from_metric_files(tmp_path, capsys):
    from adapler.bench import tradeoff
    ev = {"method": "bert", "split": "test", "accuracy": 0.80, "flops_speedup": 1.0}
    (tmp_path / "ft_test.json").write_text(json.dumps(ev))
    (tmp_path / "ad_test.json").write_text(json.dumps({**ev, "method": "adapler", "accuracy": 0.81, "flops_speedup": 4.0}))
    (tmp_path / "sweep-power-bert.json").write_text(json.dumps([
        {"method": "power-bert", "knob": "lambda", "value": 1e-3, "test_accuracy": 0.79, "flops_speedup": 1.5},
        {"method": "power-bert", "knob": "lambda", "value": 3e-3, "test_accuracy": 0.77, "flops_speedup": 2.5}]))
    (tmp_path / "pang_sweep-tr-bert-init.json").write_text(json.dumps([
        {"method": "tr-bert", "knob": "alpha", "value": 0.5, "test_accuracy": 0.80, "flops_speedup": 2.0}]))
    files = [tmp_path / n for n in ("ad_test.json", "ft_test.json", "sweep-power-bert.json", "pang_sweep-tr-bert-init.json")]
    assert tradeoff.main([*map(str, files), "--out", str(tmp_path / "t.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2] == "| bert | ft_test | 80.00 % | — | 1.00x |"
    assert lines[3] == "| adapler | ad_test | 81.00 % | +1.00 | 4.00x |"
    assert lines[4:] == ["| power-bert | lambda 0.001 | 79.00 % | -1.00 | 1.50x |",
                         "| power-bert | lambda 0.003 | 77.00 % | -3.00 | 2.50x |",
                         "| tr-bert | alpha 0.5 (pang_sweep-tr-bert-init) | 80.00 % | +0.00 | 2.00x |"]
    assert (tmp_path / "t.png").stat().st_size > 0
    assert tradeoff.main([*map(str, files), "--out", str(tmp_path / "t.png"), "--targets", "2,3"]) == 0
    eq = capsys.readouterr().out.strip().splitlines()[-4:]  # methods at equal speedup, after the table
    assert eq[0] == "| target | adapler | power-bert | tr-bert |"
    assert eq[2] == ("| 2x | 81.00 % (+1.00) at 4.00x (ad_test) | 77.00 % (-3.00) at 2.50x (lambda 0.003) | "
                     "80.00 % (+0.00) at 2.00x (alpha 0.5 (pang_sweep-tr-bert-init)) |")
    assert eq[3] == "| 3x | 81.00 % (+1.00) at 4.00x (ad_test) | no point that fast | no point that fast |"
    assert tradeoff.main([*map(str, files), "--out", str(tmp_path / "t.png"), "--targets", "0.5"]) == 2
    assert "--targets are FLOPs speedups" in capsys.readouterr().err
    (tmp_path / "dev.json").write_text(json.dumps({**ev, "split": "dev"}))
    assert tradeoff.main([str(tmp_path / "dev.json"), "--out", str(tmp_path / "u.png")]) == 2
    assert "pass test-split files" in capsys.readouterr().err and not (tmp_path / "u.png").exists()


def test_at_equal_speedup_reads_each_front_at_the_target():
    """The most accurate point at >= 90 % of X per method; a method with none that fast gets a null row."""
    from adapler.bench.tradeoff import at_equal_speedup
    pts = {"adapler": [{"label": "a", "test_accuracy": 0.80, "flops_speedup": 1.9},
                       {"label": "b", "test_accuracy": 0.82, "flops_speedup": 1.7},
                       {"label": "c", "test_accuracy": 0.75, "flops_speedup": 3.9}],
           "power-bert": [{"label": "p", "test_accuracy": 0.81, "flops_speedup": 1.85}]}
    rows = at_equal_speedup(pts, [2, 4])
    assert [(r["target"], r["method"], r["point"]) for r in rows] == [
        (2.0, "adapler", "a"), (2.0, "power-bert", "p"), (4.0, "adapler", "c"), (4.0, "power-bert", None)]
    assert rows[3]["test_accuracy"] is None and rows[3]["flops_speedup"] is None
    assert at_equal_speedup(pts, [2], tolerance=0.0)[0]["point"] == "c"  # without tolerance 1.9x is not 2x: only c is


def test_bench_targets_compare_models_and_sweeps(tmp_path, ckpts, data):
    """--targets: at_targets from the bench's pruned model and a sweep file, in results.json (schema),
    results.md and the terminal table; bad values and a missing --sweeps folder are one-line errors."""
    from rich.console import Console

    from adapler.bench import BenchError
    from adapler.bench.main import bench_command, parse_targets
    from adapler.bench.report import print_summary
    assert parse_targets("2, 4,8") == (2.0, 4.0, 8.0) and parse_targets(None) == ()
    for bad, msg in (("2,x", "comma-separated speedups"), ("0.5", ">= 1"), ("inf", ">= 1")):
        with pytest.raises(BenchError, match=msg):
            parse_targets(bad)
    with pytest.raises(BenchError, match="is not a folder"):
        bench_command("bert", ckpt=ckpts["adapler"], baseline_ckpts=[ckpts["bert"]], data=data.name, out=tmp_path / "r0",
                      sweeps=tmp_path / "no-sweeps")
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "sweep-power-bert.json").write_text(json.dumps([
        {"method": "power-bert", "knob": "target_speedup", "value": 2, "test_accuracy": 0.6, "flops_speedup": 1.95}]))
    r = run_bench(ckpts, data, batch_sizes=(2,), backends=("torch",), lengths=(), out_dir=tmp_path / "r",
                  sweeps=sweeps, targets=(1.0, 2.0), plots=False, **QUICK)
    assert check_schema(r) == [] and r["config"]["targets"] == [1.0, 2.0]
    own = r["models"]["adapler"]
    rows = {(x["target"], x["method"]): x for x in r["at_targets"]}
    assert set(rows) == {(1.0, "adapler"), (1.0, "power-bert"), (2.0, "adapler"), (2.0, "power-bert")}
    assert rows[(1.0, "adapler")]["point"] == "bench model adapler"
    assert rows[(1.0, "adapler")]["test_accuracy"] == own["accuracy"]
    assert rows[(2.0, "power-bert")]["point"] == "sweep target_speedup 2"
    assert (rows[(2.0, "adapler")]["point"] is None) == (own["flops_speedup"] < 1.8)
    md = (tmp_path / "r" / "results.md").read_text()
    assert "## Accuracy at equal speedup" in md and "| 2× | power-bert | 60.00% | 1.95× | sweep target_speedup 2 |" in md
    console = Console(width=100, record=True)
    print_summary(r, console=console)
    text = console.export_text()
    assert "accuracy at equal speedup" in text and max(map(len, text.splitlines())) <= 100
