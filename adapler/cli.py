"""adapler command line: a thin typer layer over the Python API (every command is a few calls)."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer

from adapler import methods
from adapler.cli_args import (EXIT_INTERRUPTED, EXIT_USAGE, BatchFill, InitWeights, LenDenominator, LengthLoss, Method,
                              Mode, Precision, Preset, Quantize, Split, Target, TrainPrecision, exit_code, knob_help,
                              method_choices, parse_settings)
from adapler.bench.defaults import baseline_choices

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Adaptive length reduction (AdapLeR) for BERT classifiers: train, evaluate, export, bench.")

DataOpt = typer.Option("vader-movies", "--data", help="built-in name, CSV/TSV/JSONL path or HF datasets name")
OverwriteOpt = typer.Option(False, "--overwrite", help="replace an existing output")


def _fail(msg: str, code: int = EXIT_USAGE) -> None:
    typer.secho(f"error: {msg}", fg="red", err=True)
    raise typer.Exit(code)


_placement = contextlib.nullcontext  # the command's --device/--precision (set by _device)


def _run(fn, *args, **kwargs):
    """Call the API; known user errors become one line on stderr with their exit code, Ctrl-C keeps finished work."""
    try:
        with _placement():
            return fn(*args, **kwargs)
    except KeyboardInterrupt:
        _fail("interrupted; finished epochs and measurements are saved (re-run with --resume to continue)",
              EXIT_INTERRUPTED)
    except Exception as e:
        code = exit_code(e)
        if code is None:
            raise  # a bug, not bad input: keep the traceback
        _fail(str(e).splitlines()[0] if str(e) else e.__class__.__name__, code)


def _data(spec: str, text_col, pair_col, label_col, seed: int, max_train=None, max_eval=None, encoding="utf-8"):
    from adapler.data import load_dataset
    from adapler.progress import log
    ds = _run(load_dataset, spec, text_col=text_col, text_pair_col=pair_col, label_col=label_col, seed=seed,
              max_train=max_train, max_eval=max_eval, encoding=encoding)
    log(ds.summary())
    return ds


def _out_dir(path: Path) -> Path:
    """--out must be (or become) a directory: checked before any data is loaded or model trained."""
    from adapler.files import ensure_out_dir
    return _run(ensure_out_dir, path)


def _parse_settings(items: list[str], method: str) -> dict:
    """``--set`` items as values of ``method``'s config fields (checked before any data is loaded)."""
    from adapler import methods
    return _run(parse_settings, items, methods.get(method).config_class(), method)


TextCol = typer.Option(None, "--text-col", help="text column of a local file (default: the first of text, sentence, review, content, document, comment, tweet; else the longest non-numeric column)")
PairCol = typer.Option(None, "--text-pair-col", help="second text column for sentence pairs")
LabelCol = typer.Option(None, "--label-col", help="label column of a local file (default: the first of label, labels, sentiment, class, target, category; else the column with the fewest distinct short values)")
Encoding = typer.Option("utf-8", "--encoding", help="encoding of a local file")
DeviceOpt = typer.Option("auto", "--device", help="auto (a GPU when torch sees one) | cpu | cuda | cuda:N")
PrecisionOpt = typer.Option(TrainPrecision.fp32, "--precision",
                            help="training precision: fp32 | bf16 (CPU or GPU) | fp16 (GPU; with grad scaling)")


def _device(device: str, precision: TrainPrecision | None = None, one_process: str | None = None) -> None:
    """Check --device/--precision before any data is loaded; every API call of this command (``_run``) then
    trains there, including trainers reached through sweep, train_baseline and the demo."""
    global _placement
    from adapler.training.distributed import check_device_options, use_device, world
    if one_process and world()[1] > 1:
        _fail(f"{one_process} runs in one process; launch `finetune` or `train` under torchrun instead")
    _run(check_device_options, device, precision.value if precision else None)
    _placement = lambda: use_device(device, precision.value if precision else None)  # noqa: E731


