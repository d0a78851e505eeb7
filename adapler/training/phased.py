"""What the baseline trainers (power_bert.py, tr_bert.py) share besides the runner: starting a run from a
fine-tuned run directory, plugging a selector into its encoder, the selection rule relative to its accuracy.

Their phases (PoWER-BERT ``search`` + ``retrain``, TR-BERT ``init`` + ``rl`` + ``joint``) are run by
``runner.Run``, as fine-tuning and AdapLeR are: one epoch loop, one run_state.json, one resume path.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor

from ..checkpoint import check_classes, load_checkpoint, load_checkpoint_tokenizer
from ..data import Dataset
from ..encoder import PrunedBertClassifier
from ..evaluate import evaluate
from ..checkpoint import checkpoint_dir
from .common import dev_lengths, finetuned_dev_accuracy, load_init, run_fingerprint, seed_everything
from .distributed import TrainEnv
from .runner import open_run
from .target import SelectionRule


def setup_from_finetuned(data: Dataset, init: str | Path, out: str | Path, seed: int, overwrite: bool, resume: bool,
                         config: dict, reachable: Callable[[dict, Tensor], None] | None = None,
                         env: TrainEnv | None = None):
    """(out, saved state or None, checkpoint dir, fine-tuned model, its config, tokenizer, run fingerprint) for a
    new or resumed run. ``config``: the trainer's options, which a resume must repeat. ``reachable(init config,
    dev lengths)`` raises if a speedup target cannot be met."""
    ckpt = checkpoint_dir(init)
    init_cfg = load_init(init)
    check_classes(ckpt, init_cfg, data)  # before --out is created or a resumed run is touched
    if reachable is not None:  # a speedup target the dev lengths cannot allow is refused before any output
        reachable(init_cfg, dev_lengths(data, load_checkpoint_tokenizer(ckpt), init_cfg["max_length"]))
    fingerprint = run_fingerprint(data, config, init)
    out, state = open_run(out, overwrite, resume, fingerprint, env or TrainEnv())
    seed_everything(seed)
    ft_model, ft_cfg = load_checkpoint(ckpt)
    return out, state, ckpt, ft_model, ft_cfg, load_checkpoint_tokenizer(ckpt), fingerprint


def with_selector(ft_model: PrunedBertClassifier, selector) -> PrunedBertClassifier:
    """A copy of the fine-tuned model with ``selector`` plugged into its encoder loop."""
    model = PrunedBertClassifier(ft_model.config, ft_model.num_labels, selector, pooler=ft_model.bert.pooler is not None)
    model.load_state_dict(ft_model.state_dict(), strict=False)  # selector parameters stay freshly initialised
    return model


def selection_rule(init: str | Path, ft_model: PrunedBertClassifier, ft_cfg: dict, data: Dataset, tokenizer,
                   max_accuracy_drop: float, target_speedup: float | None, env: TrainEnv | None = None) -> SelectionRule:
    """The rule for ``best/``, relative to the fine-tuned run's dev accuracy (measured on rank 0 if it never
    recorded it)."""
    env = env or TrainEnv()
    acc = finetuned_dev_accuracy(init, ft_cfg)
    if acc is None:
        acc = env.broadcast(evaluate(ft_model, data.dev, tokenizer, ft_cfg["max_length"], mode="dense",
                                     desc="fine-tuned dev")["accuracy"] if env.main else None)
    return SelectionRule(acc, max_accuracy_drop, target_speedup)
