"""Stage 1: fine-tune a dense BERT classifier. One checkpoint per epoch, dev scores, resumable."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import Dataset
from ..encoder import PrunedBertClassifier
from ..errors import check_range
from ..models import load_bert, load_tokenizer, resolve_model
from ..progress import log
from .auto import auto_batch_size, auto_epochs, auto_max_length, steps_per_epoch, token_lengths
from .common import (MIN_MAX_LENGTH, TrainData, check_max_length, linear_warmup, param_groups, run_fingerprint,
                     seed_everything)
from .distributed import TrainEnv
from .runner import Phase, Run, open_run


@dataclass
class FinetuneConfig:
    model: str = "all-MiniLM-L6-v2"
    # None: from the data (auto.py): the length that holds 95 % of the training texts, ~4096 tokens a batch,
    # epochs for ~600 steps; the resolved values are what config.json records
    max_length: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    seed: int = 42

    def __post_init__(self) -> None:
        # epochs 0 would "succeed" without a best/ checkpoint; the rest fail late with tracebacks
        for name, value, lo in (("--epochs", self.epochs, 1), ("--max-length", self.max_length, MIN_MAX_LENGTH),
                                ("--batch-size", self.batch_size, 1)):
            if value is not None:
                check_range(name, value, lo)
        check_range("--lr", self.lr, 0, strict_lo=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("warmup_ratio", self.warmup_ratio, 0, 1)


def resolve_finetune_defaults(cfg: FinetuneConfig, data: Dataset, tokenizer, positions: int,
                              world_size: int = 1) -> FinetuneConfig:
    """``cfg`` with max_length, batch_size and epochs filled from the data where None (auto.py); says what
    it chose in one line."""
    chosen = []
    max_length = cfg.max_length
    if max_length is None:
        lengths = token_lengths(data.train, tokenizer)
        max_length = auto_max_length(lengths, positions)
        held = float((lengths <= max_length).double().mean()) * 100  # 99.9, not 100, when 3 of 3000 do not fit
        limit = "the model's limit; " if max_length == positions else ""
        chosen.append(f"max length {max_length} ({limit}{held:.1f} % of the training texts fit untruncated, median "
                      f"{float(lengths.median()):.0f} tokens)")
    batch_size = cfg.batch_size or auto_batch_size(max_length)
    if cfg.batch_size is None:
        chosen.append(f"batch size {batch_size}")
    epochs = cfg.epochs or auto_epochs(len(data.train), batch_size * world_size)
    if cfg.epochs is None:
        steps = steps_per_epoch(len(data.train), batch_size * world_size) * epochs
        chosen.append(f"{epochs} epochs ({steps} steps)")
    if chosen:
        log("defaults from the data: " + ", ".join(chosen) + " (set --max-length / --batch-size / --epochs to "
            "choose)")
    return replace(cfg, max_length=max_length, batch_size=batch_size, epochs=epochs)


def dense_from_pretrained(model_name: str, num_labels: int) -> tuple[PrunedBertClassifier, object, str]:
    path = resolve_model(model_name)
    bert, config = load_bert(path)
    model = PrunedBertClassifier(config, num_labels, pooler=bert.pooler is not None)
    model.bert.load_state_dict(bert.state_dict())
    return model, load_tokenizer(path), path


def finetune(data: Dataset, out: str | Path, cfg: FinetuneConfig, overwrite: bool = False,
             resume: bool = False, device: str | None = None, precision: str | None = None) -> Path:
    """Writes ``out/epoch-<k>/`` per epoch, ``out/best/`` (best dev accuracy) and ``out/dev_scores.json``.

    ``device``: auto | cpu | cuda[:N] (default auto: a GPU when torch sees one); ``precision``: fp32 | bf16 |
    fp16 (autocast). Under torchrun every process trains on its slice of each batch (distributed.py)."""
    env = TrainEnv.create(device, precision)  # bad --device/--precision before anything is written
    seed_everything(cfg.seed)
    model, tokenizer, source = dense_from_pretrained(cfg.model, data.num_labels)
    positions = model.config.max_position_embeddings
    if cfg.max_length is not None:
        check_max_length(cfg.max_length, positions, source)  # before --out is created
    cfg = resolve_finetune_defaults(cfg, data, tokenizer, positions, env.world_size)
    fingerprint = run_fingerprint(data, asdict(cfg))
    out, state = open_run(out, overwrite, resume, fingerprint, env)
    extra = {"source_model": source, "data": data.name, "pair": data.is_pair, "stage": "finetune", "finetune": asdict(cfg)}
    run = Run(out, model, data, tokenizer, cfg.max_length, "finetune", asdict(cfg), extra, env, fingerprint,
              eval_mode="dense", checkpoint_fields=("dev_accuracy",), epoch_checkpoints=True,
              history_file="dev_scores.json",
              make_row=lambda logs, dev: {"dev_accuracy": dev["accuracy"], "train_loss": logs["loss"]},
              describe=lambda r: f"epoch {r['epoch']}: train loss {r['train_loss']:.4f}, dev accuracy "
                                 f"{r['dev_accuracy']:.4f}")
    run.resume_from(state)
    td = TrainData.make(data, tokenizer, cfg.max_length)
    epoch_steps = steps_per_epoch(len(data.train), cfg.batch_size * env.world_size)

    def setup(start_epoch: int):
        model = run.model
        opt = torch.optim.AdamW(param_groups(model.named_parameters(), cfg.weight_decay), lr=cfg.lr)
        sched = linear_warmup(opt, epoch_steps * cfg.epochs, cfg.warmup_ratio,
                              start_step=start_epoch * epoch_steps)

        def step(b) -> dict[str, float]:
            with env.autocast():
                out_ = model(b.input_ids, b.attention_mask, b.token_type_ids, mode="dense")
                loss = F.cross_entropy(out_.logits.float(), b.labels)
            opt.zero_grad()
            env.backward(loss)
            params = list(model.parameters())
            env.apply_gradients(params, [opt], [params])
            sched.step()
            return {"loss": loss.item()}
        return step

    out_dir = run.run([Phase(None, cfg.epochs, setup)], td, cfg.batch_size, cfg.seed)
    if env.main:
        note = majority_note(max(r["dev_accuracy"] for r in run.history), data) if run.history else None
        if note:
            log(note)
    return out_dir


def majority_note(best: float, data: Dataset) -> str | None:
    """A warning when the best dev accuracy is no better than always predicting the most frequent dev label:
    such a model has learned nothing a token-dropping model could keep (results §1c: 63 steps on long
    reviews stayed at 50 %)."""
    if not data.dev:
        return None
    counts: dict[int, int] = {}
    for e in data.dev:
        counts[e.label] = counts.get(e.label, 0) + 1
    majority = max(counts.values()) / len(data.dev)
    if best > majority + 0.01:
        return None
    return (f"warning: the best dev accuracy {100 * best:.1f} % is no better than always predicting the most "
            f"frequent label ({100 * majority:.1f} %); train longer (--epochs), or try --lr 1e-4, before `train`")


def top_epochs(finetune_dir: str | Path, k: int = 3) -> list[Path]:
    """The k fine-tuning epochs with the best dev accuracy (saliency targets average over them)."""
    finetune_dir = Path(finetune_dir)
    scores = json.loads((finetune_dir / "dev_scores.json").read_text())
    best = sorted(scores, key=lambda s: (-s["dev_accuracy"], s["epoch"]))[:k]
    return [finetune_dir / f"epoch-{s['epoch']}" for s in best]
