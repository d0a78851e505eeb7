"""Baseline trainers: PoWER-BERT (method.md §2.6) and TR-BERT (§3.4-3.6), from a fine-tuned run.

Both are phased and resumable at phase/epoch granularity: ``out/last/`` is written after every epoch
and phase change, ``run_state.json`` says which phase and epoch that is, ``history.json`` has one row
per epoch (train losses + hard-mode dev metrics), ``out/best/`` is the best dev-accuracy epoch of the
final phase. Optimiser state is not saved (as in the AdapLeR trainer): a resumed phase restarts its
optimiser at the right schedule step.

PoWER-BERT phases: ``search`` (Soft-Extract configuration search) then ``retrain`` (Hard Extract).
Collapse guard (IBM/PoWER-BERT#10: every r drifts to 0 because the L1 term is unconstrained and the
LayerNorm after the FFN undoes most of a token's down-scaling, so CE barely resists). Under Adam a
coordinate whose gradient is dominated by the penalty moves by ~LR_SOFT_EXTRACT per step whatever
LAMBDA is, so how far r can fall is bounded by the search's "drift budget" D = sum of the r learning
rate over the search (~ lr_soft * steps / 2 with the linear schedule); LAMBDA only decides which ranks
resist (those whose CE gradient outweighs LAMBDA * j). Hence:
  1. a short search (``search_epochs=2``) with D near 1 (a warning is logged when D < 0.75: r cannot
     fall far enough to shorten typical inputs; or D > 3: expect collapse), r clipped to [0, 1] after
     every step;
  2. l_j = max(1, int(sum r_j)) made non-increasing over layers (``retention_from_r``);
  3. sum r_j per layer and the implied l_j are logged every epoch (history.json); if the deepest layer
     is left with fewer than ``COLLAPSE_FRACTION`` of the dev set's mean length the run says so
     (``"collapsed": true`` in the history row and in the checkpoint config) instead of hiding it.
TR-BERT phases: optional ``init`` (``init_epochs``: policies fitted to heuristic rank targets, the
original's IMDB step), ``rl`` (policy nets only, BERT frozen, imitation warm-up) then ``joint`` (all
parameters, KD from the fine-tuned model + L_RL).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..checkpoint import CheckpointError, load_checkpoint, load_checkpoint_tokenizer, save_checkpoint
from ..data import Dataset, Encoded, batches, encode
from ..encoder import PrunedBertClassifier
from ..evaluate import evaluate
from ..progress import log, progress_bar
from ..selectors.power_bert import AttentionTopKSelector, retention_from_r
from ..selectors.tr_bert import (PolicySelector, heuristic_scores, length_term, policy_inputs, rank_targets,
                                 reinforce_loss, rewards)
from .common import TrainData, init_path, linear_warmup, param_groups, prepare_out_dir, seed_everything, train_epoch, write_state

COLLAPSE_FRACTION = 0.25


@dataclass
class PowerBertConfig:
    """Defaults calibrated on all-MiniLM-L6-v2, max length 64, vader-movies (8.4k train, mean length 26).

    The penalty's gradient on each r_j[k] is LAMBDA * j whatever N is, so N = max_length needs no
    rescaling of LAMBDA; what matters is LAMBDA * j against the CE gradient on r (measured at r = 1:
    mean ~1e-3, spread ~1e-2 in layers 1-3, ~1e-4 deeper, 0 beyond rank 0 in the last layer). With
    D ~ 1.3, LAMBDA = 1e-3 gave l = [43, 34, 20, 8, 5, 2] (1.7x dev FLOPs speedup before re-training,
    dev accuracy unchanged) and 3e-3 gave [31, 20, 10, 4, 2, 1] (2.3x, -8 points before re-training);
    1e-4 barely moves the first layers. LR_SOFT_EXTRACT = 5e-3 (within the original's 1e-4..1e-2): at
    1e-3 two epochs of 265 steps give D ~ 0.25, r cannot drop below ~0.75 and no l_j gets under the
    mean length, i.e. no speedup. For a train set n times larger, divide lr_soft by n.
    """
    lam: float = 1e-3  # LAMBDA, the knob
    search_epochs: int = 2
    retrain_epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-5  # LR_BERT
    lr_soft: float = 5e-3  # LR_SOFT_EXTRACT
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    protect_cls: bool = False
    seed: int = 42


@dataclass
class TrBertConfig:
    alpha: float = 1.0  # length reward weight, the knob
    rl_epochs: int = 2
    joint_epochs: int = 1
    batch_size: int = 32  # examples per step; each is replicated k times
    lr: float = 3e-5  # BERT, joint stage
    policy_lr: float = 1e-3  # [ours] the policy nets are new and our runs are short (original: 3e-5)
    init_epochs: int = 0  # rank initialisation of the policies before RL (original --train_init, IMDB)
    k: int = 8
    guide_rate: float = 0.5
    tau: float = 1.0
    len_denominator: str = "padded"  # padded (original) | real
    batch_fill: str = "masked"  # masked (TokenDrop contract) | topk (original batching)
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    seed: int = 42


@dataclass
class _Phase:
    name: str
    epochs: int
    setup: Callable[[int], Callable[[Encoded], dict[str, float]]]  # start epoch -> step function
    after_epoch: Callable[[dict], None] = lambda row: None  # add phase-specific fields to a history row
    finish: Callable[[], None] = lambda: None  # idempotent: may run again after a crash
    seed_index: int | None = None  # data-order seed slot; default: the phase's position in the list


@dataclass
class _Run:
    """Bookkeeping shared by both trainers: run_state.json, history.json, out/last, out/best."""
    out: Path
    model: PrunedBertClassifier
    data: Dataset
    tokenizer: Any
    max_length: int
    extra: dict
    config: dict
    phase: str = ""
    epochs_done: int = 0
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "phase": None, "dev_accuracy": -1.0})
    finished: bool = False

    def resume_from(self, state: dict | None) -> None:
        if not state:
            return
        self.finished = bool(state.get("finished"))
        self.phase, self.epochs_done = state["phase"], state["epochs_done"]
        self.history, self.best = state["history"], state["best"]
        if (self.out / "last").exists():
            self.model, _ = load_checkpoint(self.out / "last")
        log(f"resuming {self.out}: phase {self.phase}, {self.epochs_done} epoch(s) done")

    def save(self, name: str, meta: dict) -> None:
        save_checkpoint(self.model, self.out / name, tokenizer=self.tokenizer, label_names=self.data.label_names,
                        max_length=self.max_length, extra={**self.extra, **meta})

    def write(self, finished: bool = False) -> None:
        (self.out / "history.json").write_text(json.dumps(self.history, indent=2))
        write_state(self.out, {"method": self.model.method, "phase": self.phase, "epochs_done": self.epochs_done,
                               "history": self.history, "best": self.best, "config": self.config,
                               "finished": finished})

    def run(self, phases: list[_Phase], td: TrainData, batch_size: int, seed: int) -> Path:
        if self.finished:
            log(f"{self.out} is already finished")
            return self.out
        names = [p.name for p in phases]
        select = [p.name for p in phases if p.epochs > 0][-1:]  # best checkpoint comes from the last phase
        start = names.index(self.phase) if self.phase in names else 0
        for ph in phases[start:]:
            done = self.epochs_done if ph.name == self.phase else 0
            self.phase, self.epochs_done = ph.name, done
            if done < ph.epochs:
                step = ph.setup(done)
            for epoch in range(done + 1, ph.epochs + 1):
                slot = names.index(ph.name) if ph.seed_index is None else ph.seed_index
                logs = train_epoch(self.model, td.epoch(batch_size, seed + 100 * slot + epoch), step,
                                   f"{self.model.method} {ph.name} epoch {epoch}/{ph.epochs}")
                dev = evaluate(self.model, self.data.dev, self.tokenizer, self.max_length, mode="hard", desc="dev")
                row = {"phase": ph.name, "epoch": epoch, **logs, "dev_accuracy": dev["accuracy"],
                       "dev_flops_speedup": dev["flops_speedup"], "dev_mean_kept_lengths": dev["mean_kept_lengths"]}
                ph.after_epoch(row)
                self.history.append(row)
                log(f"{ph.name} epoch {epoch}: dev accuracy {dev['accuracy']:.4f}, FLOPs speedup "
                    f"{dev['flops_speedup']:.2f}x, kept {[round(v, 1) for v in dev['mean_kept_lengths']]}")
                meta = {"phase": ph.name, "epoch": epoch, "dev_accuracy": dev["accuracy"],
                        "dev_flops_speedup": dev["flops_speedup"]}
                if ph.name in select and dev["accuracy"] > self.best["dev_accuracy"]:
                    self.best = {"epoch": epoch, "phase": ph.name, "dev_accuracy": dev["accuracy"]}
                    self.save("best", {**meta, "selection": f"best dev accuracy of phase {ph.name}"})
                self.epochs_done = epoch
                self.save("last", meta)
                self.write()
            ph.finish()
            self.save("last", {"phase": ph.name, "epoch": ph.epochs})
            self.write()
        if self.best["epoch"] is None:  # no training epochs at all: the initial model is the result
            self.save("best", {"selection": "no training epochs"})
        self.write(finished=True)
        return self.out


def _setup_common(data: Dataset, init: str | Path, out: str | Path, seed: int, overwrite: bool, resume: bool):
    out, state = prepare_out_dir(out, overwrite, resume)
    seed_everything(seed)
    ckpt = init_path(init)
    ft_model, ft_cfg = load_checkpoint(ckpt)
    if ft_model.num_labels != data.num_labels:
        raise CheckpointError(f"{ckpt} predicts {ft_model.num_labels} classes but {data.name} has {data.num_labels}")
    return out, state, ckpt, ft_model, ft_cfg, load_checkpoint_tokenizer(ckpt)


def _with_selector(ft_model: PrunedBertClassifier, selector) -> PrunedBertClassifier:
    model = PrunedBertClassifier(ft_model.config, ft_model.num_labels, selector, pooler=ft_model.bert.pooler is not None)
    model.load_state_dict(ft_model.state_dict(), strict=False)  # selector parameters stay freshly initialised
    return model


# ------------------------------------------------------------------------------------------ PoWER-BERT

def drift_budget(lr: float, total_steps: int, warmup_ratio: float) -> float:
    """Sum of the learning rate over ``linear_warmup``'s schedule: the most an Adam-driven r can move."""
    warmup = max(1, int(total_steps * warmup_ratio))
    return lr * sum((s + 1) / warmup if s < warmup else max(0.0, (total_steps - s) / max(1, total_steps - warmup))
                    for s in range(total_steps))


def train_power_bert(data: Dataset, init: str | Path, out: str | Path, cfg: PowerBertConfig,
                     overwrite: bool = False, resume: bool = False) -> Path:
    out, state, ckpt, ft_model, ft_cfg, tokenizer = _setup_common(data, init, out, cfg.seed, overwrite, resume)
    max_length = ft_cfg["max_length"]
    L = ft_model.num_layers
    model = _with_selector(ft_model, AttentionTopKSelector(L, max_length, protect_cls=cfg.protect_cls))
    extra = {"stage": "power-bert", "data": data.name, "pair": data.is_pair, "source_model": ft_cfg.get("source_model"),
             "init_checkpoint": str(ckpt), "power_bert": asdict(cfg)}
    run = _Run(out, model, data, tokenizer, max_length, extra, asdict(cfg))
    run.resume_from(state)
    td = TrainData.make(data, tokenizer, max_length)
    steps = -(-len(data.train) // cfg.batch_size)
    dev_len = float(encode(data.dev, tokenizer, max_length).attention_mask.sum(1).float().mean())

    def search(start_epoch: int):
        sel: AttentionTopKSelector = run.model.selector
        sel.retention = None
        total = steps * cfg.search_epochs
        drift = drift_budget(cfg.lr_soft, total, cfg.warmup_ratio)
        log(f"PoWER-BERT search: {total} steps, r drift budget D = {drift:.2f}")
        if drift < 0.75 or drift > 3:
            log(f"warning: D = {drift:.2f} is outside [0.75, 3]: " + ("r cannot fall far, expect little speedup"
                if drift < 0.75 else "every r can reach 0, expect collapse") + "; adjust lr_soft or search_epochs")
        rest = [(n, p) for n, p in run.model.named_parameters() if n != "selector.r"]
        groups = param_groups(rest, cfg.weight_decay) + [{"params": [sel.r], "lr": cfg.lr_soft, "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
        sched = linear_warmup(opt, steps * cfg.search_epochs, cfg.warmup_ratio, start_epoch * steps)

        def step(b: Encoded) -> dict[str, float]:
            o = run.model(b.input_ids, b.attention_mask, b.token_type_ids, mode="soft")
            ce = F.cross_entropy(o.logits, b.labels)
            mass = o.aux["mass_penalty"]
            opt.zero_grad()
            (ce + cfg.lam * mass).backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in rest], 1.0)  # r's step is Adam-normalised anyway
            opt.step()
            sched.step()
            sel.clip_r()
            return {"ce": ce.item(), "mass_penalty": mass.item()}
        return step

    def search_row(row: dict) -> None:
        sel = run.model.selector
        row["r_mass"] = [round(float(v), 3) for v in sel.r.detach().sum(dim=1)]
        row["retention"] = retention_from_r(sel.r, sel.protect_cls)
        row["collapsed"] = row["retention"][-1] < COLLAPSE_FRACTION * dev_len
        log(f"search: sum r_j = {row['r_mass']} -> retention {row['retention']}")
        if row["collapsed"]:
            log(f"warning: retention collapsed (last layer keeps {row['retention'][-1]} of ~{dev_len:.0f} tokens, "
                f"IBM/PoWER-BERT#10); lower the knob (lambda={cfg.lam}) or LR_SOFT_EXTRACT")

    def fix_retention() -> None:
        sel: AttentionTopKSelector = run.model.selector
        if sel.retention is None:
            sel.set_retention(retention_from_r(sel.r, sel.protect_cls))
        run.extra["retention"] = sel.retention
        run.extra["collapsed"] = sel.retention[-1] < COLLAPSE_FRACTION * dev_len
        log(f"PoWER-BERT configuration (max length {max_length}): {sel.retention}")

    def retrain(start_epoch: int):
        sel: AttentionTopKSelector = run.model.selector
        fix_retention()  # idempotent; also covers a resume from a checkpoint saved before it was fixed
        sel.r.requires_grad_(False)  # r plays no part in Hard Extract
        named = [(n, p) for n, p in run.model.named_parameters() if n != "selector.r"]
        opt = torch.optim.AdamW(param_groups(named, cfg.weight_decay), lr=cfg.lr)
        sched = linear_warmup(opt, steps * cfg.retrain_epochs, cfg.warmup_ratio, start_epoch * steps)

        def step(b: Encoded) -> dict[str, float]:
            o = run.model(b.input_ids, b.attention_mask, b.token_type_ids, mode="hard")
            ce = F.cross_entropy(o.logits, b.labels)
            opt.zero_grad()
            ce.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], 1.0)
            opt.step()
            sched.step()
            return {"ce": ce.item()}
        return step

    phases = [_Phase("search", cfg.search_epochs, search, search_row, fix_retention),
              _Phase("retrain", cfg.retrain_epochs, retrain)]
    return run.run(phases, td, cfg.batch_size, cfg.seed)


