"""Checkpoints: a directory with ``config.json``, ``model.safetensors`` and the tokenizer. No pickle."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .encoder import PrunedBertClassifier
from .errors import CheckpointError, OutputError  # noqa: F401  (re-exported: callers import them from here)
from .files import aside, discard_aside, ensure_writable, recover_dir, replace_dir  # noqa: F401  (re-exported)

def checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint directory, or the ``best/`` checkpoint of a run directory (the one rule every command that
    takes either uses)."""
    path = Path(path)
    return path / "best" if (path / "best" / "config.json").exists() else path


FORMAT = "adapler-checkpoint"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"


def save_checkpoint(model: PrunedBertClassifier, path: str | Path, *, tokenizer=None, label_names: list[str],
                    max_length: int, extra: dict[str, Any] | None = None, keep_old: bool = False) -> Path:
    """Write atomically: a complete temporary sibling directory (config.json written last, so its presence
    marks completeness) replaces ``path`` via ``replace_dir``, so a crash never loses the previous copy."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    config = {  # extra first: a caller may carry an old config over, and the model's own facts win
        **(extra or {}),
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": model.method,
        "num_labels": model.num_labels,
        "label_names": list(label_names),
        "max_length": int(max_length),
        "pooler": model.bert.pooler is not None,
        "selector": model.selector.config_dict(),
        "backbone": model.backbone.config_dict(model.config),  # its model_type names the family
    }
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS), metadata={"format": FORMAT})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
    return replace_dir(tmp, path, keep_old=keep_old)


def is_complete(path: str | Path) -> bool:
    """A checkpoint directory whose config.json parses and whose weights header is readable."""
    path = Path(path)
    try:
        read_config(path)
        from safetensors import safe_open
        with safe_open(str(path / WEIGHTS), "pt") as f:
            f.keys()
        return True
    except Exception:  # any unreadable part means incomplete
        return False


def match_state(path: str | Path, **want: Any) -> bool:
    """Make ``path`` the copy whose config.json has the ``want`` values (epoch, phase) that run_state.json
    names: after a crash between saving a checkpoint and writing the state, the previous copy is still
    aside (``save_checkpoint(keep_old=True)``) and is put back. True if ``path`` matches afterwards."""
    path = Path(path)

    def matches(d: Path) -> bool:
        try:
            cfg = read_config(d)
        except CheckpointError:
            return False
        return all(cfg.get(k) == v for k, v in want.items())

    if matches(path):
        return True
    if aside(path).is_dir() and is_complete(aside(path)) and matches(aside(path)):
        if path.exists():
            shutil.rmtree(path)
        os.replace(aside(path), path)
        return True
    return False


def recover_checkpoint(path: str | Path) -> bool:
    """Restore ``path`` after a save interrupted between moving the old copy aside and moving the new one in
    (or after an older version deleted it first): True if a complete copy was put back."""
    return recover_dir(Path(path), is_complete)


def read_config(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise CheckpointError(f"{cfg_path} not found: {path} is not an adapler checkpoint directory")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object, got {type(cfg).__name__}")
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path} is not an adapler checkpoint (missing \"format\": \"{FORMAT}\")")
    for key in ("method", "num_labels", "label_names", "max_length", "backbone"):
        if key not in cfg:
            raise CheckpointError(f"{cfg_path} lacks the key {key!r}")
    from .backbones import config_problem
    problem = config_problem(cfg["backbone"])
    if problem:
        raise CheckpointError(f"{cfg_path}: backbone {problem}")
    for key, ok in (("num_labels", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1),
                    ("label_names", lambda v: isinstance(v, list)),
                    ("max_length", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2)):
        if not ok(cfg[key]):
            raise CheckpointError(f"{cfg_path}: {key} is malformed ({cfg[key]!r})")
    return cfg


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[PrunedBertClassifier, dict]:
    """(model in eval mode, config dict). Every mismatch is a one-line ``CheckpointError``."""
    from . import backbones
    from .selectors import build_selector

    path = Path(path)
    cfg = read_config(path)
    # checkpoints written before other families were supported have no model_type: BERT
    bert_cfg = backbones.get(cfg["backbone"].get("model_type")).config_from_dict(cfg["backbone"])
    try:
        selector = build_selector(cfg["method"], bert_cfg, cfg.get("selector"))
    except ValueError as e:
        raise CheckpointError(f"{path / 'config.json'}: {e}") from None
    model = PrunedBertClassifier(bert_cfg, cfg["num_labels"], selector, pooler=cfg.get("pooler", True))
    weights = path / WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{weights} not found")
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"{weights} is not a readable safetensors file ({str(e).splitlines()[0]})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise CheckpointError(f"{weights} does not match config.json ({cfg['method']}): {what}")
    for k, v in state.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{weights}: {k} has shape {tuple(v.shape)}, config.json implies {tuple(expected[k].shape)}")
    model.load_state_dict(state)
    model.to(device).eval()
    return model, cfg


def load_checkpoint_tokenizer(path: str | Path):
    from transformers import AutoTokenizer
    tok_dir = Path(path) / "tokenizer"
    if not tok_dir.exists():
        raise CheckpointError(f"{tok_dir} not found: the checkpoint has no tokenizer")
    return AutoTokenizer.from_pretrained(str(tok_dir))


def check_classes(ckpt: str | Path, cfg: dict, data: Any) -> None:
    """A checkpoint and a dataset must have as many classes; with other class names (a model of one file run on
    another) class i of the data is read as class i of the model, which is said once, not silently assumed."""
    if cfg["num_labels"] != data.num_labels:
        raise CheckpointError(f"{ckpt} predicts {cfg['num_labels']} classes but {data.name} has {data.num_labels}")
    names = [str(n) for n in cfg.get("label_names") or []]
    if names and names != list(data.label_names):
        from .progress import log
        log(f"note: {ckpt} was trained on classes ({', '.join(names)}) and {data.name} has "
            f"({', '.join(data.label_names)}); they are matched in that order")
