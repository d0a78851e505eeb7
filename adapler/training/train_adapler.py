"""Stage 3: AdapLeR training (docs/method.md §1.7-1.13).

Two optimisers over disjoint parameters from one forward pass:
  model (BERT, CPs, pooler, classifier) <- CE + gamma * L_CP
  eta, theta                            <- CE + phi * L_len     (theta via the theta_PR quirk)
(with ``distill`` > 0, CE is mixed with the KL to the fine-tuned model's logits: distill.py)
Checkpoint selection (target.py): the fastest epoch within ``max_accuracy_drop`` points of the fine-tuned dev
accuracy, or with ``target_speedup`` the most accurate epoch at or above it; phi is then steered per step by a
multiplicative controller on the training batches' FLOPs speedup.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..checkpoint import check_classes, checkpoint_dir, load_checkpoint, load_checkpoint_tokenizer
from ..data import Dataset
from ..encoder import PrunedBertClassifier
from ..errors import check_choice, check_range
from ..evaluate import evaluate
from ..flops import model_flops
from ..models import load_bert
from ..progress import log
from ..selectors.contribution import ETA_MAX, ETA_MIN, HARD_LAMBDA, ContributionSelector, soft_removal
from .common import (MIN_MAX_LENGTH, SALIENCY_DIR, TrainData, check_max_length, dev_lengths, finetuned_dev_accuracy,
                     linear_warmup, load_init, param_groups, run_fingerprint, seed_everything)
from .auto import steps_per_epoch
from .distill import DEFAULT_TEMPERATURE, batch_teacher, distilled_task_loss, teacher_logits
from .distributed import TrainEnv
from .finetune import top_epochs
from .saliency import batch_targets, compute_saliencies
from .runner import Phase, Run, open_run
from .target import KnobController, SelectionRule, check_reachable, check_target_fields, dims_of_config


@dataclass
class AdapLeRConfig:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-5
    eta_lr: float | None = None  # None: from ``preset`` (resolve_defaults)
    cp_lr: float | None = None  # None: from ``preset``; paper = lr, auto = 1e-3 (fresh CPs in short runs)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    gamma: float | None = None  # CP (KL) loss weight; None: from ``preset`` (AUTO_GAMMA, PAPER_DEFAULTS)
    phi: float | None = None  # length loss weight, the trade-off knob; None: from ``preset``
    preset: str = "auto"  # auto: phi and eta_lr scaled to the data's length and steps | paper: README SST-2
    init: str = "finetuned"  # finetuned | pretrained  [ours: finetuned by default, see docs]
    theta: bool = True  # faithful theta/theta_PR quirk
    length_loss: str = "absolute"  # absolute | normalized
    kl_target_stopgrad: bool = False  # faithful: gradients leak through the rolled target mask
    saliency_epochs: int = 3
    max_length: int | None = None  # default: the fine-tuned checkpoint's
    seed: int = 42
    target_speedup: float | None = None  # steer phi towards this dev FLOPs speedup (phi is then the start value)
    max_accuracy_drop: float = 1.0  # points below the fine-tuned dev accuracy that selection accepts
    target_gain: float = 0.05  # controller step: phi *= exp(gain * relative speedup error) per step
    # phi may turn negative (down to -phi_0) after an overshoot; off by default: on vader X = 1.5 it pulled the
    # speedup back too slowly to help (docs/results.md §1d)
    target_two_sided: bool = False
    # after an overshoot eta itself is scaled back: eta *= exp(gain * error) per step while the calibrated batch
    # speedup is above the aim (KnobController.pullback); 0 turns it off (phi control alone)
    target_eta_gain: float = 0.01
    # [ours] upper clip of eta (the paper's is 1: a token survives when its score reaches the uniform share
    # 1/n). Once eta sits at the bound, phi no longer prunes anything (it only moves eta), so targets beyond
    # what eta <= 1 gives need a larger bound, e.g. --set eta_max=2 (docs/design.md, "eta bound")
    eta_max: float = ETA_MAX
    # [ours] logit distillation from the --init (fine-tuned, dense) model: the task loss is
    # (1 - distill) * CE + distill * T^2 * KL(teacher_T || student_T), T = distill_temperature (distill.py).
    # None: from ``preset`` (auto: AUTO_TARGET_DISTILL with --target-speedup, else 0; paper: 0)
    distill: float | None = None
    distill_temperature: float = DEFAULT_TEMPERATURE
    # [ours] exponential moving average of the encoder's and the head's weights, decay ``ema`` per step (0: off).
    # Each epoch's dev evaluation and checkpoints use the average; training goes on with the raw weights. The
    # selector is not averaged: its CPs and eta decide the speedup the controller steers, and an average of
    # CPs from before the first epoch's end keeps almost every token (docs/results.md §1h, "weight average").
    # A --resume continues from the saved (averaged) weights and restarts the average there.
    ema: float = 0.0

    def __post_init__(self) -> None:
        # choices and ranges checked here so that the CLI options, --set and the Python API all refuse
        # bad values at once (e.g. length_loss "foo" used to train as "absolute")
        check_choice("init (--init-weights)", self.init, ("finetuned", "pretrained"))
        check_choice("length_loss (--length-loss)", self.length_loss, ("absolute", "normalized"))
        check_choice("preset (--preset)", self.preset, PRESETS)
        for name in ("epochs", "batch_size", "saliency_epochs"):
            check_range(name, getattr(self, name), 1)
        for name in ("lr", "eta_lr", "cp_lr"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0, strict_lo=True)
        check_range("ema", self.ema, 0, 0.9999)
        for name in ("gamma", "phi", "weight_decay"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0)
        check_range("warmup_ratio", self.warmup_ratio, 0, 1)
        if self.max_length is not None:
            check_range("max_length", self.max_length, MIN_MAX_LENGTH)
        check_target_fields(self.target_speedup, self.max_accuracy_drop)
        check_range("target_gain", self.target_gain, 0, strict_lo=True)
        check_range("target_eta_gain", self.target_eta_gain, 0)
        check_range("eta_max", self.eta_max, ETA_MIN, strict_lo=True)
        if self.distill is not None:
            check_range("distill", self.distill, 0, 1)
        check_range("distill_temperature", self.distill_temperature, 0, strict_lo=True)


PRESETS = ("auto", "paper")
PHI_TOKENS = 0.3  # auto: phi = PHI_TOKENS / mean training length (docs/design.md, "Defaults")
ETA_DRIFT = 1.0  # auto: eta_lr such that Adam can move eta about this far over the run, times eta_max
ETA_LR_RANGE = (5e-4, 1e-2)
AUTO_CP_LR = 1e-3
# auto, with a target: at a held speedup the distilled run was the more accurate on dev in 5 of 6 comparisons and
# on test in 4 of 5 (vader X = 2, three seeds: +0.4 to +3.8 test points; pang-lee X = 12: -0.4 and 0.0 against
# -2.8 without; pang-lee X = 4: -2.0 on test, +0.8 on dev; docs/results.md §1d, §1e). Without a target it also
# prunes less at a given phi, which is not measured against the accuracy rule, so it stays off there.
AUTO_TARGET_DISTILL = 0.5
# paper: the released SST-2 settings (the CPs also train at the encoder's lr there)
PAPER_DEFAULTS = {"phi": 5e-4, "eta_lr": 5e-4, "gamma": 0.005, "distill": 0.0}
# auto: the CP loss 40x heavier than the paper's. On vader (26 tokens) the CPs otherwise learn too little in a
# few thousand steps: X = 1.8 +2.18 and +1.23 test points (two seeds), X = 3 +1.33; on long texts equal (spam
# CSV 4.71x against 4.82x, both at 100 %; pang-lee: docs/results.md §9b)
AUTO_GAMMA = 0.2


def resolve_defaults(cfg: AdapLeRConfig, mean_length: float, total_steps: int, num_layers: int) -> AdapLeRConfig:
    """``cfg`` with phi, eta_lr, cp_lr, gamma and distill filled where None. ``paper``: the released SST-2 settings
    (phi 5e-4, eta_lr 5e-4, CPs at BERT's lr, gamma 0.005, no distillation). ``auto``: phi inversely proportional to
    the mean training length (the absolute length loss counts tokens), eta_lr from the run's step count (Adam moves
    eta ~eta_lr per step), AUTO_CP_LR, AUTO_GAMMA, and distillation only with a target."""
    if cfg.preset == "paper":
        fill = {**PAPER_DEFAULTS, "cp_lr": cfg.lr}
    else:
        from .power_bert import drift_budget  # the same schedule sum bounds how far eta can move
        phi = PHI_TOKENS * num_layers if cfg.length_loss == "normalized" else PHI_TOKENS / max(1.0, mean_length)
        # the whole range [0, eta_max] within reach: a larger bound needs a proportionally faster eta
        eta_lr = ETA_DRIFT * cfg.eta_max / max(drift_budget(1.0, total_steps, cfg.warmup_ratio), 1e-12)
        fill = {"phi": phi, "eta_lr": min(ETA_LR_RANGE[1], max(ETA_LR_RANGE[0], eta_lr)), "cp_lr": AUTO_CP_LR,
                "gamma": AUTO_GAMMA,
                "distill": AUTO_TARGET_DISTILL if cfg.target_speedup is not None else 0.0}
    return replace(cfg, **{k: v for k, v in fill.items() if getattr(cfg, k) is None})


def lambda_at(step: int, epoch: int, epochs: int) -> float:
    """lambda schedule: 1000 for the very first step, then per epoch e (0-based) as in the original."""
    if step == 0:
        return 1000.0
    if epochs == 5:
        return 10.0 * 10.0 ** epoch
    if epochs == 3:
        return 50.0 * 50.0 ** epoch
    if epochs == 10:
        return 10.0 * 3.0 ** epoch
    return 10.0 * (1e4 ** (epoch / max(1, epochs - 1)))  # [ours] geometric 10 -> 1e5


def cp_kl_loss(cp_outputs: list[torch.Tensor], sal: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor,
               theta: torch.Tensor | None, lam: float, stopgrad: bool) -> torch.Tensor:
    """Weighted KL between rolled-forward saliency targets and CP outputs (compute_head_lossV5)."""
    L = len(cp_outputs)
    m = mask.float()
    total = sal.new_zeros(())
    for layer, scores in enumerate(cp_outputs):
        q = sal * m
        q = q / (q.sum(-1, keepdim=True) + 1e-15)
        if layer > 0 and theta is not None:
            q = torch.cat([q[:, :1] * theta[layer - 1], q[:, 1:]], dim=1)
            q = q / (q.sum(-1, keepdim=True) + 1e-15)
        qc, ic = q.clamp(1e-7, 1.0), scores.clamp(1e-7, 1.0)
        kl = (qc * torch.log(qc / ic)).sum(-1)
        alive = m[:, 1:].max(dim=1).values.clamp(min=0).detach() if m.shape[1] > 1 else torch.zeros_like(kl)
        total = total + (L - layer) * (kl * alive).mean()
        delta = eta[layer] / (m.sum(-1, keepdim=True) + 1e-15)
        s = soft_removal(scores, delta, lam)
        m = torch.where(m > 1e-6, m * torch.exp(s * m), m)
        m = torch.cat([torch.ones_like(m[:, :1]), m[:, 1:]], dim=1)
        if stopgrad:
            m = m.detach()
    return total


class WeightAverage:
    """An exponential moving average of ``params`` (decay per ``update``) that can stand in for them:
    ``swap_in`` puts the average into the parameters (keeping the raw values), ``swap_out`` restores them."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params, self.weight = params, 1.0 - decay
        self.average = [p.detach().clone() for p in params]
        self.raw: list[torch.Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.average, [p.detach() for p in self.params], self.weight)

    @torch.no_grad()
    def swap_in(self) -> None:
        self.raw = [p.detach().clone() for p in self.params]
        torch._foreach_copy_([p.data for p in self.params], self.average)

    @torch.no_grad()
    def swap_out(self) -> None:
        if self.raw is not None:
            torch._foreach_copy_([p.data for p in self.params], self.raw)
            self.raw = None


