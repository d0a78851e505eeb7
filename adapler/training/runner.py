"""The one training runner: epoch loop, run_state.json, resume and checkpoint selection for every trainer.

A run is a list of phases, each some epochs: fine-tuning and AdapLeR have one unnamed phase, PoWER-BERT
``search`` + ``retrain``, TR-BERT ``init`` + ``rl`` + ``joint``. After every epoch the run evaluates dev (rank 0),
appends a history row, lets the selection rule decide whether ``best/`` takes this epoch (only epochs of the
last phase with epochs compete), saves its resume point (``last/``, or ``epoch-<k>/`` for fine-tuning) and then
writes ``run_state.json``; so the state never names a checkpoint that is not complete, and a crash between the
two leaves the previous copy aside (``match_state`` puts it back). Optimiser state is not saved: a resumed
phase rebuilds its optimiser at the right schedule step (``Phase.setup(start_epoch)``).

run_state.json (format 2, every trainer):
    format, stage, phases [[name, epochs], ...], phase, epochs_done (in that phase), history, best {epoch, phase,
    dev_accuracy}, finished, config (the trainer's options), fingerprint (data, options, --init: common.py),
    device, precision, world_size
Older files are still read: fine-tuning's ``dev_scores`` list, AdapLeR's epochs-only state, the baselines'
``finished`` flag (``is_finished``, ``resume_from``).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..checkpoint import CheckpointError, OutputError, discard_aside, load_checkpoint, match_state, save_checkpoint
from ..data import Dataset, Encoded
from ..encoder import PrunedBertClassifier
from ..evaluate import evaluate
from ..files import write_json_atomic
from ..progress import log, progress_bar
from .common import TrainData, prepare_out_dir, write_state
from .distributed import TrainEnv
from .target import find_row

STATE_FORMAT = 2
StepFn = Callable[[Encoded], dict[str, float]]


@dataclass
class Phase:
    name: str | None  # None: the run's only phase (rows and checkpoints then carry no "phase")
    epochs: int
    setup: Callable[[int], StepFn]  # start epoch -> step function (builds the phase's optimisers)
    after_epoch: Callable[[dict], None] | None = None  # add phase-specific fields to a history row (every rank)
    finish: Callable[[], None] | None = None  # idempotent: may run again after a crash
    seed_index: int | None = None  # data-order seed slot; default: the phase's position in the list
    before_eval: Callable[[], None] | None = None  # e.g. AdapLeR's hard lambda


class Selection(Protocol):
    """Which epoch ``best/`` holds (target.SelectionRule, or MostAccurate)."""
    def better(self, row: dict, best_row: dict | None) -> bool: ...
    def record(self, row: dict) -> dict[str, Any]: ...
    def closing_note(self, row: dict | None, where: str, candidates: Sequence[dict] = ()) -> str | None: ...


@dataclass(frozen=True)
class MostAccurate:
    """The most accurate epoch (the first of equals): fine-tuning, and the baselines without a rule."""
    describe: bool = False  # best/config.json says "best dev accuracy of phase X"

    def better(self, row: dict, best_row: dict | None) -> bool:
        return best_row is None or row["dev_accuracy"] > best_row["dev_accuracy"]

    def record(self, row: dict) -> dict[str, Any]:
        return {"selection": f"best dev accuracy of phase {row['phase']}"} if self.describe and row.get("phase") else {}

    def closing_note(self, row: dict | None, where: str, candidates: Sequence[dict] = ()) -> str | None:
        return None


# ---------------------------------------------------------------------------------------------- run state

def read_state(out: str | Path) -> dict | None:
    path = Path(out) / "run_state.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path} is not valid JSON; the run cannot be resumed, start a new --out") from None


def state_finished(state: dict) -> bool:
    """Whether a run state (any format) describes a complete run."""
    if "phases" in state:  # format 2: the flag, and the position at the end of the plan (a hand-edited or
        plan = state["phases"]  # partly rolled-back state says less than the flag)
        return bool(state.get("finished")) and (not plan or (
            state.get("phase") == plan[-1][0] and state.get("epochs_done", 0) >= plan[-1][1]))
    if "finished" in state:  # format 1 of the baselines
        return bool(state["finished"])
    return state.get("epochs_done", 0) >= state.get("config", {}).get("epochs", float("inf"))  # format 1


def is_finished(run: str | Path) -> bool:
    """True when the run in ``run`` is complete and its ``best/`` checkpoint is final (every trainer, every
    run_state.json format). What sweeps and the bench's model cache ask before reusing a run."""
    run = Path(run)
    if not (run / "best" / "config.json").exists():
        return False
    try:
        state = read_state(run)
    except CheckpointError:
        return False
    return state is not None and state_finished(state)