# ------------------------------------------------------------------------------------------ TR-BERT

def compute_heuristics(model: PrunedBertClassifier, enc: Encoded, points: list[int], path: Path,
                       batch_size: int = 32) -> dict[str, torch.Tensor]:
    """id -> [P, n] heuristic scores from the fine-tuned model, cached in ``path`` (safetensors)."""
    if path.exists():
        t = load_file(str(path))
        ids = json.loads(path.with_suffix(".json").read_text())
        if ids == enc.ids:
            return {i: v.view(len(points), -1) for i, v in zip(ids, torch.split(t["values"], t["sizes"].tolist()))}
    out: dict[str, torch.Tensor] = {}
    for b in progress_bar(list(batches(enc, batch_size)), "TR-BERT heuristic scores"):
        s = heuristic_scores(model, b.input_ids, b.attention_mask, b.token_type_ids, b.labels, points)
        for r, i in enumerate(b.ids):
            out[i] = s[:, r, : int(b.attention_mask[r].sum())].contiguous()
    sizes = torch.tensor([v.numel() for v in out.values()])
    save_file({"values": torch.cat([v.flatten() for v in out.values()]), "sizes": sizes}, str(path))
    path.with_suffix(".json").write_text(json.dumps(list(out)))
    return out


def _guides(heur: dict[str, torch.Tensor], ids: list[str], width: int, k: int) -> list[torch.Tensor]:
    """Per point, [k * B, width] heuristic scores for the replicated batch (zero padded)."""
    P = next(iter(heur.values())).shape[0]
    g = torch.zeros(P, len(ids), width)
    for r, i in enumerate(ids):
        v = heur[i][:, :width]
        g[:, r, : v.shape[1]] = v
    return [g[p].repeat(k, 1) for p in range(P)]