@app.command()
def finetune(model: str = typer.Option("all-MiniLM-L6-v2", help="HF BERT directory or hub name"),
             data: str = DataOpt, out: Path = typer.Option(..., help="output directory"),
             max_length: Optional[int] = typer.Option(
                 None, min=4, help="tokens per text (default: the smallest of 64/128/256/384/512 that holds 95 % "
                 "of the training texts, at most the model's positions)"),
             epochs: Optional[int] = typer.Option(None, min=1, help="default: enough for ~600 steps, 3 to 10"),
             batch_size: Optional[int] = typer.Option(None, min=1, help="default: ~4096 tokens, 8 to 32"),
             lr: float = typer.Option(5e-5, min=0.0), seed: int = 42,
             max_train: Optional[int] = typer.Option(None, min=1, help="use a subset of the training split"),
             text_col: Optional[str] = TextCol, text_pair_col: Optional[str] = PairCol,
             label_col: Optional[str] = LabelCol, encoding: str = Encoding,
             device: str = DeviceOpt, precision: TrainPrecision = PrecisionOpt,
             overwrite: bool = OverwriteOpt, resume: bool = typer.Option(False, help="continue an interrupted run")):
    """Fine-tune a dense BERT classifier (checkpoint per epoch + dev scores)."""
    from adapler.training.finetune import FinetuneConfig, finetune as run
    _device(device, precision)
    _out_dir(out)
    ds = _data(data, text_col, text_pair_col, label_col, 0, max_train, None, encoding)
    cfg = _run(FinetuneConfig, model=model, max_length=max_length, epochs=epochs, batch_size=batch_size, lr=lr,
               seed=seed)
    out_dir = _run(run, ds, out, cfg, overwrite=overwrite, resume=resume)
    from adapler.training.distributed import is_main_process
    if is_main_process():  # under torchrun: one line
        typer.echo(f"fine-tuned checkpoints in {out_dir} (best: {out_dir / 'best'})")


def _batch_size_for(batch_size: Optional[int], init: Path) -> int:
    """``--batch-size``, or the default for the ``--init`` run's max length (32 where it cannot be read)."""
    if batch_size is not None:
        return batch_size
    from adapler.training.auto import batch_size_for_init
    return batch_size_for_init(init) or 32


@app.command()
def train(method: Method = typer.Option(Method(methods.MAIN), help=method_choices()),
          init: Path = typer.Option(..., help="fine-tuned run directory (from `finetune`)"),
          data: str = DataOpt, out: Path = typer.Option(..., help="output directory"),
          epochs: Optional[int] = typer.Option(None, min=1),
          batch_size: Optional[int] = typer.Option(None, min=1, help="default: ~4096 tokens of the --init run's max "
                                                   "length, 8 to 32"),
          lr: Optional[float] = typer.Option(None, min=0.0), seed: int = 42,
          knob: Optional[float] = typer.Option(None, min=0.0, help=f"trade-off knob: {knob_help()}"),
          gamma: Optional[float] = typer.Option(None, min=0.0, help="AdapLeR CP loss weight (default: 0.2 with "
                                                "--preset auto, 0.005 with paper)"),
          eta_lr: Optional[float] = typer.Option(None, min=0.0, help="AdapLeR learning rate of eta/theta "
                                                 "(default: from --preset)"),
          cp_lr: Optional[float] = typer.Option(None, min=0.0,
                                                help="AdapLeR learning rate of the CPs (default: from --preset)"),
          preset: Preset = typer.Option(Preset.auto, help="AdapLeR defaults for --knob, --eta-lr, --cp-lr: auto "
                                        "(scaled to the data's length and steps) | paper (the released settings)"),
          init_weights: InitWeights = typer.Option(InitWeights.finetuned,
                                                   help="AdapLeR: start from finetuned or pretrained weights"),
          theta: bool = typer.Option(True, help="AdapLeR: faithful theta/theta_PR re-weighting of the [CLS] target"),
          length_loss: LengthLoss = typer.Option(LengthLoss.absolute, help="AdapLeR: absolute | normalized"),
          kl_target_stopgrad: bool = typer.Option(False, help="AdapLeR: stop gradients through the rolled KL target"),
          power_protect_cls: bool = typer.Option(False, help="PoWER-BERT: protect [CLS] in Soft-Extract"),
          trbert_batch_fill: BatchFill = typer.Option(BatchFill.masked,
                                                      help="TR-BERT batched inference: masked | topk (original)"),
          trbert_len_denominator: LenDenominator = typer.Option(LenDenominator.padded,
                                                                help="TR-BERT length reward: padded (original) | real"),
          target_speedup: Optional[float] = typer.Option(
              None, "--target-speedup", help="steer the knob to this dev FLOPs speedup; best/ = the most accurate "
              "epoch at or above it"),
          max_accuracy_drop: float = typer.Option(
              1.0, "--max-accuracy-drop", help="best/ = the fastest epoch within this many points of the fine-tuned "
              "dev accuracy (without --target-speedup)"),
          set_: list[str] = typer.Option([], "--set", help="config field KEY=VALUE (e.g. search_epochs=1, saliency_epochs=1); repeatable"),
          max_train: Optional[int] = typer.Option(None, min=1, help="use a subset of the training split"),
          text_col: Optional[str] = TextCol, text_pair_col: Optional[str] = PairCol,
          label_col: Optional[str] = LabelCol, encoding: str = Encoding,
          device: str = DeviceOpt, precision: TrainPrecision = PrecisionOpt,
          overwrite: bool = OverwriteOpt, resume: bool = typer.Option(False, help="continue an interrupted run")):
    """Train a token-dropping model from a fine-tuned run."""
    from adapler.training.target import check_knob_free, check_target_fields
    m = methods.get(method.value)
    settings = _parse_settings(set_, m.name)  # before any data is loaded
    _run(check_target_fields, target_speedup, max_accuracy_drop)
    _run(check_knob_free, target_speedup, knob, settings, m.knob_field)
    # every method-specific option by its parameter name; the method takes the ones it has (Method.cli_options)
    cli_values = {"gamma": gamma, "eta_lr": eta_lr, "cp_lr": cp_lr, "preset": preset.value,
                  "init_weights": init_weights.value, "theta": theta, "length_loss": length_loss.value,
                  "kl_target_stopgrad": kl_target_stopgrad, "power_protect_cls": power_protect_cls,
                  "trbert_batch_fill": trbert_batch_fill.value, "trbert_len_denominator": trbert_len_denominator.value}
    options = {**m.options_from_cli(cli_values), "target_speedup": target_speedup,
               "max_accuracy_drop": max_accuracy_drop, **settings}
    _device(device, precision)
    _out_dir(out)
    ds = _data(data, text_col, text_pair_col, label_col, 0, max_train, None, encoding)
    batch_size = _batch_size_for(batch_size, init)
    cfg = _run(m.config, knob, epochs, lr, batch_size, seed, **options)
    out_dir = _run(m.train, ds, init, out, cfg, overwrite=overwrite, resume=resume)
    from adapler.training.distributed import is_main_process
    if is_main_process():  # under torchrun: one table
        from adapler.report import training_table
        training_table(out_dir)
        typer.echo(f"trained {method.value} in {out_dir} (selected: {out_dir / 'best'})")