def open_run(out: str | Path, overwrite: bool, resume: bool, fingerprint: dict | None,
             env: TrainEnv) -> tuple[Path, dict | None]:
    """(out dir, saved state or None). Every rank refuses a state of another world size; then rank 0 alone
    checks and prepares the directory (no clobbering, data/options/--init must match on --resume, interrupted
    saves restored) while the others wait, and they read the state it leaves."""
    state = read_state(out) if resume else None
    if state is not None:
        before = int(state.get("world_size", 1))
        if before != env.world_size:
            raise OutputError(f"--resume: {out} was trained by {before} process(es), this launch has "
                              f"{env.world_size}; resume with `torchrun --nproc-per-node {before}`"
                              f"{' (or without torchrun)' if before == 1 else ''}, or use a new --out")
    if env.main:
        out, state = prepare_out_dir(out, overwrite, resume, fingerprint)
    env.barrier()
    if not env.main:
        out = Path(out)
        state = read_state(out) if resume else None
    return out, state


# ---------------------------------------------------------------------------------------------- the runner

@dataclass
class Run:
    out: Path
    model: PrunedBertClassifier
    data: Dataset
    tokenizer: Any
    max_length: int
    stage: str  # finetune | adapler | power-bert | tr-bert
    config: dict  # the trainer's options (a resume must repeat them)
    extra: dict  # config.json fields of every checkpoint
    env: TrainEnv = field(default_factory=TrainEnv)
    fingerprint: dict | None = None
    selection: Selection = field(default_factory=MostAccurate)
    eval_mode: str = "hard"
    checkpoint_fields: tuple[str, ...] = ("dev_accuracy", "dev_flops_speedup")  # row fields in config.json
    epoch_checkpoints: bool = False  # fine-tuning: epoch-<k>/ per epoch (the resume point) instead of last/
    history_file: str = "history.json"
    make_row: Callable[[dict, dict], dict] | None = None  # (train logs, dev metrics) -> row fields
    describe: Callable[[dict], str] | None = None  # the log line of a finished epoch
    phase: str | None = None
    epochs_done: int = 0
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "phase": None, "dev_accuracy": -1.0})
    finished: bool = False
    plan: list = field(default_factory=list)

    # ------------------------------------------------------------------ resume

    def resume_from(self, state: dict | None) -> None:
        """Continue after the last finished epoch of ``state`` (any format): history, best/, the model."""
        if state:
            self.finished = state_finished(state)
            self.phase, self.epochs_done = state.get("phase"), state["epochs_done"]
            self.history = list(state.get("history", state.get("dev_scores", [])))
            self.best = state.get("best") or {}
            if self._row_of(self.best) is None:  # not recorded (old fine-tuning state) or rolled back by hand:
                self.best = {"epoch": None, "phase": None, "dev_accuracy": -1.0}  # run() replays the history
            self._restore_best()
            point = self._resume_point()
            if self.env.main and point.exists() and not match_state(point, phase=self.phase, epoch=self.epochs_done) \
                    and not self.epoch_checkpoints:
                log(f"warning: {point} is not {self._name(self.phase, self.epochs_done)} that run_state.json names "
                    "and no earlier copy is left; continuing from it")
            self.env.barrier()  # rank 0 has put back what an interrupted save left aside
            if point.exists():
                self.model, _ = load_checkpoint(point)
            log(f"resuming {self.out} after {self._name(self.phase, self.epochs_done)}")
        self.model.to(self.env.device)
        self.env.broadcast_model(self.model)

    def _resume_point(self) -> Path:
        return self.out / (f"epoch-{self.epochs_done}" if self.epoch_checkpoints else "last")

    def _restore_best(self) -> None:
        if self.best.get("epoch") is not None and self.env.main:
            match_state(self.out / "best", phase=self.best.get("phase"), epoch=self.best["epoch"])

    def _replay_best(self, selecting: list) -> None:
        """best of a state that does not name it: the selection over the history rows of the selecting phase."""
        for row in self.history:
            if row.get("phase") in selecting and self.selection.better(row, self._row_of(self.best)):
                self.best = {"epoch": row["epoch"], "phase": row.get("phase"), "dev_accuracy": row["dev_accuracy"]}
        self._restore_best()

    # ------------------------------------------------------------------ the loop

    def cross_entropy_step(self, named: list, opt, sched, mode: str) -> StepFn:
        """A step of plain cross-entropy on ``named`` parameters through the model in ``mode`` (hard or soft
        selection): the re-training phase of the methods whose selection is fixed by then."""
        import torch.nn.functional as F
        params = [p for _, p in named]

        def step(b: Encoded) -> dict[str, float]:
            with self.env.autocast():
                o = self.model(b.input_ids, b.attention_mask, b.token_type_ids, mode=mode)
            ce = F.cross_entropy(o.logits.float(), b.labels)
            opt.zero_grad()
            self.env.backward(ce)
            self.env.apply_gradients(params, [opt], [params])
            sched.step()
            return {"ce": ce.item()}
        return step

    def run(self, phases: list[Phase], td: TrainData, batch_size: int, seed: int) -> Path:
        """Train ``phases`` from where the state left off. ``batch_size`` is per process: a torchrun launch of N
        processes takes the steps of one process with batch N x batch_size."""
        self.plan = [[p.name, p.epochs] for p in phases]
        if self.finished:
            log(f"{self.out} is already finished")
            return self.out
        names = [p.name for p in phases]
        selecting = [p.name for p in phases if p.epochs > 0][-1:]  # best/ comes from the last phase with epochs
        if self.best.get("epoch") is None:
            self._replay_best(selecting)
        start = names.index(self.phase) if self.phase in names else 0
        for ph in phases[start:]:
            done = self.epochs_done if ph.name == self.phase else 0
            self.phase, self.epochs_done = ph.name, done
            step = ph.setup(done) if done < ph.epochs else None
            for epoch in range(done + 1, ph.epochs + 1):
                slot = names.index(ph.name) if ph.seed_index is None else ph.seed_index
                desc = f"{self.stage} {ph.name + ' ' if ph.name else ''}epoch {epoch}/{ph.epochs}"
                logs = self._train_epoch(td.epoch(batch_size * self.env.world_size, seed + 100 * slot + epoch),
                                         step, desc)
                if ph.before_eval:
                    ph.before_eval()
                row = self._row(ph.name, epoch, logs, self._evaluate())
                if ph.after_epoch:
                    ph.after_epoch(row)
                self.history.append(row)
                log(self.describe(row) if self.describe else self._describe(row))
                meta = {**({"phase": ph.name} if ph.name else {}), "epoch": epoch,
                        **{k: row[k] for k in self.checkpoint_fields if k in row}}
                if ph.name in selecting and self.selection.better(row, self._row_of(self.best)):
                    self.best = {"epoch": epoch, "phase": ph.name, "dev_accuracy": row["dev_accuracy"]}
                    self._save("best", {**meta, **self.selection.record(row)})
                self.epochs_done = epoch
                self._save(f"epoch-{epoch}" if self.epoch_checkpoints else "last", meta)
                self._write()
            if ph.finish:
                ph.finish()
            if len(phases) > 1:  # the phase change (and what finish did) is a resume point too
                self._save("last", {"phase": ph.name, "epoch": ph.epochs})
                self._write()
        if self.best["epoch"] is None:  # no training epochs at all: the initial model is the result
            self._save("best", {"selection": "no training epochs"})
        else:
            note = self.selection.closing_note(self._row_of(self.best), str(self.out / "best"),
                                               [r for r in self.history if r.get("phase") in selecting])
            if note:
                log(note)
        self._write(finished=True)
        self.env.barrier()  # nobody returns before rank 0 has written the result
        return self.out

    def _train_epoch(self, batches: list[Encoded], step: StepFn, desc: str) -> dict[str, float]:
        """Each rank's slice of every global batch through ``step``; the mean over steps of each logged value,
        every step's value being the global batch's (rank values weighted by their share)."""
        self.model.train()
        sums: dict[str, float] = {}
        for b in progress_bar(batches, desc):
            logs = step(self.env.shard(b))
            if any(v != v for v in logs.values()):
                raise FloatingPointError(f"loss became NaN ({logs}); lower the learning rate")
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + self.env.share * v
        totals = self.env.global_sum(*sums.values())
        return {k: t / max(1, len(batches)) for k, t in zip(sums, totals)}

    def _evaluate(self) -> dict:
        """Dev metrics on rank 0 in float32 (selection must not depend on the training precision), shared."""
        dev = None
        if self.env.main:
            dev = evaluate(self.model, self.data.dev, self.tokenizer, self.max_length, mode=self.eval_mode, desc="dev")
        return self.env.broadcast(dev)

    def _row(self, phase: str | None, epoch: int, logs: dict, dev: dict) -> dict:
        head = {**({"phase": phase} if phase else {}), "epoch": epoch}
        if self.make_row:
            return {**head, **self.make_row(logs, dev)}
        return {**head, **logs, "dev_accuracy": dev["accuracy"], "dev_flops_speedup": dev["flops_speedup"],
                "dev_mean_kept_lengths": dev["mean_kept_lengths"]}

    def _describe(self, row: dict) -> str:
        return (f"{row['phase'] + ' ' if row.get('phase') else ''}epoch {row['epoch']}: dev accuracy "
                f"{row['dev_accuracy']:.4f}, FLOPs speedup {row['dev_flops_speedup']:.2f}x, "
                f"kept {[round(v, 1) for v in row['dev_mean_kept_lengths']]}")

    def _row_of(self, best: dict) -> dict | None:
        return None if best.get("epoch") is None else find_row(self.history, best["epoch"], best.get("phase"))

    @staticmethod
    def _name(phase: str | None, epoch: int) -> str:
        return f"{phase + ' ' if phase else ''}epoch {epoch}"

    # ------------------------------------------------------------------ outputs (rank 0)

    def _save(self, name: str, meta: dict) -> None:
        if self.env.main:
            save_checkpoint(self.model, self.out / name, tokenizer=self.tokenizer, label_names=self.data.label_names,
                            max_length=self.max_length, extra={**self.extra, **meta},
                            keep_old=not name.startswith("epoch-"))  # epoch-<k>/ is written once

    def _write(self, finished: bool = False) -> None:
        if not self.env.main:
            return
        write_json_atomic(self.out / self.history_file, self.history)
        write_state(self.out, {"format": STATE_FORMAT, "stage": self.stage, "phases": self.plan, "phase": self.phase,
                               "epochs_done": self.epochs_done, "history": self.history, "best": self.best,
                               "finished": finished, "config": self.config, "fingerprint": self.fingerprint,
                               **self.env.describe()})
        for name in ("best", "last"):  # the state now names the new copies: the previous ones may go
            discard_aside(self.out / name)
