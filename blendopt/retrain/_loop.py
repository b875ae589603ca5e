"""The loop engine: each head's copy trains on its own loss, one after another per batch; a copy
whose loss becomes non-finite stops (weight 0 in the estimate), it does not raise."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from blendopt._distributed import average_gradients_, world_size
from blendopt._finite import NonFiniteRecord
from blendopt._measure import check_heads
from blendopt.retrain._clone import HeadCopy
from blendopt.retrain._config import CopyTraining
from blendopt.retrain._driver import TrainReport, drive, host_reads_free


class _Divergence:
    """The copies' non-finite losses. With ``eager`` where the host reads a loss for free (the
    CPU, one process) a copy stops before its backward; elsewhere they are counted on the device
    and :meth:`read` syncs once per epoch (one reduce over the ranks)."""

    def __init__(self, heads: Sequence[str], eager: bool = True) -> None:
        self.heads, self.eager = list(heads), eager
        self.record = NonFiniteRecord(len(self.heads))
        self.steps = dict.fromkeys(self.heads, 0)
        self.found: dict[str, str] = {}  # head -> why its copy diverged

    def check(self, head: str, loss: torch.Tensor, *, step: int, epoch: int) -> bool:
        """Record ``loss``; False when it is known now to be non-finite."""
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
        new = [h for i, h in enumerate(self.heads) if counts.count[i] > 0 and h not in self.found]
        for h in new:
            i = self.heads.index(h)
            first = (
                f", the first at step {counts.first[i]}" if world_size() == 1 else " over all ranks"
            )
            self.found[h] = (
                f"{counts.count[i]} non-finite losses in {self.steps[h]} steps{first}; "
                f"found at the end of epoch {epoch}"
            )
        return new


class LoopEngine:
    """One :class:`HeadCopy` per head, each stepped on its own head's loss (see :func:`drive`).

    Optimizer hooks count each copy's steps (a per-step scheduler steps once per optimizer
    step, also when ``train_step`` accumulates) and average gradients over ranks, as DDP would.
    """

    name = "loop"

    def __init__(self, copies: Sequence[HeadCopy], training: CopyTraining) -> None:
        self.copies, self.training_ = list(copies), training
        self.heads = [c.head for c in self.copies]
        for c in self.copies:
            c.model.train()
            params = [p for p in c.model.parameters() if p.requires_grad]
            c.optimizer.register_step_post_hook(
                lambda *_, c=c: setattr(c, "optimizer_steps", c.optimizer_steps + 1)
            )
            if world_size() > 1:
                c.optimizer.register_step_pre_hook(lambda *_, p=params: average_gradients_(p))
        self.active = list(self.copies)
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
            check_heads("loss_fn", losses, self.training_.heads)
            if not monitor.check(c.head, losses[c.head], step=step, epoch=epoch):
                return False
            c.optimizer.zero_grad(set_to_none=True)
            losses[c.head].backward()
            c.optimizer.step()
        return True

    def step(self, batch: Any, *, step: int, epoch: int) -> None:
        for c in list(self.active):
            before = c.optimizer_steps
            if not self._step_copy(c, batch, step=step, epoch=epoch):
                self.active.remove(c)
            elif c.scheduler is not None and self.training_.plan.interval == "step":
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