@app.command()
def sweep(method: Method = typer.Option(..., help=method_choices()),
          values: Optional[str] = typer.Option(None, help=f"comma-separated knob values ({knob_help()})"),
          targets: Optional[str] = typer.Option(None, help="comma-separated target FLOPs speedups, e.g. 2,4,8: one "
                                                "run per target, each steering the knob itself (--target-speedup)"),
          init: Path = typer.Option(..., help="fine-tuned run directory"),
          data: str = DataOpt, out: Path = typer.Option(..., help="root directory: one run per value + sweep-METHOD.json"),
          epochs: Optional[int] = typer.Option(None, min=1),
          batch_size: Optional[int] = typer.Option(None, min=1, help="default: ~4096 tokens of the --init run's max "
                                                   "length, 8 to 32"),
          lr: Optional[float] = typer.Option(None, min=0.0), seed: int = 42,
          set_: list[str] = typer.Option([], "--set", help="config field KEY=VALUE for every run (as in `train`); repeatable"),
          max_train: Optional[int] = typer.Option(None, min=1, help="use a subset of the training split"),
          text_col: Optional[str] = TextCol, text_pair_col: Optional[str] = PairCol,
          label_col: Optional[str] = LabelCol, encoding: str = Encoding,
          device: str = DeviceOpt, precision: TrainPrecision = PrecisionOpt):
    """Train one model per knob value (or per target speedup) and record accuracy and FLOPs speedup per point (JSON)."""
    from adapler.training.sweep import sweep as run_sweep
    _device(device, precision, one_process="sweep")
    if (values is None) == (targets is None):
        _fail("give exactly one of --values (knob values, e.g. --values 1e-4,5e-4) and --targets (target "
              "speedups, e.g. --targets 2,4,8)")
    if targets is not None:  # the same parsing as bench --targets
        from adapler.bench.main import parse_targets
        knob_values = list(_run(parse_targets, targets))
        if not knob_values:
            _fail("--targets is empty; give e.g. --targets 2,4,8")
    else:
        try:
            knob_values = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            _fail(f"--values must be comma-separated numbers, got {values!r}")
        if not knob_values:
            _fail("--values is empty; give e.g. --values 1e-4,5e-4,1e-3")
        if any(not v >= 0 or v == float("inf") for v in knob_values):
            _fail(f"--values must be finite numbers >= 0, got {values!r}")
    batch_size = _batch_size_for(batch_size, init)
    kwargs = {"batch_size": batch_size, "seed": seed}
    if epochs is not None:
        kwargs["epochs"] = epochs
    if lr is not None:
        kwargs["lr"] = lr
    kwargs.update(_parse_settings(set_, method.value))
    if targets is not None:  # before any data is loaded
        from adapler.training.sweep import check_target_sweep
        _run(check_target_sweep, methods.get(method.value), knob_values, kwargs)
    _out_dir(out)
    ds = _data(data, text_col, text_pair_col, label_col, 0, max_train, None, encoding)
    results = _run(run_sweep, methods.get(method.value), knob_values, ds, init, out, targets=targets is not None,
                   **kwargs)
    for r in results:
        missed = " (target not reached on dev)" if r.get("target_reached") is False else ""
        typer.echo(f"{r['knob']}={r['value']:g}: test accuracy {r['test_accuracy']:.4f}, "
                   f"FLOPs speedup {r['flops_speedup']:.2f}x{missed}")


