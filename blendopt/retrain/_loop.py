"""The loop engine: each head's copy trains on its own loss, one after another per batch.

A copy whose loss becomes non-finite stops training and is reported, not raised: its head
gets weight 0 in the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from blendopt._distributed import all_reduce_sum_, average_gradients_, collective_device, world_size
from blendopt._measure import check_heads
from blendopt.retrain._clone import HeadCopy
from blendopt.retrain._config import CopyTraining
from blendopt.retrain._driver import TrainReport, drive, host_reads_free


class _Divergence:
    """Non-finite losses of the copies, without a host-device sync per step.

    With ``eager``, where the host reads a loss for free (the CPU, one process), a copy stops
    at its first non-finite loss, before its backward. Elsewhere each copy counts its
    non-finite losses (and the first step) on the loss's device; :meth:`read` syncs once (one
    reduction over all ranks, so all agree) and stops the copies that diverged. Until then a
    diverged copy keeps stepping; its result is discarded either way.
    """

    def __init__(self, eager: bool = True) -> None:
        self.eager = eager
        self.counts: dict[str, torch.Tensor] = {}
        self.first: dict[str, torch.Tensor] = {}
        self.steps: dict[str, int] = {}
        self.found: dict[str, str] = {}

    def check(self, head: str, loss: torch.Tensor, *, step: int, epoch: int) -> bool:
        """Record ``loss``; False when it is known now to be non-finite (CPU, one process)."""
        detached = loss.detach()
        self.steps[head] = self.steps.get(head, 0) + 1
        if self.eager and host_reads_free(detached.device) and world_size() == 1:
            if bool(torch.isfinite(detached).all()):
                return True
            self.found[head] = (
                f"head {head!r}: its copy diverged (loss {float(detached.float().mean())} at "
                f"step {step}, epoch {epoch}) and stopped training; weight 0"
            )
            return False
        bad = ~torch.isfinite(detached).all()
        if head not in self.counts:
            self.counts[head] = torch.zeros((), dtype=torch.int64, device=detached.device)
            self.first[head] = torch.full((), -1, dtype=torch.int64, device=detached.device)
        self.first[head].masked_fill_(bad & (self.counts[head] == 0), step)
        self.counts[head] += bad
        return True

    def read(self, epoch: int) -> list[str]:
        """Sync the device counters; return the heads newly found diverged."""
        heads = [h for h in self.counts if h not in self.found]
        if not heads:
            return []
        on = self.counts[heads[0]].device
        packed = torch.stack(
            [self.counts[h].to(on) for h in heads]
            + [self.first[h].to(on).clamp(min=0) for h in heads]
        )
        if world_size() > 1:  # ranks agree: any rank's non-finite loss diverges the copy
            packed = all_reduce_sum_(packed.to(collective_device(), torch.float64))
        values = packed.tolist()  # the one host-device sync
        new = []
        for i, h in enumerate(heads):
            count = int(values[i])
            if count > 0:
                first = (
                    f", the first at step {int(values[len(heads) + i])}"
                    if world_size() == 1
                    else " over all ranks"
                )
                self.found[h] = (
                    f"head {h!r}: its copy diverged ({count} non-finite losses in "
                    f"{self.steps.get(h, 0)} steps{first}; found at the end of epoch {epoch}) "
                    "and stopped training; weight 0"
                )
                new.append(h)
        return new


def prepare_copy(copy_: HeadCopy) -> HeadCopy:
    """Put ``copy_`` in train mode and hook its optimizer.

    The hooks count the copy's optimizer steps (a per-step scheduler steps once per optimizer
    step, also when ``train_step`` accumulates gradients) and, under ``torch.distributed``,
    average the gradients over the ranks before each step, as DDP would.
    """
    copy_.model.train()
    params = [p for p in copy_.model.parameters() if p.requires_grad]

    def count(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        copy_.optimizer_steps += 1

    def average(optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        average_gradients_(params)

    copy_.optimizer.register_step_post_hook(count)
    if world_size() > 1:
        copy_.optimizer.register_step_pre_hook(average)
    return copy_


class LoopEngine:
    """One :class:`HeadCopy` per head, each stepped on its own head's loss (see :func:`drive`)."""

    name = "loop"

    def __init__(self, copies: Sequence[HeadCopy], training: CopyTraining) -> None:
        self.copies = list(copies)
        self.heads = [c.head for c in self.copies]
        self.active = [prepare_copy(c) for c in self.copies]
        self.training_ = training
        self.monitor = _Divergence(training.eager_checks)

    def training(self) -> bool:
        return bool(self.active)

    def _step_copy(self, c: HeadCopy, batch: Any, *, step: int, epoch: int) -> bool:
        """One training step of one copy; False when the copy diverged (stop training it)."""
        train_step, monitor = self.training_.train_step, self.monitor
        with c.stream.active():
            if train_step is not None:
                loss = train_step(c.model, c.optimizer, batch, c.head)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TypeError(
                        "`train_step(model, optimizer, batch, head)` should return the head's "
                        f"loss as a scalar tensor. Found {type(loss).__name__} for head "
                        f"{c.head!r}."
                    )
                return monitor.check(c.head, loss, step=step, epoch=epoch)
            losses = self.training_.loss_fn(c.model, batch)
            check_heads("loss_fn", losses, self.training_.heads)
            loss = losses[c.head]
            if not monitor.check(c.head, loss, step=step, epoch=epoch):
                return False
            c.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            c.optimizer.step()
        return True

    def step(self, batch: Any, *, step: int, epoch: int) -> None:
        for c in list(self.active):
            before = c.optimizer_steps
            if not self._step_copy(c, batch, step=step, epoch=epoch):
                self.active.remove(c)
                continue
            if c.scheduler is not None and self.training_.plan.interval == "step":
                for _ in range(c.optimizer_steps - before):
                    c.scheduler.step()

    def end_epoch(self, epoch: int) -> None:
        for c in self.active:
            if c.scheduler is not None and self.training_.plan.interval == "epoch":
                c.scheduler.step()
        diverged = set(self.monitor.read(epoch))
        self.active = [c for c in self.active if c.head not in diverged]

    def finish(self) -> TrainReport:
        found = self.monitor.found
        return TrainReport(diverged={h: found[h] for h in self.heads if h in found})


def train_copies(copies: Sequence[HeadCopy], training: CopyTraining) -> TrainReport:
    """Train each copy on its own head's loss, all fed in lockstep from one pass over
    ``training.train`` (see :func:`blendopt.retrain.make_copies`).

    A copy whose loss becomes non-finite stops training and is listed in
    ``TrainReport.diverged`` (the others go on). Schedulers step per ``training.plan.interval``.

    Raises:
        ValueError: a pass over ``train`` yielded no non-empty batch.
        TypeError: ``train_step`` returned no scalar tensor.
    """
    return drive(LoopEngine(copies, training), training)