def build_adapler_model(init: Path, cfg: AdapLeRConfig) -> tuple[PrunedBertClassifier, dict]:
    ft_model, ft_cfg = load_checkpoint(init)
    bert_cfg = ft_model.config
    selector = ContributionSelector(bert_cfg.hidden_size, bert_cfg.num_hidden_layers, act=bert_cfg.hidden_act,
                                    init_std=bert_cfg.initializer_range)
    model = PrunedBertClassifier(bert_cfg, ft_model.num_labels, selector, pooler=ft_model.bert.pooler is not None)
    if cfg.init == "finetuned":
        model.load_state_dict(ft_model.state_dict(), strict=False)  # selector keys stay freshly initialised
    elif cfg.init == "pretrained":
        bert, _ = load_bert(ft_cfg["source_model"])
        model.bert.load_state_dict(bert.state_dict())
    return model, ft_cfg


def train_adapler(data: Dataset, init: str | Path, out: str | Path, cfg: AdapLeRConfig,
                  overwrite: bool = False, resume: bool = False, cache_dir: str | Path | None = None,
                  device: str | None = None, precision: str | None = None) -> Path:
    """Writes ``out/last/`` every epoch (resume point), ``out/best/`` (selected), ``out/history.json``.

    Saliency targets are cached under ``cache_dir`` (default ``out/saliency``; a sweep shares one), keyed by
    content, so nothing is written outside the run's own directories. ``device``/``precision`` as in
    ``finetune``; the CP threshold, the soft removal and the FLOPs of the controller stay float32."""
    env = TrainEnv.create(device, precision)
    init = Path(init)
    ckpt = checkpoint_dir(init)
    ft_cfg = load_init(init)
    check_classes(ckpt, ft_cfg, data)
    max_length = cfg.max_length or ft_cfg["max_length"]
    check_max_length(max_length, ft_cfg["backbone"].get("max_position_embeddings", 512), str(ckpt))
    tokenizer = load_checkpoint_tokenizer(ckpt)
    if cfg.target_speedup is not None:  # before --out is touched: an unreachable target is bad input
        L = ft_cfg["backbone"].get("num_hidden_layers", 12)
        check_reachable(cfg.target_speedup, dev_lengths(data, tokenizer, max_length), dims_of_config(ft_cfg),
                        list(range(L)))
    td = TrainData.make(data, tokenizer, max_length)
    epoch_steps = steps_per_epoch(len(data.train), cfg.batch_size * env.world_size)
    total_steps = epoch_steps * cfg.epochs
    given = cfg
    cfg = resolve_defaults(cfg, float(td.train.attention_mask.sum(1).float().mean()), total_steps,
                           ft_cfg["backbone"].get("num_hidden_layers", 12))
    if given != cfg:
        log(f"AdapLeR {cfg.preset} defaults: phi {cfg.phi:.3g}, eta_lr {cfg.eta_lr:.3g}, cp_lr {cfg.cp_lr:.3g}, "
            f"gamma {cfg.gamma:g}"
            + (f", distill {cfg.distill:g} (--set distill=0 turns it off)" if given.distill is None and cfg.distill else ""))
    fingerprint = run_fingerprint(data, asdict(cfg), init)
    out, state = open_run(out, overwrite, resume, fingerprint, env)
    seed_everything(cfg.seed)
    model, ft_cfg = build_adapler_model(ckpt, cfg)
    best_ft = finetuned_dev_accuracy(init, ft_cfg)
    if best_ft is None:  # measured once, on rank 0
        best_ft = env.broadcast(evaluate(model, data.dev, tokenizer, max_length, mode="dense", desc="fine-tuned dev",
                                         device=env.device)["accuracy"] if env.main else None)
    epochs_for_sal = top_epochs(init, cfg.saliency_epochs) if (init / "dev_scores.json").exists() else [ckpt]
    tables = out / SALIENCY_DIR if cache_dir is None else cache_dir
    sal = compute_saliencies(epochs_for_sal, data.train, tokenizer, max_length, tables, env=env)
    teacher = teacher_logits(ckpt, data.train, tokenizer, max_length, tables, env=env) if cfg.distill > 0 else None

    rule = SelectionRule(best_ft, cfg.max_accuracy_drop, cfg.target_speedup)
    extra = {"stage": "adapler", "data": data.name, "pair": data.is_pair, "source_model": ft_cfg.get("source_model"),
             "init_checkpoint": str(ckpt), "adapler": asdict(cfg), "finetuned_dev_accuracy": best_ft}
    run = Run(out, model, data, tokenizer, max_length, "adapler", asdict(cfg), extra, env, fingerprint, rule,
              checkpoint_fields=("dev_accuracy", "dev_flops_speedup", "phi"),
              describe=lambda r: f"epoch {r['epoch']}: dev accuracy {r['dev_accuracy']:.4f} (fine-tuned {best_ft:.4f}), "
                                 f"FLOPs speedup {r['dev_flops_speedup']:.2f}x, eta {r['eta']}, phi {r['phi']:.3g}")
    run.resume_from(state)
    # phi and the calibration continue from where an interrupted run left them
    last = run.history[-1] if run.history else {}
    ctrl = None if cfg.target_speedup is None else KnobController(
        cfg.target_speedup, last.get("phi", cfg.phi), cfg.target_gain, calibration=last.get("speedup_calibration", 1.0),
        scale=cfg.phi if cfg.target_two_sided else None)

    average: WeightAverage | None = None  # --set ema

    def setup(start_epoch: int):
        nonlocal average
        model = run.model
        sel: ContributionSelector = model.selector
        model_params = [(n, p) for n, p in model.named_parameters() if n not in ("selector.eta", "selector.theta")]
        groups = param_groups([(n, p) for n, p in model_params if not n.startswith("selector.cps.")], cfg.weight_decay)
        cp_groups = param_groups([(n, p) for n, p in model_params if n.startswith("selector.cps.")], cfg.weight_decay)
        for g in cp_groups:
            g["lr"] = cfg.cp_lr
        opt = torch.optim.AdamW(groups + cp_groups, lr=cfg.lr, eps=1e-12)
        eta_opt = torch.optim.Adam([sel.eta, sel.theta], lr=cfg.eta_lr, eps=1e-12)
        start = start_epoch * epoch_steps
        scheds = [linear_warmup(o, total_steps, cfg.warmup_ratio, start) for o in (opt, eta_opt)]
        step_no = start
        if cfg.ema > 0:
            average = WeightAverage([p for n, p in model_params if not n.startswith("selector.")], cfg.ema)

        def step(b) -> dict[str, float]:
            nonlocal step_no
            if average is not None:  # the last evaluation swapped the average in: train on the raw weights
                average.swap_out()
            sel.lam = lambda_at(step_no, step_no // epoch_steps, cfg.epochs)
            with env.autocast():
                o = model(b.input_ids, b.attention_mask, b.token_type_ids, mode="soft")
            # the losses in float32: CP scores, thresholds and soft removal already are (soft_removal)
            task = distilled_task_loss(o.logits.float(), b.labels,
                                     None if teacher is None else batch_teacher(teacher, b.ids).to(b.labels.device),
                                     cfg.distill, cfg.distill_temperature)
            targets = batch_targets(sal, b.ids, b.input_ids.shape[1]).to(b.input_ids.device)
            kl = cp_kl_loss([c.float() for c in o.aux["cp_outputs"]], targets, b.attention_mask, sel.eta,
                            sel.theta if cfg.theta else None, sel.lam, cfg.kl_target_stopgrad)
            lengths = o.kept_lengths.float().sum(dim=1)
            if cfg.length_loss == "normalized":
                lengths = lengths / (b.attention_mask.sum(dim=1).float() * model.num_layers)
            len_loss = lengths.mean()
            combined = task + (cfg.phi if ctrl is None else ctrl.value) * len_loss
            theta_pr = o.aux["theta_pr"]
            g_eta, g_thpr = torch.autograd.grad(env.scale(combined), [sel.eta, theta_pr], retain_graph=True,
                                                allow_unused=True)
            opt.zero_grad()
            eta_opt.zero_grad()
            env.backward(task + cfg.gamma * kl)
            # eta/theta follow only the combined loss (overwrite what the model loss deposited).
            sel.eta.grad = g_eta if g_eta is not None else torch.zeros_like(sel.eta)
            sel.theta.grad = (g_thpr / (sel.theta.detach() + 1e-7)) if (cfg.theta and g_thpr is not None) \
                else torch.zeros_like(sel.theta)
            encoder_params = [p for _, p in model_params]
            env.apply_gradients(encoder_params + [sel.eta, sel.theta], [opt, eta_opt],
                                [encoder_params, [sel.eta, sel.theta]])
            for s in scheds:
                s.step()
            step_no += 1
            logs = {("task" if teacher is not None else "ce"): task.item(), "kl": kl.item(), "length": len_loss.item()}
            if ctrl is not None:  # soft kept counts: the global batch's speedup as training sees it
                dense, pruned = model_flops(model, b.attention_mask.sum(dim=1), o.kept_lengths.detach().float())
                keep = float(env.share > 0)  # a stand-in row (see TrainEnv.shard) counts nothing
                dense_sum, pruned_sum = env.global_sum(keep * float(dense.sum()), keep * float(pruned.sum()))
                logs["train_speedup"] = dense_sum / pruned_sum
                ctrl.update(logs["train_speedup"])
                if cfg.target_eta_gain > 0:  # the same factor on every rank: the error is from global sums
                    with torch.no_grad():
                        sel.eta.mul_(ctrl.pullback(cfg.target_eta_gain))
            sel.clip_eta(cfg.eta_max)  # after the optimizer step and any pull-back
            if average is not None:
                average.update()
            return logs
        return step

    def after_epoch(row: dict) -> None:
        row["eta"] = [round(float(v), 5) for v in run.model.selector.eta.detach()]
        row["phi"] = cfg.phi if ctrl is None else ctrl.value
        if ctrl is not None:
            row["speedup_calibration"] = ctrl.calibrate(row["dev_flops_speedup"])

    def hard_lambda() -> None:
        run.model.selector.lam = HARD_LAMBDA
        if average is not None:  # evaluate (and save) the average; the next step swaps the raw weights back
            average.swap_in()

    out = run.run([Phase(None, cfg.epochs, setup, after_epoch, before_eval=hard_lambda)], td, cfg.batch_size, cfg.seed)
    note = eta_bound_note(run.history, rule, cfg.eta_max)
    if note:
        log(note)
    return out


def eta_bound_note(history: list[dict], rule: SelectionRule, eta_max: float) -> str | None:
    """A hint for a run whose target was not reached while eta sat at its bound in most layers: then phi had
    nothing left to move, and only a larger ``eta_max`` lets the threshold prune further."""
    if rule.target_speedup is None or not history:
        return None
    if any(rule.qualified(r["dev_accuracy"], r["dev_flops_speedup"]) for r in history):
        return None
    eta = history[-1].get("eta") or []
    at_bound = sum(v >= eta_max - 1e-4 for v in eta)
    if not eta or 2 * at_bound < len(eta):
        return None
    return (f"eta is at its upper bound ({eta_max:g}) in {at_bound} of {len(eta)} layers, so the length loss could "
            f"not prune further; --set eta_max={2 * eta_max:g} lets the threshold rise above {eta_max:g} / n")
