"""--target-speedup and --max-accuracy-drop: the knob controller, the selection rules, the PoWER-BERT retention
solve, the reachability bound, and short tiny training runs that record the fields."""
import json
import math
import sys

import pytest
import torch

from adapler.errors import UsageError
from adapler.flops import Dims
from adapler.training.power_bert import retention_for_speedup, retention_speedup
from adapler.training.train_adapler import AdapLeRConfig, resolve_defaults
from adapler.training.target import (TARGET_MARGIN, KnobController, SelectionRule, check_knob_free, check_reachable,
                                     check_target_fields, max_speedup)
from conftest import ROOT

MINILM = Dims(d=384, f=1536, L=6, C=2)


def rows(*points):
    return [{"epoch": i, "dev_accuracy": a, "dev_flops_speedup": s} for i, (a, s) in enumerate(points, 1)]


# ------------------------------------------------------------------------------------------ controller

def test_controller_raises_pressure_below_target_and_lowers_it_above():
    c = KnobController(target=2.0, value=1e-3)
    c.update(1.2)
    assert c.value > 1e-3  # too slow: more length pressure
    up = c.value
    c.update(3.5)
    assert c.value < up  # too fast: less
    at_aim = c.value
    c.update(2.0 * TARGET_MARGIN)
    assert c.value == pytest.approx(at_aim)  # on the aim: unchanged


def test_calibration_maps_batch_speedups_to_dev():
    """When dev runs twice as fast as the training batches suggest, half the batch speedup is on the aim."""
    c = KnobController(target=2.0, value=1e-2)
    for _ in range(200):
        c.update(1.0)
    assert c.calibrate(2.0) == pytest.approx(2.0)
    before = c.value
    c.update(1.0 * TARGET_MARGIN)
    assert c.value == pytest.approx(before)
    assert c.calibrate(100.0) == 2.0  # one noisy evaluation moves it at most 2x


def test_controller_is_clipped_and_bounded_per_step():
    c = KnobController(target=4.0, value=1.0, gain=0.05, lo=0.5, hi=1.5)
    for _ in range(100):
        c.update(1.0)
    assert c.value == 1.5
    c = KnobController(target=4.0, value=1.0, gain=0.05)
    c.update(0.0)  # the error is clipped to 1: one step moves by at most exp(gain)
    assert c.value == pytest.approx(float(torch.tensor(0.05).exp()))



def test_two_sided_controller_turns_into_a_length_reward_after_an_overshoot():
    """One-sided, phi only approaches 0 when training runs too fast; two-sided it crosses 0 (a reward for
    keeping tokens, which pulls eta back) and stops at -scale. Far above 0 a step is still ~exp(gain * e)."""
    one = KnobController(target=2.0, value=1e-2, gain=0.05)
    two = KnobController(target=2.0, value=1e-2, gain=0.05, scale=1e-2)
    for _ in range(60):
        one.update(4.0)
        two.update(4.0)
    assert one.value > 0 and two.value < 0
    for _ in range(500):
        two.update(4.0)
    assert two.value == pytest.approx(-1e-2)  # bounded: at most the start value's pressure, reversed
    for _ in range(40):
        two.update(1.0)  # too slow again: back through 0
    assert two.value > 0
    far = KnobController(target=2.0, value=10.0, gain=0.05, scale=1e-2)
    far.update(0.0)  # error clipped to 1
    assert far.value == pytest.approx(10.0 * math.exp(0.05), rel=1e-3)

def test_pullback_acts_only_above_the_aim():
    c = KnobController(target=2.0, value=1e-2)
    c.update(1.0)  # too slow: eta is left to the gradient and phi
    assert c.error > 0 and c.pullback(0.01) == 1.0
    c.update(3.15)  # 50 % above the aim 2.1
    assert c.error == pytest.approx(-0.5) and c.pullback(0.01) == pytest.approx(math.exp(-0.005))
    c.update(100.0)  # clipped like the knob's step
    assert c.pullback(0.01) == pytest.approx(math.exp(-0.01))


