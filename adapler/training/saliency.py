"""Stage 2: gradient x input saliency targets, cached under a content hash and looked up by example id.

sal_t = || d logit_gold / d e_t  (.)  e_t ||_2 with e the embedding output, on the training split,
averaged over the best fine-tuning epochs. No normalisation.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import load_checkpoint
from ..data import Example, batches, encode
from ..progress import progress_bar
from .distributed import TrainEnv
from .example_tables import cached_table


def saliency_batch(model, input_ids, attention_mask, token_type_ids, labels) -> torch.Tensor:
    """[B, T] saliency of each token for the gold-class logit; 0 on padding."""
    model.eval()
    emb = model.embed(input_ids, token_type_ids).detach().requires_grad_(True)
    logits = model(input_ids, attention_mask, token_type_ids, mode="dense", embeddings=emb).logits
    gold = logits.gather(1, labels[:, None]).sum()  # examples are independent in eval mode
    (grad,) = torch.autograd.grad(gold, emb)
    return (grad * emb).norm(dim=-1).detach() * attention_mask.float()


def compute_saliencies(checkpoints: list[Path], examples: list[Example], tokenizer, max_length: int,
                       cache_dir: str | Path, batch_size: int = 32, env: TrainEnv | None = None) -> dict[str, torch.Tensor]:
    """id -> saliency vector (unpadded length). Cached in ``cache_dir/saliency-<key>.safetensors``; with
    ``env`` computed on its device, each torchrun rank taking a share (``example_tables.cached_table``)."""
    env = env or TrainEnv()
    return cached_table("saliency", "saliency targets", checkpoints, examples, tokenizer, max_length, cache_dir,
                        lambda share: _compute(checkpoints, share, tokenizer, max_length, batch_size, env.device),
                        env)


def _compute(checkpoints: list[Path], examples: list[Example], tokenizer, max_length: int, batch_size: int,
             device: torch.device) -> dict[str, torch.Tensor]:
    enc = encode(examples, tokenizer, max_length)
    total = torch.zeros(enc.input_ids.shape, dtype=torch.float32, device=device)
    for ckpt in checkpoints:
        model, _ = load_checkpoint(ckpt, device=device)
        rows = []
        for b in progress_bar(list(batches(enc, batch_size)), f"saliency ({Path(ckpt).name})"):
            ids, mask, types, labels = (t.to(device) for t in (b.input_ids, b.attention_mask, b.token_type_ids,
                                                               b.labels))
            sal = saliency_batch(model, ids, mask, types, labels)
            rows.append(torch.nn.functional.pad(sal, (0, total.shape[1] - sal.shape[1])))
        total += torch.cat(rows)
    total = (total / len(checkpoints)).cpu()
    lengths = enc.attention_mask.sum(dim=1)
    return {i: total[k, : lengths[k]].clone() for k, i in enumerate(enc.ids)}


def batch_targets(sal: dict[str, torch.Tensor], ids: list[str], width: int) -> torch.Tensor:
    """[B, width] targets for a batch, zero-padded."""
    out = torch.zeros(len(ids), width)
    for r, i in enumerate(ids):
        v = sal[i][:width]
        out[r, : len(v)] = v
    return out
