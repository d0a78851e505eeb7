"""Probe: how much of the CPs' gradient comes from their saliency loss, and how much from the task loss?

AdapLeR trains the model (encoder and CPs) on ``task + gamma * KL`` (task: CE, or CE mixed with the KL to the
fine-tuned model's logits when the run distilled, read from the run's cache): the KL pulls each CP's token distribution
towards the gradient x input saliency targets, and the task loss reaches the CPs through the soft removal. With
Adam, what a CP learns is set by the ratio of the two gradients, not by either scale. This probe measures both,
on the training texts, with a trained run's weights and cached saliency targets, at the soft-removal steepness
(lambda) of early and late training: the median per batch of each gradient's norm, and of the ratio KL / task on
the CPs, which times gamma says how strongly the saliency targets pull the CPs against the task (docs/results.md
§1g).

    PYTHONPATH=. python bench/cp_loss_share.py RUN --data DATA [--texts 512] [--lambdas 1e3,1e5] [--json OUT]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from adapler.checkpoint import load_checkpoint, load_checkpoint_tokenizer
from adapler.data import batches, encode, load_dataset
from adapler.errors import OutputError
from adapler.files import ensure_writable, write_json_atomic
from adapler.training.common import SALIENCY_DIR
from adapler.training.distill import DEFAULT_TEMPERATURE, batch_teacher, distilled_task_loss
from adapler.training.example_tables import load_table
from adapler.training.saliency import batch_targets
from adapler.training.train_adapler import cp_kl_loss


def grad_norms(model, enc, sal: dict, lam: float, teacher: dict | None = None, distill: float = 0.0,
               temperature: float = DEFAULT_TEMPERATURE, batch_size: int = 32, theta: bool = True,
               kl_target_stopgrad: bool = False) -> dict[str, float]:
    """Median over batches of the L2 norms of the task and KL gradients on the CPs and on the rest of the model,
    and of their ratio on the CPs. The task loss is the run's: CE, mixed with the KL to the ``teacher`` logits
    (id -> logits) at ``distill``; ``theta`` and ``kl_target_stopgrad`` as the run had them. Dropout is off: one batch's norms then depend on its texts only (with dropout
    on, a few batches' outliers move a sum threefold between seeds)."""
    sel = model.selector
    sel.lam = lam
    cps = list(sel.cps.parameters())
    rest = [p for n, p in model.named_parameters() if not n.startswith("selector.")]
    per_batch: dict[str, list[float]] = {k: [] for k in ("cp_task", "cp_kl", "encoder_task", "encoder_kl", "cp_kl_over_task")}
    model.eval()
    for b in batches(enc, batch_size):
        o = model(b.input_ids, b.attention_mask, b.token_type_ids, mode="soft")
        task = distilled_task_loss(o.logits.float(), b.labels,
                                   None if teacher is None else batch_teacher(teacher, b.ids), distill, temperature)
        kl = cp_kl_loss([c.float() for c in o.aux["cp_outputs"]], batch_targets(sal, b.ids, b.input_ids.shape[1]),
                        b.attention_mask, sel.eta, sel.theta if theta else None, lam, kl_target_stopgrad)
        for name, loss in (("task", task), ("kl", kl)):
            grads = torch.autograd.grad(loss, cps + rest, retain_graph=name == "task", allow_unused=True)
            per_batch[f"cp_{name}"].append(_norm(grads[: len(cps)]))
            per_batch[f"encoder_{name}"].append(_norm(grads[len(cps):]))
        per_batch["cp_kl_over_task"].append(per_batch["cp_kl"][-1] / max(per_batch["cp_task"][-1], 1e-30))
    return {"lambda": lam, "batches": len(per_batch["cp_task"]),
            **{k: float(torch.tensor(v).median()) for k, v in per_batch.items()}}


def _norm(grads) -> float:
    return float(sum(g.pow(2).sum() for g in grads if g is not None) ** 0.5)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained AdapLeR run directory (its best/ and saliency/ are read)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--texts", type=int, default=512, help="training texts (the first ones of the split)")
    ap.add_argument("--lambdas", default="1e3,1e5", help="soft-removal steepness values, comma-separated")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    args = ap.parse_args(argv)
    if args.json is not None:
        try:
            ensure_writable(args.json, args.overwrite, "--json")
        except OutputError as e:
            ap.error(str(e))
    run = Path(args.run)
    tables = sorted((run / SALIENCY_DIR).glob("saliency-*.safetensors"))
    if not tables:
        ap.error(f"{run / SALIENCY_DIR} holds no saliency targets; pass the run directory that `train` wrote")
    model, cfg = load_checkpoint(run / "best")
    if not hasattr(model.selector, "cps"):
        ap.error(f"{run} is not an AdapLeR run (method {model.method})")
    enc = encode(load_dataset(args.data).train[: args.texts], load_checkpoint_tokenizer(run / "best"),
                 cfg["max_length"])
    sal = load_table(tables[-1])
    run_cfg = cfg.get("adapler", {})
    distill = run_cfg.get("distill") or 0.0
    teachers = sorted((run / SALIENCY_DIR).glob("teacher-*.safetensors"))
    if distill > 0 and not teachers:
        ap.error(f"{run} was trained with distill {distill} but {run / SALIENCY_DIR} holds no teacher logits")
    teacher = load_table(teachers[-1]) if distill > 0 else None
    temperature = run_cfg.get("distill_temperature", DEFAULT_TEMPERATURE)
    rows = [grad_norms(model, enc, sal, float(v), teacher, distill, temperature, theta=run_cfg.get("theta", True),
                       kl_target_stopgrad=run_cfg.get("kl_target_stopgrad", False)) for v in args.lambdas.split(",")]
    gamma = run_cfg.get("gamma")
    for r in rows:
        print(f"lambda {r['lambda']:g}, median of {r['batches']} batches: CPs task {r['cp_task']:.3g}, KL "
              f"{r['cp_kl']:.3g} (KL/task {r['cp_kl_over_task']:.3g}); encoder task {r['encoder_task']:.3g}, "
              f"KL {r['encoder_kl']:.3g}" + ("" if gamma is None else
              f"; at gamma {gamma:g} the KL is {gamma * r['cp_kl_over_task']:.3g} of the task's pull on the CPs"))
    if args.json is not None:
        write_json_atomic(args.json, {"run": str(run), "data": args.data, "texts": len(enc.ids), "gamma": gamma,
                                      "distill": distill, "rows": rows})


if __name__ == "__main__":
    main()