def test_adapler_overshoot_scales_eta_back(finetuned_run, sentiment_csv, tmp_path, monkeypatch):
    """With the batches always above the aim, eta ends lower than with phi control alone (same seed, same data),
    by about the per-step factor; gain 0 is the old behaviour."""
    from adapler.data import load_dataset
    from adapler.training import train_adapler as ta

    class AlwaysAbove(ta.KnobController):
        def update(self, speedup: float) -> float:
            return super().update(10.0 * self.target)

    monkeypatch.setattr(ta, "KnobController", AlwaysAbove)
    data = load_dataset(sentiment_csv)
    etas = {}
    for gain in (0.0, 0.3):
        cfg = AdapLeRConfig(epochs=1, batch_size=16, saliency_epochs=1, target_speedup=1.5, target_eta_gain=gain)
        out = ta.train_adapler(data, finetuned_run, tmp_path / f"ad{gain}", cfg)
        etas[gain] = torch.tensor(json.loads((out / "history.json").read_text())[-1]["eta"])
    steps = -(-len(data.train) // 16)
    assert torch.all(etas[0.3] <= etas[0.0] * math.exp(-0.3 * steps) * 1.5 + 0.011)  # +ETA_MIN: the clip
    assert torch.all(etas[0.3] < etas[0.0])
    with pytest.raises(UsageError, match="target_eta_gain"):
        AdapLeRConfig(target_eta_gain=-1.0)


def test_eta_max_bounds_eta_and_the_note_names_it(finetuned_run, sentiment_csv, tmp_path, monkeypatch):
    """eta is clipped to eta_max (not the paper's 1) after every step; an unreached target with eta at its
    bound in most layers ends with the eta_max hint, otherwise no hint."""
    from adapler.data import load_dataset
    from adapler.training import train_adapler as ta

    class AlwaysBelow(ta.KnobController):  # the batches never reach the aim: phi and eta keep rising
        def update(self, speedup: float) -> float:
            return super().update(1.0)

    monkeypatch.setattr(ta, "KnobController", AlwaysBelow)
    data = load_dataset(sentiment_csv)
    etas = {}
    for bound in (0.3, 1.5):
        cfg = AdapLeRConfig(epochs=1, batch_size=16, saliency_epochs=1, target_speedup=7.0, eta_lr=0.5,
                            eta_max=bound, target_gain=1.0)
        out = ta.train_adapler(data, finetuned_run, tmp_path / f"ad{bound}", cfg)
        etas[bound] = torch.tensor(json.loads((out / "history.json").read_text())[-1]["eta"])
    assert torch.all(etas[0.3] <= 0.3 + 1e-6) and torch.isclose(etas[0.3], torch.tensor(0.3)).sum() >= 3
    assert etas[1.5].max() > 1.0  # above the paper's bound
    rule = SelectionRule(finetuned_accuracy=0.9, target_speedup=7.0)
    hist = [{"epoch": 1, "dev_accuracy": 0.8, "dev_flops_speedup": 3.0, "eta": [0.3, 0.3, 0.3, 0.1]}]
    note = ta.eta_bound_note(hist, rule, 0.3)
    assert "upper bound (0.3) in 3 of 4 layers" in note and "--set eta_max=0.6" in note
    assert ta.eta_bound_note([dict(hist[0], eta=[0.3, 0.1, 0.1, 0.1])], rule, 0.3) is None  # not saturated
    assert ta.eta_bound_note([dict(hist[0], dev_flops_speedup=7.5)], rule, 0.3) is None  # reached
    assert ta.eta_bound_note(hist, SelectionRule(finetuned_accuracy=0.9), 0.3) is None  # no target
    with pytest.raises(UsageError, match="eta_max"):
        AdapLeRConfig(eta_max=0.01)


# ------------------------------------------------------------------------------------------ selection

def test_target_rule_picks_the_most_accurate_epoch_at_or_above_the_target():
    history = rows((0.84, 1.6), (0.80, 2.6), (0.83, 2.1), (0.85, 1.9), (0.82, 3.0))
    rule = SelectionRule(finetuned_accuracy=0.86, target_speedup=2.0)
    i = rule.pick(history)
    assert history[i]["epoch"] == 3  # 0.83 at 2.1x beats 0.80 and 0.82 above 2x; 0.85 at 1.9x is below
    rec = rule.record(history[i])
    assert rec["target_reached"] is True and rec["selection_rule"]["target_speedup"] == 2.0
    assert rule.closing_note(history[i], "out/best") is None


def test_unreached_target_keeps_the_closest_epoch_and_says_so():
    history = rows((0.85, 1.4), (0.81, 1.9), (0.84, 1.7))
    rule = SelectionRule(finetuned_accuracy=0.86, target_speedup=2.0)
    i = rule.pick(history)
    assert history[i]["epoch"] == 2  # the fastest is the closest to 2x
    assert rule.record(history[i])["target_reached"] is False
    note = rule.closing_note(history[i], "out/best")
    assert "2x not reached" in note and "epoch 2" in note and "1.90x" in note
    # an epoch that reaches the target replaces any that does not, however accurate
    assert rule.better({"dev_accuracy": 0.5, "dev_flops_speedup": 2.0}, history[0])


@pytest.mark.parametrize("drop, expected", [(0.0, 1), (1.0, 3), (3.0, 4)])
def test_max_accuracy_drop_picks_the_fastest_epoch_within_d_points(drop, expected):
    history = rows((0.86, 1.2), (0.83, 1.5), (0.851, 1.8), (0.835, 2.5), (0.70, 6.0))
    rule = SelectionRule(finetuned_accuracy=0.86, max_accuracy_drop=drop)
    assert history[rule.pick(history)]["epoch"] == expected


def test_no_epoch_within_d_falls_back_to_the_most_accurate():
    history = rows((0.80, 3.0), (0.82, 2.0), (0.81, 2.5))
    rule = SelectionRule(finetuned_accuracy=0.86, max_accuracy_drop=1.0)
    i = rule.pick(history)
    assert history[i]["epoch"] == 2 and rule.record(history[i])["selection"].startswith("fallback")
    assert "most accurate" in rule.closing_note(history[i], "out/best")


def test_a_faster_epoch_that_narrowly_missed_the_bound_is_reported():
    # the eighteenth session's pang-lee run: epoch 1 was selected; epoch 5 (last/) missed by 0.6 points
    history = rows((0.824, 2.55), (0.78, 4.27), (0.80, 6.59), (0.776, 8.14), (0.796, 8.40))
    rule = SelectionRule(finetuned_accuracy=0.812, max_accuracy_drop=1.0)
    i = rule.pick(history)
    assert history[i]["epoch"] == 1
    note = rule.closing_note(history[i], "out/best", history)
    assert note.startswith("epoch 5 ran at 8.40x, faster than the selected 2.55x")
    assert "missed the bound 80.20 % by 0.60 point(s)" in note
    assert "saved in out/last" in note and note.endswith("--max-accuracy-drop 2 to select it")


def test_a_narrow_miss_that_was_not_the_last_epoch_was_not_kept():
    history = rows((0.86, 1.2), (0.845, 3.0), (0.86, 1.5))
    rule = SelectionRule(finetuned_accuracy=0.86, max_accuracy_drop=1.0)
    i = rule.pick(history)
    note = rule.closing_note(history[i], "out/best", history)
    assert history[i]["epoch"] == 3 and note.startswith("epoch 2 ran at 3.00x")
    assert "it was not kept" in note and "--max-accuracy-drop 1.5 to select it" in note


@pytest.mark.parametrize("history, target", [
    (rows((0.86, 1.2), (0.82, 3.0)), None),  # missed by 3 points: not narrow
    (rows((0.86, 1.2), (0.86, 1.1)), None),  # nothing faster missed
    (rows((0.86, 2.2), (0.845, 3.0)), 2.0),  # with a target the rule is about speed
])
def test_no_near_miss_note(history, target):
    rule = SelectionRule(finetuned_accuracy=0.86, max_accuracy_drop=1.0, target_speedup=target)
    i = rule.pick(history)
    assert rule.closing_note(history[i], "out/best", history) is None


# ------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("target, drop, fragment", [
    (0.5, 1.0, "target_speedup"), (float("nan"), 1.0, "target_speedup"), (float("inf"), 1.0, "finite"),
    (None, -0.5, "max_accuracy_drop")])