@app.command()
def evaluate(ckpt: Path = typer.Argument(..., help="checkpoint directory (or a run directory with best/)"),
             data: str = DataOpt, split: Split = typer.Option(Split.test), batch_size: int = typer.Option(32, min=1),
             seed: int = 0, mode: Mode = typer.Option(Mode.hard, help="hard (physical removal), soft (masked) or dense"),
             max_eval: Optional[int] = typer.Option(None, min=1),
             json_out: Optional[Path] = typer.Option(None, "--json", help="write metrics"),
             text_col: Optional[str] = TextCol, text_pair_col: Optional[str] = PairCol,
             label_col: Optional[str] = LabelCol, encoding: str = Encoding,
             device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto (latency is measured there)"),
             overwrite: bool = OverwriteOpt):
    """Accuracy, FLOPs speedup, kept length per layer and torch latency of a checkpoint."""
    from adapler.api import evaluate_checkpoint
    from adapler.files import ensure_writable, write_json_atomic
    _device(device, one_process="evaluate")
    if json_out is not None:
        _run(ensure_writable, json_out, overwrite)  # fail fast; the write below is exclusive as well
    ds = _data(data, text_col, text_pair_col, label_col, seed, None, max_eval, encoding)
    metrics = _run(evaluate_checkpoint, ckpt, ds, split=split.value, batch_size=batch_size, mode=mode.value,
                   device=device)
    from adapler.report import metrics_table
    metrics_table(metrics)
    if json_out is not None:
        _run(write_json_atomic, json_out, metrics, overwrite=overwrite)


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="cache directory for the demo's artifacts"),
         device: str = typer.Option("auto", "--device", help="where the demo trains: auto | cpu | cuda | cuda:N"),
         overwrite: bool = OverwriteOpt):
    """The main job on the embedded default: fine-tune MiniLM, train AdapLeR, evaluate, show kept tokens."""
    from adapler.demo import run_demo
    _device(device, one_process="demo")
    _out_dir(out)
    _run(run_demo, out, overwrite=overwrite)