def train_tr_bert(data: Dataset, init: str | Path, out: str | Path, cfg: TrBertConfig,
                  overwrite: bool = False, resume: bool = False) -> Path:
    out, state, ckpt, teacher, ft_cfg, tokenizer = _setup_common(data, init, out, cfg.seed, overwrite, resume)
    max_length = ft_cfg["max_length"]
    cfgb = teacher.config
    model = _with_selector(teacher, PolicySelector(cfgb.hidden_size, cfgb.num_hidden_layers, act=cfgb.hidden_act,
                                                   init_std=cfgb.initializer_range, batch_fill=cfg.batch_fill))
    points = model.selector.points
    if len(points) < 2:
        log(f"TR-BERT on a {cfgb.num_hidden_layers}-layer encoder: only one selection point {points} (limitation)")
    teacher.eval().requires_grad_(False)
    extra = {"stage": "tr-bert", "data": data.name, "pair": data.is_pair, "source_model": ft_cfg.get("source_model"),
             "init_checkpoint": str(ckpt), "tr_bert": asdict(cfg), "selection_points": points}
    run = _Run(out, model, data, tokenizer, max_length, extra, asdict(cfg))
    run.resume_from(state)
    td = TrainData.make(data, tokenizer, max_length)
    steps = -(-len(data.train) // cfg.batch_size)
    K = cfg.k

    def make_stage(joint: bool):
        def setup(start_epoch: int):
            m = run.model
            sel: PolicySelector = m.selector
            for n, p in m.named_parameters():
                p.requires_grad_(joint or n.startswith("selector."))
            pol = [(n, p) for n, p in m.named_parameters() if n.startswith("selector.")]
            groups = [{**g, "lr": cfg.policy_lr} for g in param_groups(pol, cfg.weight_decay)]
            if joint:
                groups += param_groups([(n, p) for n, p in m.named_parameters() if not n.startswith("selector.")],
                                       cfg.weight_decay)
            opt = torch.optim.AdamW(groups, lr=cfg.lr)
            epochs = cfg.joint_epochs if joint else cfg.rl_epochs
            sched = linear_warmup(opt, steps * epochs, cfg.warmup_ratio, start_epoch * steps)
            heur = None if joint else compute_heuristics(teacher, td.train, points, out / "heuristic.safetensors")
            guide_steps = int(cfg.guide_rate * steps * cfg.rl_epochs)
            counter = {"step": start_epoch * steps}

            def step(b: Encoded) -> dict[str, float]:
                B, T = b.input_ids.shape
                guided = heur is not None and counter["step"] < guide_steps
                if guided:  # the first of the K copies imitates the heuristic (§3.5)
                    sel.guide_scores = _guides(heur, b.ids, T, K)
                    sel.guide_rows = torch.arange(K * B) < B
                try:
                    o = m(b.input_ids.repeat(K, 1), b.attention_mask.repeat(K, 1), b.token_type_ids.repeat(K, 1),
                          mode="soft")
                finally:
                    sel.guide_scores, sel.guide_rows = None, None
                if joint:
                    with torch.no_grad():
                        t = teacher(b.input_ids, b.attention_mask, b.token_type_ids, mode="dense").logits
                    soft_t = F.softmax(t / cfg.tau, dim=-1).repeat(K, 1)
                    loss_sample = -(soft_t * F.log_softmax(o.logits / cfg.tau, dim=-1)).sum(-1)
                else:
                    loss_sample = F.cross_entropy(o.logits, b.labels.repeat(K), reduction="none")
                length = length_term(o.aux, cfg.len_denominator)
                reward = rewards(loss_sample.detach(), length, cfg.alpha)
                l_rl, _ = reinforce_loss(reward, o.aux["select_loss"], K)
                loss = l_rl + (loss_sample.mean() if joint else 0.0)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], cfg.max_grad_norm)
                opt.step()
                sched.step()
                counter["step"] += 1
                return {"l_rl": l_rl.item(), "reward": reward.mean().item(), "length_term": length.mean().item(),
                        ("kd" if joint else "ce"): loss_sample.mean().item(), "guided": float(guided)}
            return step
        return setup

    def rank_init(start_epoch: int):
        """Policies only, BERT frozen: L1 between p and the heuristic rank targets on the full sequence
        (the original's --train_init; it also let the init loss reach BERT, we keep BERT fixed [ours])."""
        m = run.model
        for n, p in m.named_parameters():
            p.requires_grad_(n.startswith("selector."))
        pol = [(n, p) for n, p in m.named_parameters() if n.startswith("selector.")]
        opt = torch.optim.AdamW(param_groups(pol, cfg.weight_decay), lr=cfg.policy_lr)
        sched = linear_warmup(opt, steps * cfg.init_epochs, cfg.warmup_ratio, start_epoch * steps)
        heur = compute_heuristics(teacher, td.train, points, out / "heuristic.safetensors")

        def step(b: Encoded) -> dict[str, float]:
            T = b.input_ids.shape[1]
            guides = _guides(heur, b.ids, T, 1)
            hidden = policy_inputs(m, b.input_ids, b.attention_mask, b.token_type_ids, points)
            mask = b.attention_mask.float()
            loss = sum(((torch.sigmoid(m.selector.policies[w](h)) * mask - rank_targets(g, b.attention_mask)).abs()
                        * mask).sum() / mask.sum() for w, (h, g) in enumerate(zip(hidden, guides)))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in pol], cfg.max_grad_norm)
            opt.step()
            sched.step()
            return {"l_init": loss.item()}
        return step

    def unfreeze() -> None:
        run.model.requires_grad_(True)

    # seed slots 0 and 1 for rl and joint whether or not the optional init phase runs
    phases = [_Phase("init", cfg.init_epochs, rank_init, finish=unfreeze, seed_index=2),
              _Phase("rl", cfg.rl_epochs, make_stage(False), finish=unfreeze, seed_index=0),
              _Phase("joint", cfg.joint_epochs, make_stage(True), finish=unfreeze, seed_index=1)]
    return run.run(phases, td, cfg.batch_size, cfg.seed)