def test_bad_target_fields(target, drop, fragment):
    with pytest.raises(UsageError, match=fragment):
        check_target_fields(target, drop)


def test_target_with_an_explicit_knob_is_refused():
    with pytest.raises(UsageError, match="drop --knob"):
        check_knob_free(2.0, 0.01, {}, "phi")
    with pytest.raises(UsageError, match="drop --set alpha="):
        check_knob_free(2.0, None, {"alpha": 0.5}, "alpha")
    check_knob_free(None, 0.01, {"phi": 0.1}, "phi")  # without a target the knob is the user's


def test_bound_depends_on_length_and_method():
    short, long_ = torch.full((50,), 27), torch.full((50,), 496)
    assert max_speedup(short, MINILM, list(range(6))) < max_speedup(long_, MINILM, list(range(6)))
    # TR-BERT's first policy sits before layer 1: layer 0 always runs on every token
    assert max_speedup(short, MINILM, [1, 3], first_drop_layer=1) < max_speedup(short, MINILM, [])
    check_reachable(3.0, short, MINILM, list(range(6)))
    with pytest.raises(UsageError, match="--target-speedup 1000 is above what the dev inputs allow"):
        check_reachable(1000.0, short, MINILM, list(range(6)))


# ------------------------------------------------------------------------------------------ PoWER-BERT solve

