"""TR-BERT trainer (docs/method.md §3.4-3.6) from a fine-tuned run.

Phases: optional ``init`` (``init_epochs``: policies fitted to heuristic rank targets, the original's
IMDB step), ``rl`` (policy nets only, BERT frozen, imitation warm-up) then ``joint`` (all parameters,
KD from the fine-tuned model + L_RL). With ``target_speedup``, alpha is steered after every RL and joint step
by ``KnobController`` (target.py) on the sampled batch's FLOPs speedup.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..data import Dataset, Encoded, batches
from ..errors import check_choice, check_range
from ..encoder import PrunedBertClassifier
from ..flops import model_flops
from ..progress import log, progress_bar
from ..selectors.tr_bert import (PolicySelector, heuristic_scores, length_term, policy_inputs, rank_targets,
                                 reinforce_loss, rewards, selection_points)
from .auto import steps_per_epoch
from .common import TrainData, linear_warmup, param_groups
from .distributed import TrainEnv
from .phased import selection_rule, setup_from_finetuned, with_selector
from .runner import Phase, Run
from .target import KnobController, check_reachable, check_target_fields, dims_of_config


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
    target_speedup: float | None = None  # steer alpha towards this dev FLOPs speedup (alpha is the start value)
    max_accuracy_drop: float = 1.0  # points below the fine-tuned dev accuracy that selection accepts
    target_gain: float = 0.05  # controller step: alpha *= exp(gain * relative speedup error) per step

    def __post_init__(self) -> None:
        check_choice("len_denominator (--trbert-len-denominator)", self.len_denominator, ("padded", "real"))
        check_choice("batch_fill (--trbert-batch-fill)", self.batch_fill, ("masked", "topk"))
        for name in ("rl_epochs", "joint_epochs", "init_epochs"):
            check_range(name, getattr(self, name), 0)
        for name in ("batch_size", "k"):
            check_range(name, getattr(self, name), 1)
        check_target_fields(self.target_speedup, self.max_accuracy_drop)
        for name in ("lr", "policy_lr", "tau", "max_grad_norm", "target_gain"):
            check_range(name, getattr(self, name), 0, strict_lo=True)
        for name in ("alpha", "weight_decay"):
            check_range(name, getattr(self, name), 0)
        for name in ("guide_rate", "warmup_ratio"):
            check_range(name, getattr(self, name), 0, 1)


def compute_heuristics(model: PrunedBertClassifier, enc: Encoded, points: list[int], path: Path,
                       batch_size: int = 32) -> dict[str, torch.Tensor]:
    """id -> [P, n] heuristic scores from the fine-tuned model (on its device), cached in ``path`` (safetensors)."""
    if path.exists():
        try:
            from safetensors import safe_open
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            ids = json.loads(meta["ids"]) if "ids" in meta else json.loads(path.with_suffix(".json").read_text())
            t = load_file(str(path))
        except Exception:  # unreadable (e.g. an older non-atomic write was interrupted): recompute
            ids = None
        if ids == enc.ids:
            return {i: v.view(len(points), -1) for i, v in zip(ids, torch.split(t["values"], t["sizes"].tolist()))}
    out: dict[str, torch.Tensor] = {}
    device = next(model.parameters()).device
    for b in progress_bar(list(batches(enc, batch_size)), "TR-BERT heuristic scores"):
        s = heuristic_scores(model, *(t.to(device) for t in (b.input_ids, b.attention_mask, b.token_type_ids,
                                                             b.labels)), points).cpu()
        for r, i in enumerate(b.ids):
            out[i] = s[:, r, : int(b.attention_mask[r].sum())].contiguous()
    sizes = torch.tensor([v.numel() for v in out.values()])
    # ids inside the one file, written to a temp name and moved in: values and ids can never disagree
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"values": torch.cat([v.flatten() for v in out.values()]), "sizes": sizes}, str(tmp),
              metadata={"ids": json.dumps(list(out))})
    os.replace(tmp, path)
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
                  overwrite: bool = False, resume: bool = False, device: str | None = None,
                  precision: str | None = None) -> Path:
    env = TrainEnv.create(device, precision)

    def reachable(init_cfg: dict, lengths: torch.Tensor) -> None:  # layers before the first policy keep everything
        points = selection_points(init_cfg["backbone"].get("num_hidden_layers", 12))
        check_reachable(cfg.target_speedup, lengths, dims_of_config(init_cfg), points,
                        first_drop_layer=points[0] if points else init_cfg["backbone"].get("num_hidden_layers", 12))

    out, state, ckpt, teacher, ft_cfg, tokenizer, fingerprint = setup_from_finetuned(
        data, init, out, cfg.seed, overwrite, resume, asdict(cfg), reachable if cfg.target_speedup else None, env)
    max_length = ft_cfg["max_length"]
    cfgb = teacher.config
    model = with_selector(teacher, PolicySelector(cfgb.hidden_size, cfgb.num_hidden_layers, act=cfgb.hidden_act,
                                                   init_std=cfgb.initializer_range, batch_fill=cfg.batch_fill))
    points = model.selector.points
    if len(points) < 2:
        log(f"TR-BERT on a {cfgb.num_hidden_layers}-layer encoder: only one selection point {points} (limitation)")
    teacher.to(env.device).eval().requires_grad_(False)
    extra = {"stage": "tr-bert", "data": data.name, "pair": data.is_pair, "source_model": ft_cfg.get("source_model"),
             "init_checkpoint": str(ckpt), "tr_bert": asdict(cfg), "selection_points": points}
    rule = selection_rule(init, teacher, ft_cfg, data, tokenizer, cfg.max_accuracy_drop, cfg.target_speedup, env)
    run = Run(out, model, data, tokenizer, max_length, "tr-bert", asdict(cfg), extra, env, fingerprint, rule)
    run.resume_from(state)
    # alpha and the calibration continue from where an interrupted run left them
    last = next((r for r in reversed(run.history) if "alpha" in r), {})
    ctrl = None if cfg.target_speedup is None else KnobController(
        cfg.target_speedup, last.get("alpha", cfg.alpha), cfg.target_gain,
        calibration=last.get("speedup_calibration", 1.0))
    td = TrainData.make(data, tokenizer, max_length)
    steps = steps_per_epoch(len(data.train), cfg.batch_size * env.world_size)
    K = cfg.k

    def heuristics() -> dict[str, torch.Tensor]:
        """Rank 0 computes and caches them; the others read its file."""
        heur = compute_heuristics(teacher, td.train, points, out / "heuristic.safetensors") if env.main else None
        env.barrier()
        return heur if env.main else compute_heuristics(teacher, td.train, points, out / "heuristic.safetensors")

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
            heur = None if joint else heuristics()
            guide_steps = int(cfg.guide_rate * steps * cfg.rl_epochs)
            counter = {"step": start_epoch * steps}

            def step(b: Encoded) -> dict[str, float]:
                B, T = b.input_ids.shape
                guided = heur is not None and counter["step"] < guide_steps
                if guided:  # the first of the K copies imitates the heuristic (§3.5)
                    sel.guide_scores = [g.to(b.input_ids.device) for g in _guides(heur, b.ids, T, K)]
                    sel.guide_rows = torch.arange(K * B, device=b.input_ids.device) < B
                try:
                    with env.autocast():
                        o = m(b.input_ids.repeat(K, 1), b.attention_mask.repeat(K, 1), b.token_type_ids.repeat(K, 1),
                              mode="soft")
                finally:
                    sel.guide_scores, sel.guide_rows = None, None
                logits = o.logits.float()
                if joint:
                    with torch.no_grad(), env.autocast():
                        t = teacher(b.input_ids, b.attention_mask, b.token_type_ids, mode="dense").logits.float()
                    soft_t = F.softmax(t / cfg.tau, dim=-1).repeat(K, 1)
                    loss_sample = -(soft_t * F.log_softmax(logits / cfg.tau, dim=-1)).sum(-1)
                else:
                    loss_sample = F.cross_entropy(logits, b.labels.repeat(K), reduction="none")
                length = length_term(o.aux, cfg.len_denominator)
                reward = rewards(loss_sample.detach(), length, cfg.alpha if ctrl is None else ctrl.value)
                l_rl, _ = reinforce_loss(reward, o.aux["select_loss"], K)
                loss = l_rl + (loss_sample.mean() if joint else 0.0)
                opt.zero_grad()
                env.backward(loss)
                env.apply_gradients(m.parameters(), [opt], [[p for p in m.parameters() if p.requires_grad]],
                                    cfg.max_grad_norm)
                sched.step()
                counter["step"] += 1
                logs = {"l_rl": l_rl.item(), "reward": reward.mean().item(), "length_term": length.mean().item(),
                        ("kd" if joint else "ce"): loss_sample.mean().item(), "guided": float(guided)}
                if ctrl is not None:  # the sampled actions' kept lengths: the speedup the policy is choosing now
                    dense, pruned = model_flops(m, b.attention_mask.repeat(K, 1).sum(dim=1), o.kept_lengths.detach().float())
                    keep = float(env.share > 0)  # a stand-in row (TrainEnv.shard) counts nothing
                    dense_sum, pruned_sum = env.global_sum(keep * float(dense.sum()), keep * float(pruned.sum()))
                    logs["train_speedup"] = dense_sum / pruned_sum
                    ctrl.update(logs["train_speedup"])
                return logs
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
        heur = heuristics()

        def step(b: Encoded) -> dict[str, float]:
            T = b.input_ids.shape[1]
            guides = [g.to(b.input_ids.device) for g in _guides(heur, b.ids, T, 1)]
            with env.autocast():
                hidden = policy_inputs(m, b.input_ids, b.attention_mask, b.token_type_ids, points)
                mask = b.attention_mask.float()
                loss = sum(((m.selector.probs_of(w, h, mask).float() - rank_targets(g, b.attention_mask)).abs()
                            * mask).sum() / mask.sum() for w, (h, g) in enumerate(zip(hidden, guides)))
            opt.zero_grad()
            env.backward(loss)
            params = [p for _, p in pol]
            env.apply_gradients(params, [opt], [params], cfg.max_grad_norm)
            sched.step()
            return {"l_init": loss.item()}
        return step

    def unfreeze() -> None:
        run.model.requires_grad_(True)

    def record_alpha(row: dict) -> None:
        row["alpha"] = cfg.alpha if ctrl is None else ctrl.value
        if ctrl is not None:  # sampled actions in training vs the p >= 0.5 threshold on dev
            row["speedup_calibration"] = ctrl.calibrate(row["dev_flops_speedup"])

    # seed slots 0 and 1 for rl and joint whether or not the optional init phase runs
    phases = [Phase("init", cfg.init_epochs, rank_init, finish=unfreeze, seed_index=2),
              Phase("rl", cfg.rl_epochs, make_stage(False), record_alpha, unfreeze, seed_index=0),
              Phase("joint", cfg.joint_epochs, make_stage(True), record_alpha, unfreeze, seed_index=1)]
    return run.run(phases, td, cfg.batch_size, cfg.seed)