@app.command("export")
def export_cmd(ckpt: Path = typer.Argument(..., help="pruned checkpoint (or run directory with best/)"),
               target: Target = typer.Option(Target.onnx, help="onnx | trt"),
               out: Path = typer.Option(..., help="output directory"),
               opset: int = typer.Option(23, min=18, max=23, help="ONNX opset (18-23)"),
               allow_dense: bool = typer.Option(False, help="also export a dense (method 'bert') checkpoint"),
               quantize: Quantize = typer.Option(Quantize.none, help="int8 also writes the dynamic-int8 graph "
                                                 "(encoder MatMul/Attention weights; the selection stays float)"),
               precision: Precision = typer.Option(Precision.fp32, help="fp16 also writes model.fp16.onnx for GPU runtimes"),
               kept_positions: bool = typer.Option(False, "--kept-positions", help="add the kept_positions output "
                                                   "(original position of each kept slot per layer; what `explain` reads)"),
               packed: bool = typer.Option(False, help="also write model.ort.packed.onnx (padding-free batches)"),
               overwrite: bool = OverwriteOpt):
    """Export to ONNX (model.onnx with adapler::TokenDrop, model.std.onnx, model.ort.onnx) or a TensorRT bundle
    (--target trt: also model.cd.onnx, one adapler::ContributionDrop per layer, where the method has that form)."""
    from adapler.export.onnx import write_export_dir
    _out_dir(out)
    meta = _run(write_export_dir, ckpt, out, opset=opset, overwrite=overwrite, allow_dense=allow_dense,
                quantize=quantize.value, precision=precision.value, kept_positions=kept_positions, packed=packed,
                contribution_drop=target == "trt")
    typer.echo(f"wrote {', '.join(meta['files'].values())}, tokenizer/ and export.json to {out}")
    for note in meta.get("notes", []):
        typer.echo(f"note: {note}")
    if target == "trt":
        from adapler.export.trt import write_trt_bundle_for_export  # input names and files from export.json, + fp16 ONNX
        report = _run(write_trt_bundle_for_export, out)
        cd = f"{report.cd_trt_onnx.name}, " if report.cd_trt_onnx else ""
        typer.echo(f"TensorRT bundle in {report.out_dir}: {report.trt_onnx.name}, {report.fp16_trt_onnx.name}, {cd}"
                   f"plugin sources, BUILD_ENGINE.md "
                   f"(trtexec and Polygraphy commands); TensorRT op-support lint: {len(report.lint_issues)} issue(s)"
                   + (f" -> {report.lint_path}" if report.lint_issues else "")
                   + (f"; {report.cd_trt_onnx.name}: {len(report.cd_lint_issues)} issue(s) -> lint.cd.json"
                      if report.cd_lint_issues else ""))
        if report.engine_built:
            typer.echo(f"engine built: {report.engine_path}")
        else:
            typer.echo(f"no engine was built: {report.engine_reason}")


@app.command("explain")
def explain_cmd(source: Path = typer.Argument(..., help="checkpoint, run directory, or export directory "
                                                  "(from `export --kept-positions`)"),
                text: Optional[str] = typer.Option(None, "--text", help="explain this text"),
                data: Optional[str] = typer.Option(None, "--data", help="or explain examples of this data"),
                split: Split = typer.Option(Split.test), limit: int = typer.Option(5, min=1, help="examples of --data"),
                seed: int = 0, html: Optional[Path] = typer.Option(None, "--html", help="write one HTML page"),
                jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="write one JSON line per text"),
                quiet: bool = typer.Option(False, "--quiet", help="no terminal tables"),
                text_col: Optional[str] = TextCol, label_col: Optional[str] = LabelCol, encoding: str = Encoding,
                overwrite: bool = OverwriteOpt):
    """Which tokens each layer kept and the selector's scores, for a text or a dataset (torch or ONNX)."""
    from adapler.explain import explain, write_jsonl
    from adapler.explain_render import explanation_table, write_html
    from adapler.files import ensure_writable
    from adapler.report import console
    for path in (html, jsonl):
        if path is not None:
            _run(ensure_writable, path, overwrite)
    if (text is None) == (data is None):
        _fail("give either --text or --data (not both)")
    ds = _data(data, text_col, None, label_col, seed, None, None, encoding) if data is not None else None
    expls = _run(explain, source, None if text is None else [text], data=ds, split=split.value, limit=limit)
    for e in expls:
        if not quiet:
            console.print(explanation_table(e))
        if e.truncated:
            typer.echo(f"note: text truncated to {len(e.tokens)} of {e.n_tokens_untruncated} tokens (max length)")
    if html is not None:
        _run(write_html, expls, html, title=f"adapler explain: {source}", overwrite=overwrite)
    if jsonl is not None:
        _run(write_jsonl, expls, jsonl, overwrite=overwrite)


