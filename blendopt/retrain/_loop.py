"""Training the copies of Algorithm 1: :func:`drive`, the driver both engines share, and the
loop engine (each head's copy trains on its own loss in turn per batch)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from blendopt._distributed import average_gradients_, reduced_floats, world_size
from blendopt._finite import NonFiniteRecord
from blendopt._measure import is_empty_batch
from blendopt._weighting import check_keys
from blendopt.retrain._clone import HeadCopy
from blendopt.retrain._config import CopyTraining

logger = logging.getLogger("blendopt")


@dataclass
class TrainReport:
    """What training the copies gave: head -> trained copy (``models``), batches trained on
    (``steps``), passes started (``epochs``), ``empty_batches`` skipped, head -> why its copy
    stopped (``diverged``) and other events for the estimate's ``notes``."""

    models: dict[str, nn.Module] = field(default_factory=dict)
    steps: int = 0
    epochs: int = 0
    empty_batches: int = 0
    diverged: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def merge(self, other: TrainReport) -> None:
        """Add ``other`` (another group of copies, same data) to this report, not its models."""
        self.steps = max(self.steps, other.steps)
        self.epochs = max(self.epochs, other.epochs)
        self.empty_batches += other.empty_batches
        self.diverged.update(other.diverged)
        self.notes.extend(other.notes)


class CopyEngine(Protocol):
    """Copies :func:`drive` trains: ``step`` on a batch, ``end_epoch`` (one sync at most),
    ``finish`` completes ``report`` (also on errors)."""

    name: str
    heads: list[str]
    report: TrainReport

    def training(self) -> bool: ...
    def step(self, batch: Any, *, step: int, epoch: int) -> None: ...
    def end_epoch(self, epoch: int) -> None: ...
    def finish(self) -> None: ...


def host_reads_free(device: torch.device) -> bool:
    """Whether reading a device flag on the host costs no synchronization (the CPU)."""
    return device.type == "cpu"


def step_schedulers(schedulers: Sequence[Any], training: CopyTraining, when: str) -> None:
    """Step each of ``schedulers`` (``None``: none) if the run steps per ``when``."""
    if training.plan.interval == when:
        for scheduler in schedulers:
            if scheduler is not None:
                scheduler.step()


def _skip(batch: Any) -> bool:
    # Every rank must take the same steps: a batch empty on any rank is skipped on all.
    empty = is_empty_batch(batch)
    return empty if world_size() == 1 else reduced_floats([float(empty)])[0] > 0


def _progress(total: int, desc: str, enabled: bool) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional; logging still reports progress
        return None
    return tqdm(total=total or None, desc=desc, leave=False) if enabled else None


def _one_pass(engine: CopyEngine, training: CopyTraining, bar: Any) -> int:
    """One pass over the loader (at most ``per_epoch`` batches, until ``steps``): batches done."""
    plan, report, seen = training.plan, engine.report, 0
    for batch in training.train:
        if (plan.per_epoch is not None and seen >= plan.per_epoch) or (
            plan.steps is not None and report.steps >= plan.steps
        ):
            break
        if _skip(batch):
            report.empty_batches += 1
            continue
        engine.step(batch, step=report.steps, epoch=report.epochs - 1)
        seen += 1
        report.steps += 1
        if bar is not None:
            bar.update(1)
        if not engine.training():
            break
    return seen


def drive(engine: CopyEngine, training: CopyTraining) -> Any:
    """Train ``engine``'s copies for ``training.plan``, fed in lockstep from ``training.train``
    (empty batches skipped and counted, samplers set per pass, until no copy trains); return
    ``engine.report``.

    Raises:
        ValueError: a pass over ``train`` yielded no non-empty batch.
    """
    plan, report = training.plan, engine.report
    desc = f"G-Blend estimate ({engine.name}) {engine.heads}"
    bar = _progress(plan.total(), desc, training.progress)
    start = time.perf_counter()
    try:
        while engine.training() and (plan.epochs is None or report.epochs < plan.epochs):
            if training.samplers is not None:
                training.samplers.set_epoch(plan.sampler_epoch(report.epochs))
            report.epochs += 1
            if _one_pass(engine, training, bar) == 0 and engine.training():
                raise ValueError(
                    f"Parameter `train` yielded no non-empty batch in a pass "
                    f"({report.empty_batches} empty batches skipped). Pass a non-empty loader."
                )
            engine.end_epoch(report.epochs - 1)
            logger.info(
                "%s: epoch %d done (%d steps, %d empty batches skipped, %.1f s)",
                desc,
                report.epochs,
                report.steps,
                report.empty_batches,
                time.perf_counter() - start,
            )
            if plan.steps is not None and report.steps >= plan.steps:
                break
    finally:
        if bar is not None:
            bar.close()
        engine.finish()
    return report


