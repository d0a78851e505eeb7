"""The method registry (adapler/methods/): one object per method, asked by the CLI, sweep, recipes, bench, FLOPs
and export; and the invariant it exists for: no module outside adapler/methods/ compares method names."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from adapler import methods
from adapler.errors import UsageError
from conftest import ROOT


def test_registry_lists_every_method_once_and_consistently() -> None:
    from adapler.selectors import SELECTORS
    assert methods.names() == ["bert", "adapler", "power-bert", "tr-bert", "keep-first"]
    assert methods.names(trainable=True) == ["adapler", "power-bert", "tr-bert", "keep-first"]
    assert methods.dense().name == "bert" and methods.MAIN in methods.names(pruning=True)
    assert set(SELECTORS) == set(methods.names())  # checkpoint loading finds every registered method's selector
    for m in methods.all_methods():
        assert m.problems() == [], m.name
        assert m.selector_class().method == m.name
    with pytest.raises(ValueError, match="registered twice"):
        methods.register(methods.get("tr-bert"))


def test_unknown_method_is_one_line_listing_the_choices() -> None:
    with pytest.raises(UsageError) as e:
        methods.get("power_bert")
    msg = str(e.value)
    assert "\n" not in msg and "'power_bert'" in msg and "bert, adapler, power-bert, tr-bert, keep-first" in msg


def test_config_maps_the_shared_arguments_onto_each_method() -> None:
    pb = methods.get("power-bert").config(knob=0.05, epochs=3, lr=1e-4, batch_size=8, seed=1, search_epochs=1)
    assert (pb.lam, pb.retrain_epochs, pb.search_epochs, pb.lr, pb.batch_size, pb.seed) == (0.05, 3, 1, 1e-4, 8, 1)
    tr = methods.get("tr-bert").config(knob=2.0, epochs=4)
    assert (tr.alpha, tr.rl_epochs, tr.joint_epochs) == (2.0, 4, 2)
    assert methods.get("tr-bert").config(epochs=4, joint_epochs=3).joint_epochs == 3  # explicit options win
    ad = methods.get("adapler").config(knob=1e-3, epochs=2)
    assert (ad.phi, ad.epochs, ad.lr) == (1e-3, 2, 3e-5)
    kf = methods.get("keep-first").config(knob=0.25, epochs=0)
    assert (kf.fraction, kf.epochs) == (0.25, 0)
    # the knob is the config field the method names
    for m in methods.all_methods():
        if m.trainable:
            assert getattr(m.config(knob=0.5), m.knob_field) == 0.5
    with pytest.raises(UsageError, match=r"unknown PoWER-BERT options \['alpha'\]"):
        methods.get("power-bert").config(alpha=1.0)
    with pytest.raises(NotImplementedError, match="finetune"):
        methods.dense().config()


def test_each_method_takes_only_its_own_cli_options() -> None:
    values = {"gamma": 0.1, "init_weights": "pretrained", "power_protect_cls": True, "trbert_batch_fill": "topk"}
    assert methods.get("adapler").options_from_cli(values) == {"gamma": 0.1, "init": "pretrained"}
    assert methods.get("power-bert").options_from_cli(values) == {"protect_cls": True}
    assert methods.get("tr-bert").options_from_cli(values) == {"batch_fill": "topk"}
    assert methods.get("keep-first").options_from_cli(values) == {}


def test_cli_choices_come_from_the_registry() -> None:
    from adapler.cli_args import Method, knob_help
    from adapler.bench.defaults import baseline_choices
    assert [m.value for m in Method] == methods.names(trainable=True)
    assert "TR-BERT alpha" in knob_help() and "keep-first fraction" in knob_help()
    choices = baseline_choices()
    assert choices["bert"] == () and choices["all"] == ("power-bert", "tr-bert", "keep-first")
    assert methods.MAIN not in choices


def test_listing_the_registry_does_not_import_torch() -> None:
    """cli.py builds its choices from the registry at startup; --help and usage errors stay fast."""
    code = "import sys, cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_export_note_and_fused_graph_flags() -> None:
    assert methods.get("adapler").export_note() is None and methods.dense().export_note() is None
    note = methods.get("keep-first").export_note()
    assert "'keep-first' has no fused ORT graph" in note and "model.onnx" in note


# Method names as string literals in comparisons: ==, !=, `in (...)` lists. Declarations (a selector's
# ``method = "..."``, a registry constant) are not comparisons.
_NAMES = "|".join(re.escape(n) for n in methods.names())
_COMPARISON = re.compile(rf'''[=!]=\s*["']({_NAMES})["']|["']({_NAMES})["']\s*[=!]=|\bin\s*[(\[{{][^)\]}}]*["']({_NAMES})["']''')


def test_no_method_name_is_compared_outside_the_registry() -> None:
    found = []
    for path in [ROOT / "cli.py", *sorted((ROOT / "adapler").rglob("*.py")), *sorted((ROOT / "export").rglob("*.py")),
                 *sorted((ROOT / "bench").rglob("*.py"))]:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("adapler/methods/"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _COMPARISON.search(line.split("#")[0]):
                found.append(f"{rel}:{i}: {line.strip()}")
    assert found == []


def test_the_comparison_scan_catches_a_comparison() -> None:
    assert _COMPARISON.search('if method == "tr-bert":')
    assert _COMPARISON.search("if cfg['method'] != 'bert' and x:")
    assert _COMPARISON.search('if name in ("power-bert", "x"):')
    assert not _COMPARISON.search('method = "tr-bert"') and not _COMPARISON.search('model_type="bert"')