@app.command()
def rationales(ckpt: Path = typer.Argument(..., help="checkpoint (or run directory with best/)"),
               data: str = DataOpt, split: Split = typer.Option(Split.test), seed: int = 0,
               limit: Optional[int] = typer.Option(None, min=1, help="first N examples of the split"),
               ig_steps: int = typer.Option(16, "--ig-steps", min=0, help="integrated-gradients steps (0: skip)"),
               lexicon_threshold: float = typer.Option(1.0, "--lexicon-threshold", min=0.01, max=4.0,
                                                       help="VADER words with |mean rating| >= this are rationale words"),
               judge: str = typer.Option("dense", help="model judged for faithfulness: dense (nothing dropped) | hard"),
               batch_size: int = typer.Option(32, min=1),
               json_out: Optional[Path] = typer.Option(None, "--json", help="write the report"),
               plot: Optional[Path] = typer.Option(None, "--plot", help="write a bar plot (PNG)"),
               text_col: Optional[str] = TextCol, label_col: Optional[str] = LabelCol, encoding: str = Encoding,
               overwrite: bool = OverwriteOpt):
    """Faithfulness (comprehensiveness, sufficiency, AOPC) and VADER-lexicon agreement of token rankings."""
    from adapler.errors import check_choice
    from adapler.files import ensure_writable, write_json_atomic
    from adapler.progress import log
    from adapler.rationales import plot as plot_report, rich_table, run_rationales
    from adapler.report import console
    _run(check_choice, "--judge", judge, ("dense", "hard"))
    for path in (json_out, plot):
        if path is not None:
            _run(ensure_writable, path, overwrite)
    ds = _data(data, text_col, None, label_col, seed, None, None, encoding)
    report = _run(run_rationales, ckpt, ds, split.value, limit, lexicon_threshold=lexicon_threshold, judge_mode=judge,
                  ig_steps=ig_steps, batch_size=batch_size, seed=seed, progress=log)
    console.print(rich_table(report))
    if json_out is not None:
        _run(write_json_atomic, json_out, report, overwrite=overwrite)
    if plot is not None:
        plot_report(report, plot)


@app.command()
def verify(export_dir: Path = typer.Argument(..., help="directory written by `export`"),
           data: str = DataOpt, split: str = "test", seed: int = 0,
           atol: float = typer.Option(1e-4, min=0.0, help="max |delta logits| allowed"),
           json_out: Optional[Path] = typer.Option(None, "--json", help="write the report"),
           text_col: Optional[str] = TextCol, text_pair_col: Optional[str] = PairCol,
           label_col: Optional[str] = LabelCol, overwrite: bool = OverwriteOpt):
    """Compare torch with every ORT graph of the export on real inputs (Polygraphy Comparator); int8: accuracy change."""
    from adapler.checkpoint import ensure_writable
    from adapler.export.verify import quantization_report, verify_export
    if json_out is not None:
        _run(ensure_writable, json_out, overwrite)
    ds = _data(data, text_col, text_pair_col, label_col, seed, None, None)
    examples = _run(ds.split, split)
    report = _run(verify_export, export_dir, examples[:64], atol=atol)
    ok = report["max_abs_diff_logits"] <= atol and report["kept_lengths_identical"]
    typer.echo(f"max |delta logits| = {report['max_abs_diff_logits']:.2e} (atol {atol}), kept lengths identical: "
               f"{report['kept_lengths_identical']} -> {'PASSED' if ok else 'FAILED'}")
    for name, q in _run(quantization_report, export_dir, examples).items():  # lossy by design: reported, not held to atol
        report[name] = q
        typer.echo(f"{name} ({q['file']}) vs fp32 on {q['n_examples']} {split} examples: accuracy "
                   f"{100 * q['accuracy_fp32']:.2f} % -> {100 * q['accuracy']:.2f} % "
                   f"({q['accuracy_change_points']:+.2f} points, 95 % interval {q['accuracy_change_ci95_points'][0]:+.2f} to "
                   f"{q['accuracy_change_ci95_points'][1]:+.2f}), argmax agreement {100 * q['argmax_agreement']:.1f} %, "
                   f"max |delta logits| {q['max_abs_diff_logits']:.3f}, kept lengths identical for "
                   f"{100 * q['kept_lengths_identical_share']:.1f} % of examples")
    if json_out is not None:
        from adapler.files import write_json_atomic
        _run(write_json_atomic, json_out, report, overwrite=overwrite)
    if not ok:
        raise typer.Exit(1)