class LoopEngine:
    """One :class:`HeadCopy` per head stepped on its own loss; optimizer hooks count its steps
    (for per-step schedulers, also when ``train_step`` accumulates) and average its gradients
    over ranks, as DDP would. With ``eager_checks`` where the host reads a loss for free (the
    CPU, one process) a diverging copy stops before its backward; elsewhere non-finite losses
    are counted on the device and read once per epoch (one reduce over the ranks)."""

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
        self.active, self.eager = list(self.copies), training.eager_checks
        self.record = NonFiniteRecord(len(self.heads))
        self.steps = dict.fromkeys(self.heads, 0)
        self.found: dict[str, str] = {}  # head -> why its copy diverged
        self.report = TrainReport(models={c.head: c.model for c in self.copies})

    def training(self) -> bool:
        return bool(self.active)

    def _check(self, head: str, loss: torch.Tensor, *, step: int, epoch: int) -> bool:
        """Record ``loss``; False when it is known now to be non-finite."""
        detached = loss.detach()
        self.steps[head] += 1
        if self.eager and host_reads_free(detached.device) and world_size() == 1:
            if not bool(torch.isfinite(detached).all()):
                loss_value = float(detached.float().mean())
                self.found[head] = f"loss {loss_value} at step {step}, epoch {epoch}"
            return head not in self.found
        self.record.record(torch.isfinite(detached).all(), step, slot=self.heads.index(head))
        return True

    def _step_copy(self, c: HeadCopy, batch: Any, *, step: int, epoch: int) -> bool:
        """One training step of one copy; False when the copy diverged (stop training it)."""
        train_step = self.training_.train_step
        with c.stream.active():
            if train_step is not None:
                loss = train_step(c.model, c.optimizer, batch, c.head)
                if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                    raise TypeError(
                        "`train_step(model, optimizer, batch, head)` should return the head's "
                        f"loss as a scalar tensor. Found {type(loss).__name__} for head "
                        f"{c.head!r}."
                    )
                return self._check(c.head, loss, step=step, epoch=epoch)
            losses = self.training_.loss_fn(c.model, batch)
            check_keys(losses, self.training_.heads, "loss_fn", returned=True)
            if not self._check(c.head, losses[c.head], step=step, epoch=epoch):
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
            else:
                step_schedulers(
                    [c.scheduler] * (c.optimizer_steps - before), self.training_, "step"
                )

    def end_epoch(self, epoch: int) -> None:
        step_schedulers([c.scheduler for c in self.active], self.training_, "epoch")
        if self.record.pending and any(h not in self.found for h in self.heads):
            counts = self.record.read(across_ranks=world_size() > 1)  # the one host-device sync
            for i, h in enumerate(self.heads):
                if counts.count[i] > 0 and h not in self.found:
                    first = f", the first at step {counts.first[i]}" if world_size() == 1 else ""
                    self.found[h] = (
                        f"{counts.count[i]} non-finite losses in {self.steps[h]} steps"
                        f"{first or ' over all ranks'}; found at the end of epoch {epoch}"
                    )
        self.active = [c for c in self.active if c.head not in self.found]

    def finish(self) -> None:
        self.report.diverged = {h: self.found[h] for h in self.heads if h in self.found}


def train_copies(copies: Sequence[HeadCopy], training: CopyTraining) -> TrainReport:
    """Train each copy on its own head's loss, fed in lockstep from ``training.train``; a copy
    whose loss becomes non-finite stops (``TrainReport.diverged``).

    Raises:
        ValueError: a pass over ``train`` yielded no non-empty batch.
        TypeError: ``train_step`` returned no scalar tensor.
    """
    return drive(LoopEngine(copies, training), training)
