"""The loop engine: each head's copy trains on its own loss, one after another per batch.

A copy whose loss becomes non-finite stops training and is reported, not raised: its head
gets weight 0 in the estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from blendopt._distributed import average_gradients_, world_size
from blendopt._finite import NonFiniteRecord
from blendopt._weighting import check_keys
from blendopt.retrain._clone import HeadCopy
from blendopt.retrain._config import CopyTraining
from blendopt.retrain._driver import TrainReport, drive, host_reads_free


class _Divergence:
    """Non-finite losses of the copies, without a host-device sync per step.

    With ``eager``, where the host reads a loss for free (the CPU, one process), a copy stops
    at its first non-finite loss, before its backward. Elsewhere each copy's non-finite losses
    are counted on the device (a :class:`NonFiniteRecord`, one slot per copy); :meth:`read`
    syncs once (one reduction over all ranks, so all agree) and stops the copies that
    diverged. Until then a diverged copy keeps stepping; its result is discarded either way.
    """

    def __init__(self, heads: Sequence[str], eager: bool = True) -> None:
        self.heads, self.eager = list(heads), eager
        self.record = NonFiniteRecord(len(self.heads))
        self.steps = dict.fromkeys(self.heads, 0)
        self.found: dict[str, str] = {}  # head -> why its copy diverged

    def check(self, head: str, loss: torch.Tensor, *, step: int, epoch: int) -> bool:
        """Record ``loss``; False when it is known now to be non-finite (CPU, one process)."""
        detached = loss.detach()
        self.steps[head] += 1
        if self.eager and host_reads_free(detached.device) and world_size() == 1:
            if bool(torch.isfinite(detached).all()):
                return True
            loss_value = float(detached.float().mean())
            self.found[head] = f"loss {loss_value} at step {step}, epoch {epoch}"
            return False
        self.record.record(torch.isfinite(detached).all(), step, slot=self.heads.index(head))
        return True

    def read(self, epoch: int) -> list[str]:
        """Sync the device record; return the heads newly found diverged."""
        if not self.record.pending or all(h in self.found for h in self.heads):
            return []
        counts = self.record.read(across_ranks=world_size() > 1)  # the one host-device sync
        new = []
        for i, h in enumerate(self.heads):
            if counts.count[i] > 0 and h not in self.found:
                first = (
                    f", the first at step {counts.first[i]}"
                    if world_size() == 1
                    else " over all ranks"
                )
                self.found[h] = (
                    f"{counts.count[i]} non-finite losses in {self.steps[h]} steps{first}; "
                    f"found at the end of epoch {epoch}"
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
        self.monitor = _Divergence(self.heads, training.eager_checks)

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
            check_keys(losses, self.training_.heads, "loss_fn", returned=True)
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
