"""Logit distillation from the fine-tuned (dense) model while a pruned model trains.

The teacher is the ``--init`` checkpoint run dense and frozen. Its logits on the training split do not change
during the run (eval mode, fixed inputs), so they are computed once, before the first step, and looked up by
example id like the saliency targets, and stored the same way (``example_tables``). The task loss becomes

    (1 - alpha) * CE(student, gold) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))

(Hinton et al. 2015; T^2 keeps the gradient scale independent of T). alpha = 0 is plain cross-entropy.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import load_checkpoint
from ..data import Encoded, Example, batches, encode
from ..progress import progress_bar
from .distributed import TrainEnv
from .example_tables import cached_table

DEFAULT_TEMPERATURE = 2.0  # T of every distilled run unless set (train's distill_temperature, the probes)


def teacher_logits(checkpoint: str | Path, examples: list[Example], tokenizer, max_length: int,
                   cache_dir: str | Path, batch_size: int = 64, env: TrainEnv | None = None) -> dict[str, torch.Tensor]:
    """id -> the checkpoint's dense float32 logits for that example (on the CPU). Cached next to the saliency
    targets as ``teacher-<key>.safetensors`` (same content key), so a resume or a second run with the same
    ``--init`` and data does not recompute it; under torchrun each rank computes a share."""
    env = env or TrainEnv()
    return cached_table("teacher", "teacher logits", [Path(checkpoint)], examples, tokenizer, max_length, cache_dir,
                        lambda share: _compute(checkpoint, encode(share, tokenizer, max_length), batch_size,
                                               env.device), env)


@torch.no_grad()
def _compute(checkpoint: str | Path, enc: Encoded, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    model, _ = load_checkpoint(checkpoint, device=device)
    model.eval()
    out: dict[str, torch.Tensor] = {}
    for b in progress_bar(list(batches(enc, batch_size)), "teacher logits"):
        ids, mask, types = (t.to(device) for t in (b.input_ids, b.attention_mask, b.token_type_ids))
        logits = model(ids, mask, types, mode="dense").logits.float().cpu()
        out.update(zip(b.ids, logits))
    return out


def batch_teacher(table: dict[str, torch.Tensor], ids: list[str]) -> torch.Tensor:
    """[B, C] teacher logits of a batch, in the batch's order."""
    return torch.stack([table[i] for i in ids])


def distilled_task_loss(student: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None,
                        alpha: float, temperature: float) -> torch.Tensor:
    """Cross-entropy mixed with the temperature-scaled KL to the teacher; plain CE when alpha is 0."""
    ce = F.cross_entropy(student, labels)
    if alpha == 0 or teacher is None:
        return ce
    t = temperature
    kl = F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1), log_target=True,
                  reduction="batchmean")
    return (1 - alpha) * ce + alpha * t * t * kl
