"""Training the per-head copies of Algorithm 1 (GB-Estimate), apart from measuring them.

Each head's copy of the model trains on that head's loss alone; all copies are fed in
lockstep from one pass over the training loader. A copy whose loss becomes non-finite stops
training and is reported, not raised: its head gets weight 0 in the estimate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from blendopt._distributed import all_reduce_sum_, average_gradients_, collective_device, world_size
from blendopt._measure import check_heads, is_empty_batch
from blendopt._replay import Interval
from blendopt._rng import RngStream, SamplerEpochs, derive_seed

logger = logging.getLogger("blendopt")

#: ``loss_fn(model, batch) -> {head: scalar loss}``.
LossFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
#: ``train_step(model, optimizer, batch, head) -> loss``: one training step of a copy (forward,
#: backward, optional clipping, ``optimizer.step()`` when due); returns the head's loss.
TrainStep = Callable[[nn.Module, Optimizer, Any, str], torch.Tensor]


@dataclass
class HeadCopy:
    """One head's copy of the model, with what trains it.

    Attributes:
        head: the head whose loss trains the copy.
        model: the copy (starts at the run's checkpoint).
        optimizer: a fresh optimizer over ``model``'s parameters.
        stream: the copy's own random stream (dropout), so grouping copies changes nothing.
        scheduler: the copy's learning-rate scheduler (see :mod:`blendopt._replay`), or None.
    """

    head: str
    model: nn.Module
    optimizer: Optimizer
    stream: RngStream
    scheduler: LRScheduler | None = None
    optimizer_steps: int = 0


@dataclass(frozen=True)
class TrainPlan:
    """How long and how the copies train.

    Attributes:
        epochs: passes over the loader (or ``None`` with ``steps``).
        steps: batches in total, running on past epoch ends (or ``None`` with ``epochs``).
        per_epoch: at most this many non-empty batches per pass (``fraction``), or ``None``.
        interval: when the copies' schedulers step: ``"step"`` after every optimizer step,
            ``"epoch"`` after every pass; ``None`` without schedulers.
        seed: numbers the passes for epoch-aware samplers (``set_epoch``).
    """

    epochs: int | None
    steps: int | None
    per_epoch: int | None = None
    interval: Interval | None = None
    seed: int = 0

    def total(self) -> int:
        """Planned batches, 0 when unknown (a loader without a length)."""
        if self.steps is not None:
            return self.steps
        if self.per_epoch is not None and self.epochs is not None:
            return self.epochs * self.per_epoch
        return 0

    def sampler_epoch(self, epoch: int) -> int:
        """The epoch number passed to ``set_epoch`` for the copies' pass ``epoch``.

        Derived from the estimate's seed, so each estimate draws its own orders, every rank
        the same ones, and a resumed run the same ones as the uninterrupted run.
        """
        return derive_seed(self.seed, 4, epoch) % 2**31


@dataclass
class TrainReport:
    """What happened while training the copies.

    Attributes:
        steps: batches trained on (empty batches excluded).
        epochs: passes over the loader started.
        empty_batches: empty batches skipped.
        diverged: head -> why its copy stopped (non-finite loss); weight 0 for those heads.
    """

    steps: int = 0
    epochs: int = 0
    empty_batches: int = 0
    diverged: dict[str, str] = field(default_factory=dict)


#: Check a CPU loss at once (free on the CPU). Tests turn it off to run the device-side path.
EAGER_CPU_CHECK = True


class _Divergence:
    """Non-finite losses of the copies, without a host-device sync per step.

    On the CPU in one process a check is free: a copy stops at its first non-finite loss, before
    its backward. Elsewhere each copy counts its non-finite losses (and the first step) on the
    loss's device; :meth:`read` syncs once (one reduction over all ranks, so all agree) and
    stops the copies that diverged. Until then a diverged copy keeps stepping; its result is
    discarded either way.
    """

    def __init__(self) -> None:
        self.counts: dict[str, torch.Tensor] = {}
        self.first: dict[str, torch.Tensor] = {}
        self.steps: dict[str, int] = {}
        self.found: dict[str, str] = {}

    def check(self, head: str, loss: torch.Tensor, *, step: int, epoch: int) -> bool:
        """Record ``loss``; False when it is known now to be non-finite (CPU, one process)."""
        detached = loss.detach()
        self.steps[head] = self.steps.get(head, 0) + 1
        if EAGER_CPU_CHECK and detached.device.type == "cpu" and world_size() == 1:
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


def _skip(batch: Any) -> bool:
    # Under torch.distributed every rank must take the same steps (gradient averaging is a
    # collective), so a batch empty on any rank is skipped on all of them.
    empty = is_empty_batch(batch)
    if world_size() == 1:
        return empty
    flag = torch.tensor([float(empty)], device=collective_device())
    all_reduce_sum_(flag)
    return bool(flag.item() > 0)


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional; logging still reports progress
        return None
    return tqdm(total=total, desc=desc, leave=False)


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


def _step(
    copy_: HeadCopy,
    batch: Any,
    loss_fn: LossFn,
    heads: Sequence[str],
    train_step: TrainStep | None,
    monitor: _Divergence,
    *,
    step: int,
    epoch: int,
) -> bool:
    """One training step of one copy; False when the copy diverged (stop training it)."""
    with copy_.stream.active():
        if train_step is not None:
            loss = train_step(copy_.model, copy_.optimizer, batch, copy_.head)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise TypeError(
                    "`train_step(model, optimizer, batch, head)` should return the head's loss as "
                    f"a scalar tensor. Found {type(loss).__name__} for head {copy_.head!r}."
                )
            return monitor.check(copy_.head, loss, step=step, epoch=epoch)
        losses = loss_fn(copy_.model, batch)
        check_heads("loss_fn", losses, heads)
        loss = losses[copy_.head]
        if not monitor.check(copy_.head, loss, step=step, epoch=epoch):
            return False
        copy_.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        copy_.optimizer.step()
    return True


def train_copies(
    copies: Sequence[HeadCopy],
    loss_fn: LossFn,
    train: Iterable[Any],
    heads: Sequence[str],
    plan: TrainPlan,
    *,
    train_step: TrainStep | None = None,
    samplers: SamplerEpochs | None = None,
    progress: bool = False,
) -> TrainReport:
    """Train each copy on its own head's loss, all fed in lockstep from one pass over ``train``.

    Empty batches are skipped and counted. A copy whose loss becomes non-finite stops training
    and is listed in ``TrainReport.diverged`` (the others go on). Schedulers step per
    ``plan.interval``; epoch-aware samplers get ``set_epoch(plan.sampler_epoch(e))`` at each
    pass (the caller restores them).

    Args:
        copies: the copies (see :func:`prepare_copy`), each with its head.
        loss_fn: ``loss_fn(model, batch) -> {head: loss}`` (unused with ``train_step``).
        train: the training loader T, iterated once per epoch.
        heads: every head (``loss_fn`` must return exactly these).
        plan: how long and how to train.
        train_step: replaces the default step (loss, backward, ``optimizer.step()``).
        samplers: the loader's epoch-aware samplers.
        progress: show a tqdm bar.

    Returns:
        A :class:`TrainReport`.

    Raises:
        ValueError: a pass over ``train`` yielded no non-empty batch.
    """
    active = [prepare_copy(c) for c in copies]
    report = TrainReport()
    monitor = _Divergence()
    bar = _progress(plan.total(), f"G-Blend estimate {[c.head for c in copies]}", progress)
    start = time.perf_counter()
    epoch = 0
    while active and (plan.epochs is None or epoch < plan.epochs):
        if samplers is not None:
            samplers.set_epoch(plan.sampler_epoch(epoch))
        report.epochs += 1
        seen = 0
        for batch in train:
            if plan.per_epoch is not None and seen >= plan.per_epoch:
                break
            if plan.steps is not None and report.steps >= plan.steps:
                break
            if _skip(batch):
                report.empty_batches += 1
                continue
            for c in list(active):
                before = c.optimizer_steps
                if not _step(
                    c, batch, loss_fn, heads, train_step, monitor, step=report.steps, epoch=epoch
                ):
                    active.remove(c)
                    continue
                if c.scheduler is not None and plan.interval == "step":
                    for _ in range(c.optimizer_steps - before):
                        c.scheduler.step()
            seen += 1
            report.steps += 1
            if bar is not None:
                bar.update(1)
            if not active:
                break
        if seen == 0 and active:
            raise ValueError(
                f"Parameter `train` yielded no non-empty batch in a pass ({report.empty_batches} "
                "empty batches skipped). Pass a non-empty loader."
            )
        for c in active:
            if c.scheduler is not None and plan.interval == "epoch":
                c.scheduler.step()
        diverged = set(monitor.read(epoch))
        active = [c for c in active if c.head not in diverged]
        epoch += 1
        logger.info(
            "G-Blend estimate: heads %s, epoch %d done (%d steps, %d empty batches skipped, "
            "%.1f s)",
            [c.head for c in copies],
            epoch,
            report.steps,
            report.empty_batches,
            time.perf_counter() - start,
        )
        if plan.steps is not None and report.steps >= plan.steps:
            break
    if bar is not None:
        bar.close()
    report.diverged = {c.head: monitor.found[c.head] for c in copies if c.head in monitor.found}
    return report
