"""Phased, resumable training runs shared by the baseline trainers (power_bert.py, tr_bert.py).

A run is a list of phases, each some epochs. It is resumable at phase/epoch granularity: ``out/last/``
is written after every epoch and phase change, ``run_state.json`` says which phase and epoch that is,
``history.json`` has one row per epoch (train losses + hard-mode dev metrics), ``out/best/`` is the epoch of
the final phase that the run's ``SelectionRule`` (target.py) prefers. Optimiser state is not saved (as in the AdapLeR trainer): a
resumed phase restarts its optimiser at the right schedule step.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..checkpoint import (CheckpointError, discard_aside, load_checkpoint, load_checkpoint_tokenizer, match_state,
                          save_checkpoint)
from ..data import Dataset, Encoded
from ..encoder import PrunedBertClassifier
from ..evaluate import evaluate
from ..files import write_json_atomic
from ..progress import log
from .common import (TrainData, dev_lengths, finetuned_dev_accuracy, init_path, load_init, prepare_out_dir,
                     run_fingerprint, seed_everything, train_epoch, write_state)
from .target import SelectionRule, find_row


@dataclass
class Phase:
    name: str
    epochs: int
    setup: Callable[[int], Callable[[Encoded], dict[str, float]]]  # start epoch -> step function
    after_epoch: Callable[[dict], None] = lambda row: None  # add phase-specific fields to a history row
    finish: Callable[[], None] = lambda: None  # idempotent: may run again after a crash
    seed_index: int | None = None  # data-order seed slot; default: the phase's position in the list


@dataclass
class PhasedRun:
    """Bookkeeping shared by both trainers: run_state.json, history.json, out/last, out/best."""
    out: Path
    model: PrunedBertClassifier
    data: Dataset
    tokenizer: Any
    max_length: int
    extra: dict
    config: dict
    phase: str = ""
    epochs_done: int = 0
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "phase": None, "dev_accuracy": -1.0})
    finished: bool = False
    fingerprint: dict | None = None  # of data, options and --init; checked on --resume
    rule: SelectionRule | None = None  # None: the most accurate epoch of the final phase

    def resume_from(self, state: dict | None) -> None:
        if not state:
            return
        self.finished = bool(state.get("finished"))
        self.phase, self.epochs_done = state["phase"], state["epochs_done"]
        self.history, self.best = state["history"], state["best"]
        if self.best.get("epoch") is not None:
            match_state(self.out / "best", phase=self.best["phase"], epoch=self.best["epoch"])
        if (self.out / "last").exists():
            if not match_state(self.out / "last", phase=self.phase, epoch=self.epochs_done):
                log(f"warning: {self.out / 'last'} is not {self.phase} epoch {self.epochs_done} that run_state.json "
                    "names and no earlier copy is left; continuing from it")
            self.model, _ = load_checkpoint(self.out / "last")
        log(f"resuming {self.out}: phase {self.phase}, {self.epochs_done} epoch(s) done")

    def save(self, name: str, meta: dict) -> None:
        save_checkpoint(self.model, self.out / name, tokenizer=self.tokenizer, label_names=self.data.label_names,
                        max_length=self.max_length, extra={**self.extra, **meta}, keep_old=True)

    def write(self, finished: bool = False) -> None:
        write_json_atomic(self.out / "history.json", self.history)
        write_state(self.out, {"method": self.model.method, "phase": self.phase, "epochs_done": self.epochs_done,
                               "history": self.history, "best": self.best, "config": self.config,
                               "finished": finished, "fingerprint": self.fingerprint})
        for name in ("best", "last"):  # the state now names the new copies: the previous ones may go
            discard_aside(self.out / name)

    def run(self, phases: list[Phase], td: TrainData, batch_size: int, seed: int) -> Path:
        if self.finished:
            log(f"{self.out} is already finished")
            return self.out
        names = [p.name for p in phases]
        select = [p.name for p in phases if p.epochs > 0][-1:]  # best checkpoint comes from the last phase
        start = names.index(self.phase) if self.phase in names else 0
        for ph in phases[start:]:
            done = self.epochs_done if ph.name == self.phase else 0
            self.phase, self.epochs_done = ph.name, done
            if done < ph.epochs:
                step = ph.setup(done)
            for epoch in range(done + 1, ph.epochs + 1):
                slot = names.index(ph.name) if ph.seed_index is None else ph.seed_index
                logs = train_epoch(self.model, td.epoch(batch_size, seed + 100 * slot + epoch), step,
                                   f"{self.model.method} {ph.name} epoch {epoch}/{ph.epochs}")
                dev = evaluate(self.model, self.data.dev, self.tokenizer, self.max_length, mode="hard", desc="dev")
                row = {"phase": ph.name, "epoch": epoch, **logs, "dev_accuracy": dev["accuracy"],
                       "dev_flops_speedup": dev["flops_speedup"], "dev_mean_kept_lengths": dev["mean_kept_lengths"]}
                ph.after_epoch(row)
                self.history.append(row)
                log(f"{ph.name} epoch {epoch}: dev accuracy {dev['accuracy']:.4f}, FLOPs speedup "
                    f"{dev['flops_speedup']:.2f}x, kept {[round(v, 1) for v in dev['mean_kept_lengths']]}")
                meta = {"phase": ph.name, "epoch": epoch, "dev_accuracy": dev["accuracy"],
                        "dev_flops_speedup": dev["flops_speedup"]}
                if ph.name in select and self._better(row):
                    self.best = {"epoch": epoch, "phase": ph.name, "dev_accuracy": dev["accuracy"]}
                    self.save("best", {**meta, **(self.rule.record(row) if self.rule else
                                                  {"selection": f"best dev accuracy of phase {ph.name}"})})
                self.epochs_done = epoch
                self.save("last", meta)
                self.write()
            ph.finish()
            self.save("last", {"phase": ph.name, "epoch": ph.epochs})
            self.write()
        if self.best["epoch"] is None:  # no training epochs at all: the initial model is the result
            self.save("best", {"selection": "no training epochs"})
        elif self.rule is not None:
            note = self.rule.closing_note(self._best_row(), str(self.out / "best"))
            if note:
                log(note)
        self.write(finished=True)
        return self.out

    def _best_row(self) -> dict | None:
        return None if self.best.get("epoch") is None else find_row(self.history, self.best["epoch"], self.best["phase"])

    def _better(self, row: dict) -> bool:
        best = self._best_row()
        if self.rule is None:
            return best is None or row["dev_accuracy"] > best["dev_accuracy"]
        return self.rule.better(row, best)


def setup_from_finetuned(data: Dataset, init: str | Path, out: str | Path, seed: int, overwrite: bool, resume: bool,
                         config: dict, reachable: Callable[[dict, Tensor], None] | None = None):
    """(out, saved state or None, checkpoint dir, fine-tuned model, its config, tokenizer, run fingerprint) for a
    new or resumed run. ``config``: the trainer's options, which a resume must repeat. ``reachable(init config,
    dev lengths)`` raises if a speedup target cannot be met."""
    ckpt = init_path(init)
    init_cfg = load_init(init)
    ft_num_labels = init_cfg["num_labels"]
    if ft_num_labels != data.num_labels:  # before --out is created or a resumed run is touched
        raise CheckpointError(f"{ckpt} predicts {ft_num_labels} classes but {data.name} has {data.num_labels}")
    if reachable is not None:  # a speedup target the dev lengths cannot allow is refused before any output
        reachable(init_cfg, dev_lengths(data, load_checkpoint_tokenizer(ckpt), init_cfg["max_length"]))
    fingerprint = run_fingerprint(data, config, init)
    out, state = prepare_out_dir(out, overwrite, resume, fingerprint)
    seed_everything(seed)
    ft_model, ft_cfg = load_checkpoint(ckpt)
    return out, state, ckpt, ft_model, ft_cfg, load_checkpoint_tokenizer(ckpt), fingerprint


def with_selector(ft_model: PrunedBertClassifier, selector) -> PrunedBertClassifier:
    """A copy of the fine-tuned model with ``selector`` plugged into its encoder loop."""
    model = PrunedBertClassifier(ft_model.config, ft_model.num_labels, selector, pooler=ft_model.bert.pooler is not None)
    model.load_state_dict(ft_model.state_dict(), strict=False)  # selector parameters stay freshly initialised
    return model


def selection_rule(init: str | Path, ft_model: PrunedBertClassifier, ft_cfg: dict, data: Dataset, tokenizer,
                   max_accuracy_drop: float, target_speedup: float | None) -> SelectionRule:
    """The rule for ``best/``, relative to the fine-tuned run's dev accuracy (measured if it never recorded it)."""
    acc = finetuned_dev_accuracy(init, ft_cfg)
    if acc is None:
        acc = evaluate(ft_model, data.dev, tokenizer, ft_cfg["max_length"], mode="dense", desc="fine-tuned dev")["accuracy"]
    return SelectionRule(acc, max_accuracy_drop, target_speedup)
