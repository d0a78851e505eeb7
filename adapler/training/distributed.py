"""Where a training run computes: the device, the precision and the processes of a torchrun launch.

One ``TrainEnv`` per run. Trainers call it at four points of a step, and nothing else in them knows about
devices or processes:

    with env.autocast():                 # forward in bf16/fp16 where asked (float32 otherwise)
        loss = ...
    env.backward(loss)                   # scaled for fp16
    env.apply_gradients(params, opts, clip_groups)  # unscale (fp16), weight by this rank's share,
                                         # all-reduce, clip, step, update the scaler

Data parallelism is hand-made rather than DistributedDataParallel: every rank gets a contiguous slice of the
same global batch (``shard``), its gradients are weighted by its share of that batch and summed across ranks,
so N processes with --batch-size B take exactly the steps of one process with batch N x B (up to float
summation order), uneven last batches included. Every rank applies the same update to the same weights, so
eta/theta and everything else stay identical without being broadcast again.
"""
from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from ..data import Encoded
from .. import devices
from ..devices import is_main_process, resolve_device, world  # noqa: F401  (re-exported)
from ..errors import RunAborted, UsageError

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# what a trainer uses when it is given no precision (use_device changes it and adapler.devices.DEFAULT_DEVICE:
# cli.py, for trainers reached through sweep, train_baseline and the demo)
DEFAULT_PRECISION = "fp32"


def check_precision(precision: str, device: torch.device) -> None:
    """fp32 anywhere; bf16 on CPU and on GPUs that have it; fp16 only on a GPU (its grad scaler and kernels
    are CUDA's, and CPU autocast does not train in fp16)."""
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a GPU (--device cuda); on the CPU use --precision bf16 or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UsageError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; "
                         "use --precision fp16 or fp32")


def check_device_options(device: str | None, precision: str | None = None) -> torch.device:
    """Both checks at once, for the CLI to run before any data is loaded."""
    d = resolve_device(device)
    check_precision(precision or DEFAULT_PRECISION, d)
    return d


@contextlib.contextmanager
def use_device(device: str | None, precision: str | None = None) -> Iterator[None]:
    """Train on ``device`` in ``precision`` wherever a trainer inside is given neither (cli.py)."""
    global DEFAULT_PRECISION
    before = devices.DEFAULT_DEVICE, DEFAULT_PRECISION
    devices.DEFAULT_DEVICE, DEFAULT_PRECISION = device or before[0], precision or before[1]
    try:
        yield
    finally:
        devices.DEFAULT_DEVICE, DEFAULT_PRECISION = before


def _init_process_group(device: torch.device) -> None:
    """Join the torchrun launch (gloo on CPU, nccl on GPUs); once per process."""
    if torch.distributed.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # generous: rank 0 evaluates dev and writes checkpoints while the others wait in a barrier
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=2))
    atexit.register(lambda: torch.distributed.is_initialized() and torch.distributed.destroy_process_group())
    if torch.distributed.get_rank() != 0:
        os.environ["ADAPLER_QUIET"] = "1"  # one set of progress lines and logs: rank 0's
    signal.signal(signal.SIGTERM, _stopped_by_torchrun)


def _stopped_by_torchrun(signum, frame) -> None:
    """torchrun stops the other processes when one fails: say so in one line (writes are crash-safe)."""
    raise RunAborted(f"rank {world()[0]}: stopped by torchrun because another process of the launch failed; "
                     "finished epochs are saved: re-launch the same command with --resume")