@app.command()
def bench(baseline: str = typer.Option(methods.DEFAULT_BASELINE, help=" | ".join(baseline_choices())),
          ckpt: Optional[Path] = typer.Option(None, help="pruned checkpoint (default: runs/demo/adapler or quick-trained)"),
          baseline_ckpt: list[Path] = typer.Option([], "--baseline-ckpt", help="repeatable; a 'bert' one is the dense reference"),
          data: Optional[str] = typer.Option(None, "--data", help="default: quick vader-movies subset"),
          batch_sizes: str = typer.Option("1,32", "--batch-sizes", help="comma-separated batch sizes"),
          compare: Optional[Path] = typer.Option(None, "--compare", help="flag regressions against an older results.json"),
          out: Path = typer.Option(Path("runs/bench/results"), "--out", help="results directory"),
          threads: Optional[int] = typer.Option(None, min=1, help="torch and ORT intra-op threads"),
          latency_examples: int = typer.Option(256, "--latency-examples", min=1,
                                               help="test examples timed per batch size (fewer for long inputs)"),
          repeats: int = typer.Option(3, min=1, help="timed passes over the inputs (median taken)"),
          lengths: str = typer.Option("16,32,64,128,256", "--lengths",
                                      help="batch-1 latency-vs-length points, comma-separated, or 'none'"),
          targets: Optional[str] = typer.Option(None, "--targets", help="compare the methods at these FLOPs "
                                                "speedups, e.g. 2,4,8 (the bench's models and the sweep files)"),
          sweeps: Optional[Path] = typer.Option(None, "--sweeps", help="folder of sweep-<method>.json files "
                                                "(`cli.py sweep --out`; default: runs/sweep when it has any)"),
          overwrite: bool = OverwriteOpt):
    """AdapLeR vs baselines vs the dense backbone: accuracy, FLOPs and paired latency per backend."""
    from adapler.bench.main import bench_command, parse_lengths, parse_targets
    from adapler.bench.report import print_summary
    results = _run(bench_command, baseline, ckpt=ckpt, baseline_ckpts=baseline_ckpt, data=data,
                   batch_sizes=batch_sizes, compare=compare, out=out, overwrite=overwrite, threads=threads,
                   n_latency_examples=latency_examples, repeats=repeats, lengths=_run(parse_lengths, lengths),
                   targets=_run(parse_targets, targets), sweeps=sweeps)
    print_summary(results)
    if results.get("regressions"):
        raise typer.Exit(1)


@app.command("build-plugins")
def build_plugins(force: bool = typer.Option(False, help="rebuild even if up to date")):
    """Build the ONNX Runtime TokenDrop kernel (headers from Debian, no system change)."""
    from adapler.plugins.token_drop.build import build_ort_library
    path = _run(build_ort_library, force=force)
    typer.echo(f"ONNX Runtime custom-op library: {path}")


CONSOLE_SCRIPT = "adapler"  # [project.scripts] in pyproject.toml


def _prog(full: bool = False) -> str:
    """How the user called us: the installed `adapler` command, or `python cli.py` from a checkout."""
    if Path(sys.argv[0]).name == CONSOLE_SCRIPT:
        return CONSOLE_SCRIPT
    return "python cli.py" if full else "cli.py"


def run_cli(args: list[str] | None = None) -> int:
    """Run the CLI and return its exit code. Usage errors (bad option, value out of range, unknown choice)
    become one ``error:`` line with exit code 2 instead of click's usage box."""
    global _placement
    _placement = contextlib.nullcontext  # no --device of an earlier in-process call carries over
    ce = sys.modules[typer.BadParameter.__module__]  # click's exceptions (typer may vendor its own click)
    no_args = getattr(ce, "NoArgsIsHelpError", ())
    try:
        rv = app(args=args, standalone_mode=False, prog_name=_prog())
    except no_args as e:  # bare `cli.py`: show the help
        typer.echo(e.ctx.get_help())
        return 0
    except ce.UsageError as e:
        hint = f" (see {_prog(full=True)} {e.ctx.info_name} --help)" if e.ctx is not None and e.ctx.parent else ""
        typer.secho(f"error: {e.format_message()}{hint}", fg="red", err=True)
        return EXIT_USAGE
    except ce.ClickException as e:
        typer.secho(f"error: {e.format_message()}", fg="red", err=True)
        return e.exit_code
    except (typer.Abort, getattr(ce, "Abort", typer.Abort)):
        typer.secho("error: interrupted", fg="red", err=True)
        return EXIT_INTERRUPTED
    return rv if isinstance(rv, int) else 0


def main() -> None:
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