# ------------------------------------------------------------------------------------------ entry point

KNOBS = {"power-bert": "lambda", "tr-bert": "alpha", "adapler": "phi"}


def train_baseline(method: str, data: Dataset, init: str | Path, out: str | Path, knob: float | None = None,
                   epochs: int | None = None, lr: float | None = None, batch_size: int = 32, seed: int = 42,
                   overwrite: bool = False, resume: bool = False, **options: Any) -> Path:
    """Train ``method`` (power-bert | tr-bert) from the fine-tuned run ``init``; returns ``out``.

    ``knob``: PoWER-BERT LAMBDA / TR-BERT alpha. ``epochs``: PoWER-BERT re-training epochs / TR-BERT RL
    epochs (the joint stage then gets max(1, epochs // 2)). ``lr``: the BERT learning rate. ``options``:
    any other field of ``PowerBertConfig`` / ``TrBertConfig``.
    """
    common = {"batch_size": batch_size, "seed": seed, **({"lr": lr} if lr is not None else {})}
    if method == "power-bert":
        # explicit options win over what ``epochs`` implies (one dict, so no duplicate keywords)
        cfg = PowerBertConfig(**{**common, **({"retrain_epochs": epochs} if epochs is not None else {}), **options,
                                 **({"lam": knob} if knob is not None else {})})
        return train_power_bert(data, init, out, cfg, overwrite=overwrite, resume=resume)
    if method == "tr-bert":
        ep = {"rl_epochs": epochs, "joint_epochs": max(1, epochs // 2)} if epochs is not None else {}
        cfg = TrBertConfig(**{**common, **ep, **options, **({"alpha": knob} if knob is not None else {})})
        return train_tr_bert(data, init, out, cfg, overwrite=overwrite, resume=resume)
    raise ValueError(f"unknown baseline {method!r}; use power-bert or tr-bert")