@dataclass
class TrainEnv:
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"
    rank: int = 0
    world_size: int = 1
    scaler: Any = None  # torch.amp.GradScaler for fp16
    share: float = 1.0  # this rank's share of the current global batch (0 for a stand-in row: see shard)

    @classmethod
    def create(cls, device: str | None = None, precision: str | None = None) -> "TrainEnv":
        """Checks the options (one-line errors), joins a torchrun launch, creates the fp16 grad scaler."""
        dev = resolve_device(device)
        precision = precision or DEFAULT_PRECISION
        check_precision(precision, dev)
        rank, size, _ = world()
        if size > 1:
            _init_process_group(dev)
            rank, size = torch.distributed.get_rank(), torch.distributed.get_world_size()
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        return cls(dev, precision, rank, size, scaler)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict[str, Any]:
        """What run_state.json records about where the run computed."""
        return {"device": self.device.type, "precision": self.precision, "world_size": self.world_size}

    # ------------------------------------------------------------------ one step

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.precision])

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler is not None else loss

    def backward(self, loss: torch.Tensor) -> None:
        self.scale(loss).backward()

    def reduce_gradients(self, params: Iterable[nn.Parameter],
                         optimizers: Iterable[torch.optim.Optimizer] = ()) -> None:
        """Make ``.grad`` the gradient of the global batch's mean loss: unscale (fp16), weight this rank's
        gradient by its share of the batch and sum over ranks (one flat all-reduce)."""
        if self.scaler is not None:
            for opt in optimizers:
                self.scaler.unscale_(opt)
        if not self.distributed:
            return
        params = [p for p in params if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        # one flag per parameter rides along: a parameter no rank computed a gradient for keeps grad None
        # (AdamW skips it, as in one process), not a zero gradient that would still move it
        has = torch.tensor([float(p.grad is not None) for p in params], device=self.device)
        flat = torch.cat([torch.cat([g.reshape(-1).float() for g in grads]) * self.share, has])
        self.all_reduce(flat)
        flags = flat[len(flat) - len(params):].tolist()  # one copy to the host per step
        offset = 0
        for p, g, present in zip(params, grads, flags):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.dtype) if present > 0 else None
            offset += n

    def step(self, opt: torch.optim.Optimizer) -> None:
        if self.scaler is not None:
            self.scaler.step(opt)  # skipped (and the scale lowered) if the fp16 gradients overflowed
        else:
            opt.step()

    def update(self) -> None:
        if self.scaler is not None:
            self.scaler.update()

    def apply_gradients(self, params: Iterable[nn.Parameter], optimizers: list[torch.optim.Optimizer],
                        clip_groups: Iterable[list[nn.Parameter]], max_norm: float = 1.0) -> None:
        """Everything after ``backward`` in one place: reduce ``params``' gradients, clip each group to
        ``max_norm``, step every optimizer (in order) and update the fp16 scaler."""
        self.reduce_gradients(params, optimizers)
        for group in clip_groups:
            torch.nn.utils.clip_grad_norm_(group, max_norm)
        for opt in optimizers:
            self.step(opt)
        self.update()

    # ------------------------------------------------------------------ batches

    def shard(self, b: Encoded) -> Encoded:
        """This rank's contiguous slice of a global batch, on the device; sets ``share``. A rank left without a
        row (a last batch smaller than the world) gets the batch's first row with share 0, so it still takes
        part in every collective while adding nothing."""
        n = len(b)
        lo, hi = (n * self.rank) // self.world_size, (n * (self.rank + 1)) // self.world_size
        self.share = (hi - lo) / n
        if hi == lo:
            lo, hi = 0, 1
        if self.distributed:
            b = Encoded(b.input_ids[lo:hi], b.attention_mask[lo:hi], b.token_type_ids[lo:hi], b.labels[lo:hi],
                        b.ids[lo:hi], 0, None)
            width = max(1, int(b.attention_mask.sum(dim=1).max()))  # trimmed to its own longest row
            b = replace(b, input_ids=b.input_ids[:, :width], attention_mask=b.attention_mask[:, :width],
                        token_type_ids=b.token_type_ids[:, :width])
        return self.to_device(b)

    def to_device(self, b: Encoded) -> Encoded:
        if self.device.type == "cpu":
            return b
        nb = self.device.type == "cuda"
        return replace(b, input_ids=b.input_ids.to(self.device, non_blocking=nb),
                       attention_mask=b.attention_mask.to(self.device, non_blocking=nb),
                       token_type_ids=b.token_type_ids.to(self.device, non_blocking=nb),
                       labels=b.labels.to(self.device, non_blocking=nb))

    # ------------------------------------------------------------------ collectives

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over ranks in place (no-op for one process); a lost peer is a one-line RunAborted."""
        if self.distributed:
            with _peer_guard():
                torch.distributed.all_reduce(t)
        return t

    def global_sum(self, *values: float) -> list[float]:
        """Per-rank numbers summed over ranks (e.g. share-weighted logs)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return self.all_reduce(t).tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. its dev metrics)."""
        if not self.distributed:
            return obj
        box = [obj if self.main else None]
        with _peer_guard():
            torch.distributed.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def all_gather(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        with _peer_guard():
            torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            with _peer_guard():
                torch.distributed.barrier()

    def broadcast_model(self, model: nn.Module) -> None:
        """Rank 0's weights everywhere: every rank builds the same model from the same seed; this makes sure."""
        if not self.distributed:
            return
        with _peer_guard(), torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                torch.distributed.broadcast(t.data, src=0)


@contextlib.contextmanager
def _peer_guard() -> Iterator[None]:
    try:
        yield
    except RuntimeError as e:  # gloo/nccl: a peer closed the connection, timed out or died
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunAborted(f"rank {world()[0]}: lost the other processes of the torchrun launch ({first[:120]}); "
                         "finished epochs are saved: re-launch the same command with --resume") from None
