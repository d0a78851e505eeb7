"""Stage 1: fine-tune a dense BERT classifier. One checkpoint per epoch, dev scores, resumable."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..checkpoint import discard_aside, load_checkpoint, match_state, save_checkpoint
from ..data import Dataset
from ..encoder import PrunedBertClassifier
from ..errors import check_range
from ..evaluate import evaluate
from ..files import write_json_atomic
from ..models import load_bert, load_tokenizer, resolve_model
from ..progress import log
from .common import (MIN_MAX_LENGTH, TrainData, check_max_length, linear_warmup, param_groups, prepare_out_dir,
                     run_fingerprint, seed_everything, train_epoch, write_state)


@dataclass
class FinetuneConfig:
    model: str = "all-MiniLM-L6-v2"
    max_length: int = 64
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    seed: int = 42

    def __post_init__(self) -> None:
        # epochs 0 would "succeed" without a best/ checkpoint; the rest fail late with tracebacks
        check_range("--epochs", self.epochs, 1)
        check_range("--max-length", self.max_length, MIN_MAX_LENGTH)
        check_range("--batch-size", self.batch_size, 1)
        check_range("--lr", self.lr, 0, strict_lo=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("warmup_ratio", self.warmup_ratio, 0, 1)


def dense_from_pretrained(model_name: str, num_labels: int) -> tuple[PrunedBertClassifier, object, str]:
    path = resolve_model(model_name)
    bert, config = load_bert(path)
    model = PrunedBertClassifier(config, num_labels, pooler=bert.pooler is not None)
    model.bert.load_state_dict(bert.state_dict())
    return model, load_tokenizer(path), path


def finetune(data: Dataset, out: str | Path, cfg: FinetuneConfig, overwrite: bool = False,
             resume: bool = False) -> Path:
    """Writes ``out/epoch-<k>/`` per epoch, ``out/best/`` (best dev accuracy) and ``out/dev_scores.json``."""
    seed_everything(cfg.seed)
    model, tokenizer, source = dense_from_pretrained(cfg.model, data.num_labels)
    check_max_length(cfg.max_length, model.config.max_position_embeddings, source)  # before --out is created
    fingerprint = run_fingerprint(data, asdict(cfg))
    out, state = prepare_out_dir(out, overwrite, resume, fingerprint)
    done = 0
    scores: list[dict] = []
    if state:
        done, scores = state["epochs_done"], state["dev_scores"]
        if scores:  # best/ may already hold an epoch the state does not know yet: go back to its copy
            match_state(out / "best", epoch=max(scores, key=lambda s: s["dev_accuracy"])["epoch"])
        if done:
            model, _ = load_checkpoint(out / f"epoch-{done}")
        log(f"resuming {out} after epoch {done}")
    td = TrainData.make(data, tokenizer, cfg.max_length)
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    opt = torch.optim.AdamW(param_groups(model.named_parameters(), cfg.weight_decay), lr=cfg.lr)
    sched = linear_warmup(opt, total, cfg.warmup_ratio, start_step=done * steps_per_epoch)

    def step(b) -> dict[str, float]:
        out_ = model(b.input_ids, b.attention_mask, b.token_type_ids, mode="dense")
        loss = F.cross_entropy(out_.logits, b.labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        return {"loss": loss.item()}

    extra = {"source_model": source, "data": data.name, "pair": data.is_pair, "stage": "finetune", "finetune": asdict(cfg)}
    for epoch in range(done + 1, cfg.epochs + 1):
        logs = train_epoch(model, td.epoch(cfg.batch_size, cfg.seed + epoch), step, f"fine-tune epoch {epoch}/{cfg.epochs}")
        dev = evaluate(model, data.dev, tokenizer, cfg.max_length, mode="dense", desc="dev")
        scores.append({"epoch": epoch, "dev_accuracy": dev["accuracy"], "train_loss": logs["loss"]})
        log(f"epoch {epoch}: train loss {logs['loss']:.4f}, dev accuracy {dev['accuracy']:.4f}")
        save_checkpoint(model, out / f"epoch-{epoch}", tokenizer=tokenizer, label_names=data.label_names,
                        max_length=cfg.max_length, extra={**extra, "epoch": epoch, "dev_accuracy": dev["accuracy"]})
        best = max(scores, key=lambda s: s["dev_accuracy"])
        if best["epoch"] == epoch:
            save_checkpoint(model, out / "best", tokenizer=tokenizer, label_names=data.label_names, keep_old=True,
                            max_length=cfg.max_length, extra={**extra, "epoch": epoch, "dev_accuracy": dev["accuracy"]})
        write_json_atomic(out / "dev_scores.json", scores)
        write_state(out, {"stage": "finetune", "epochs_done": epoch, "dev_scores": scores, "config": asdict(cfg),
                          "fingerprint": fingerprint})
        discard_aside(out / "best")  # the state now names the new best/
    return out


def top_epochs(finetune_dir: str | Path, k: int = 3) -> list[Path]:
    """The k fine-tuning epochs with the best dev accuracy (saliency targets average over them)."""
    finetune_dir = Path(finetune_dir)
    scores = json.loads((finetune_dir / "dev_scores.json").read_text())
    best = sorted(scores, key=lambda s: (-s["dev_accuracy"], s["epoch"]))[:k]
    return [finetune_dir / f"epoch-{s['epoch']}" for s in best]