@pytest.mark.parametrize("target", [1.5, 2.0, 3.0])
def test_power_bert_retention_meets_the_target_without_overshooting(target):
    lengths = torch.randint(10, 64, (500,), generator=torch.Generator().manual_seed(0))
    shape = [45, 35, 21, 9, 4, 1]
    ret = retention_for_speedup(shape, lengths, MINILM, target, 64)
    s = retention_speedup(ret, lengths, MINILM)
    assert target <= s <= 1.1 * target
    assert ret == sorted(ret, reverse=True) and 1 <= min(ret) and max(ret) <= 64


# ------------------------------------------------------------------------------------------ tiny runs

def test_adapler_target_run_records_fields_and_moves_phi(finetuned_run, sentiment_csv, tmp_path, capsys, monkeypatch):
    """End to end through the CLI: one epoch with --target-speedup, fields in config.json, the end table."""
    sys.path.insert(0, str(ROOT))
    import cli
    monkeypatch.setenv("ADAPLER_QUIET", "1")
    out = tmp_path / "ad"
    rc = cli.run_cli(["train", "--init", str(finetuned_run), "--data", sentiment_csv, "--out", str(out),
                      "--epochs", "1", "--batch-size", "16", "--lr", "5e-4", "--cp-lr", "1e-3", "--eta-lr", "5e-3",
                      "--target-speedup", "3", "--max-accuracy-drop", "2", "--set", "saliency_epochs=2"])
    printed = capsys.readouterr().out
    assert rc == 0
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["adapler"]["target_speedup"] == 3.0 and best["adapler"]["max_accuracy_drop"] == 2.0
    assert best["selection_rule"] == {"target_speedup": 3.0, "max_accuracy_drop": 2.0,
                                      "finetuned_dev_accuracy": best["finetuned_dev_accuracy"]}
    hist = json.loads((out / "history.json").read_text())
    assert best["target_reached"] == (hist[0]["dev_flops_speedup"] >= 3.0)
    # the training batches stay below 3x: the controller raised phi from its start value (the config's phi)
    assert hist[0]["train_speedup"] < 3.0 * TARGET_MARGIN and hist[0]["phi"] > best["adapler"]["phi"]
    assert "FLOPs speedup" in printed and "selected: " in printed and "<-" in printed


def test_power_bert_target_run_lands_on_the_target(tmp_path, one_thread):
    from adapler.methods import train_method
    from conftest import tiny_finetuned
    ds, ft = tiny_finetuned(tmp_path)
    out = train_method("power-bert", ds, ft, tmp_path / "pb", epochs=1, batch_size=16, search_epochs=1,
                       target_speedup=1.5)
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["target_reached"] is True and best["power_bert"]["target_speedup"] == 1.5
    assert best["dev_flops_speedup"] >= 1.5  # the solved retention fixes the dev speedup exactly
    hist = json.loads((out / "history.json").read_text())
    assert hist[-1]["retention"] == best["selector"]["retention"]


def test_tr_bert_target_run_steers_alpha(tmp_path, one_thread):
    from adapler.methods import train_method
    from conftest import tiny_finetuned
    ds, ft = tiny_finetuned(tmp_path)
    out = train_method("tr-bert", ds, ft, tmp_path / "tr", epochs=1, batch_size=16, k=2, target_speedup=1.3,
                       target_gain=0.5)
    hist = json.loads((out / "history.json").read_text())
    assert [r["phase"] for r in hist] == ["rl", "joint"] and all("alpha" in r for r in hist)
    assert hist[0]["alpha"] != 1.0  # moved from its start value
    best = json.loads((out / "best" / "config.json").read_text())
    assert best["tr_bert"]["target_speedup"] == 1.3 and best["target_reached"] == (best["dev_flops_speedup"] >= 1.3)


