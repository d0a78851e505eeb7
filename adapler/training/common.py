"""Pieces every trainer shares: optimisers, schedules, run directories and their resume checks (the epoch
loop itself is runner.py)."""
from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import (WEIGHTS, CheckpointError, OutputError, checkpoint_dir, ensure_writable, read_config,
                          recover_checkpoint)
from ..data import Dataset, Encoded, batches, encode
from ..errors import UsageError
from ..files import ensure_out_dir, write_json_atomic
from ..progress import log

MIN_MAX_LENGTH = 4  # [CLS] + a token + [SEP] (+ one for a pair): below this nothing is left to classify


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def param_groups(params: Iterable[tuple[str, nn.Parameter]], weight_decay: float) -> list[dict]:
    """AdamW groups; biases and LayerNorm weights get no decay (as HF create_optimizer)."""
    decay, no_decay = [], []
    for name, p in params:
        if not p.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float = 0.06,
                  start_step: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        step += start_step
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@dataclass
class TrainData:
    """Tokenised splits; train keeps example ids so per-example targets (saliency) can be looked up."""
    train: Encoded
    dev: list
    max_length: int

    @classmethod
    def make(cls, data: Dataset, tokenizer, max_length: int) -> "TrainData":
        train = encode(data.train, tokenizer, max_length)
        if train.n_truncated:
            log(f"{train.n_truncated} of {len(data.train)} training texts were truncated to {max_length} tokens")
        return cls(train, data.dev, max_length)

    def epoch(self, batch_size: int, seed: int) -> list[Encoded]:
        return list(batches(self.train, batch_size, shuffle=True, seed=seed))


def check_max_length(max_length: int, positions: int, model: str) -> None:
    """The max length must fit the backbone's position table (beyond it the embeddings fail with a size error)."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_MAX_LENGTH:
        raise UsageError(f"max length must be an integer >= {MIN_MAX_LENGTH}, got {max_length!r}")
    if max_length > positions:
        raise UsageError(f"max length {max_length} exceeds the {positions} positions of {model}; "
                         f"use --max-length {positions} or less")


def _plain(obj: Any) -> Any:
    """JSON round trip, so fresh configs compare equal to ones read back from run_state.json."""
    return json.loads(json.dumps(obj, default=str))


def run_fingerprint(data: Dataset, config: dict[str, Any], init: str | Path | None = None) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one: the data's content, the options, the --init
    weights. Stored in run_state.json; ``prepare_out_dir`` compares it on --resume."""
    fp: dict[str, Any] = {"data": data.fingerprint(), "data_name": data.name, "num_labels": data.num_labels,
                          "config": _plain(config)}
    if init is not None:
        from ..files import file_sha256
        fp["init"] = file_sha256(checkpoint_dir(init) / WEIGHTS)[:16]
    return fp


def check_resume(out: Path, state: dict, fp: dict[str, Any], action: str = "--resume") -> None:
    """One-line OutputError naming the first difference between the run in ``out`` and this call."""
    old = state.get("fingerprint")
    fix = "repeat the same --data and options, or use a new --out"
    if old is None:
        log(f"{out}/run_state.json predates data fingerprints: the data cannot be checked, only the options")
    else:
        if old.get("data") != fp["data"]:
            what = f"{old.get('data_name')} ({old.get('num_labels')} classes, content {old.get('data')})"
            now = f"{fp['data_name']} ({fp['num_labels']} classes, content {fp['data']})"
            raise OutputError(f"{action}: {out} was trained on other data: {what}, not {now}; {fix}")
        if old.get("init") != fp.get("init"):
            raise OutputError(f"{action}: --init holds other weights than the run in {out} started from; "
                              "pass the same --init, or use a new --out")
    before = _plain((old or {}).get("config", state.get("config", {})))
    for key in sorted(set(before) & set(fp["config"])):
        if before[key] != fp["config"][key]:
            raise OutputError(f"{action}: {key} is {fp['config'][key]!r} but the run in {out} used "
                              f"{before[key]!r}; {fix}")


# What a trainer writes into its --out (with .tmp/.old siblings of interrupted saves); --overwrite removes
# exactly these, so stale epochs of an older, longer run cannot mix with the new one and foreign files stay.
_RUN_OUTPUT = re.compile(r"(epoch-\d+|best|last|saliency|heuristic\.safetensors|heuristic\.json|run_state\.json|"
                         r"history\.json|dev_scores\.json)(\.tmp|\.old)?")


def _clear_run(out: Path) -> None:
    for p in out.iterdir():
        if _RUN_OUTPUT.fullmatch(p.name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


SALIENCY_DIR = "saliency"  # a run's (or a sweep's) cache of per-example tables: saliency targets, teacher logits
BEFORE_FIRST_EPOCH = {SALIENCY_DIR}  # what a run directory can hold before its first epoch ends


def prepare_out_dir(out: str | Path, overwrite: bool, resume: bool,
                    fingerprint: dict[str, Any] | None = None) -> tuple[Path, dict | None]:
    """(out dir, existing run state or None). Refuses to clobber a finished or foreign directory; on resume,
    refuses other data or options (``fingerprint``) and restores checkpoints an interrupted save left aside."""
    out = ensure_out_dir(out)
    state_file = out / "run_state.json"
    if resume and state_file.exists():
        try:
            state = json.loads(state_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CheckpointError(f"{state_file} is not valid JSON; the run cannot be resumed, start a new --out") from None
        if fingerprint is not None:
            check_resume(out, state, fingerprint)
        for p in sorted(out.iterdir()):
            stem, dot, ext = p.name.rpartition(".")
            if dot and ext in ("old", "tmp") and p.is_dir() and recover_checkpoint(out / stem):
                log(f"recovered {out / stem} from {p.name} (an interrupted save)")
        return out, state
    if resume:
        leftovers = sorted(q.name for q in out.iterdir()) if out.is_dir() else []
        if leftovers and set(leftovers) <= BEFORE_FIRST_EPOCH:  # interrupted in epoch 1: keep what it computed
            log(f"--resume: no epoch of {out} had finished; starting it from the beginning "
                f"(keeping {', '.join(leftovers)})")
            return out, None
        raise CheckpointError(f"--resume: {state_file} not found; nothing to resume in {out}")
    ensure_writable(out, overwrite)
    if overwrite and out.is_dir():
        _clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    return out, None


def write_state(out: Path, state: dict[str, Any]) -> None:
    write_json_atomic(out / "run_state.json", state)


def load_init(init: str | Path) -> dict:
    """Config of a fine-tuned checkpoint passed as --init (the best epoch is its ``best/`` sub-directory)."""
    init = Path(init)
    best = init / "best"
    return read_config(best if best.exists() else init)


def finetuned_dev_accuracy(init: str | Path, ft_cfg: dict) -> float | None:
    """The fine-tuned run's best dev accuracy (dev_scores.json, else its config.json); None if neither says."""
    scores = Path(init) / "dev_scores.json"
    if scores.exists():
        return max(s["dev_accuracy"] for s in json.loads(scores.read_text()))
    return ft_cfg.get("dev_accuracy")


def dev_lengths(data: Dataset, tokenizer, max_length: int) -> torch.Tensor:
    """Real token counts of the dev split: what a speedup target is measured on."""
    return encode(data.dev, tokenizer, max_length).attention_mask.sum(dim=1)