# ------------------------------------------------------------------------------------------ AdapLeR defaults

def test_auto_defaults_follow_length_and_steps():
    """The runs that worked (vader-movies: 27 tokens, 795 steps, phi 1e-2, eta_lr 2e-3..3e-3; pang-lee: 496
    tokens, 375 steps, phi 7.5e-4..1.5e-3, eta_lr 5e-3) are what ``auto`` gives for their length and steps."""
    vader = resolve_defaults(AdapLeRConfig(), 27.0, 795, 6)
    pang = resolve_defaults(AdapLeRConfig(), 496.0, 375, 6)
    assert 0.008 <= vader.phi <= 0.015 and 2e-3 <= vader.eta_lr <= 3e-3 and vader.cp_lr == 1e-3
    assert 5e-4 <= pang.phi <= 1.5e-3 and 4e-3 <= pang.eta_lr <= 6.5e-3
    # a wider eta bound: eta_lr grows with it, so the whole range stays reachable in the same steps
    assert math.isclose(resolve_defaults(AdapLeRConfig(eta_max=2.0), 27.0, 795, 6).eta_lr, 2 * vader.eta_lr)
    # explicit values win; paper = the released settings
    mine = resolve_defaults(AdapLeRConfig(phi=0.2, eta_lr=1e-4), 27.0, 795, 6)
    assert (mine.phi, mine.eta_lr) == (0.2, 1e-4)
    paper = resolve_defaults(AdapLeRConfig(preset="paper", lr=3e-5), 27.0, 795, 6)
    assert (paper.phi, paper.eta_lr, paper.cp_lr, paper.distill, paper.gamma) == (5e-4, 5e-4, 3e-5, 0.0, 0.005)
    # the CP loss weight: auto's heavier one for every length, an explicit one wins
    assert (vader.gamma, pang.gamma) == (0.2, 0.2)
    assert resolve_defaults(AdapLeRConfig(gamma=0.005), 27.0, 795, 6).gamma == 0.005
    # distillation from the fine-tuned model: on by default only when steering to a target, never in paper
    assert (vader.distill, pang.distill) == (0.0, 0.0)
    assert resolve_defaults(AdapLeRConfig(target_speedup=2.0), 27.0, 795, 6).distill == 0.5
    assert resolve_defaults(AdapLeRConfig(target_speedup=2.0, distill=0.0), 27.0, 795, 6).distill == 0.0
    assert resolve_defaults(AdapLeRConfig(target_speedup=2.0, preset="paper"), 27.0, 795, 6).distill == 0.0
    with pytest.raises(UsageError, match="preset"):
        AdapLeRConfig(preset="fast")


def test_train_help_names_the_preset_gamma():
    """``train --help`` spells the presets' gamma out (the CLI does not import torch to read the constants), and
    in parentheses: rich took the bracketed form for markup and printed nothing of it."""
    from typer.testing import CliRunner
    from adapler.cli import app
    from adapler.training.train_adapler import AUTO_GAMMA, PAPER_DEFAULTS
    out = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "240"}).output
    text = " ".join(out.replace("\u2502", " ").split())  # rich's box edges and wrapping out of the way
    assert f"(default: {AUTO_GAMMA:g} with --preset auto, {PAPER_DEFAULTS['gamma']:g} with paper)" in text


def test_resumed_adapler_run_continues_phi_and_calibration(finetuned_run, sentiment_csv, tmp_path, monkeypatch):
    """An interrupted target run restarts its controller from the last history row, not from the start phi."""
    from adapler.data import load_dataset
    from adapler.training import train_adapler as ta
    data = load_dataset(sentiment_csv)
    cfg = AdapLeRConfig(epochs=2, batch_size=16, saliency_epochs=1, target_speedup=1.5)
    out = ta.train_adapler(data, finetuned_run, tmp_path / "ad", cfg)
    state = json.loads((out / "run_state.json").read_text())
    state["epochs_done"], state["history"] = 1, state["history"][:1]
    state["history"][0].update(phi=0.123, speedup_calibration=1.7)
    (out / "run_state.json").write_text(json.dumps(state))
    started = []

    class Recording(ta.KnobController):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append((self.value, self.calibration))

    monkeypatch.setattr(ta, "KnobController", Recording)
    ta.train_adapler(data, finetuned_run, out, cfg, resume=True)
    assert started == [(0.123, 1.7)]
