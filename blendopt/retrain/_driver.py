"""The one copy-training driver of Algorithm 1, shared by the loop and the vmap engine.

The driver owns the per-step skeleton (epochs, batches, the per-epoch fraction, empty-batch
skipping, epoch-aware samplers, progress); an engine supplies the training step of its copies
(forward, backward, optimizer step, learning-rate replay) and the divergence check.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from blendopt._distributed import reduced_floats, world_size
from blendopt._measure import is_empty_batch
from blendopt.retrain._config import CopyTraining

logger = logging.getLogger("blendopt")


@dataclass
class TrainReport:
    """What happened while training the copies.

    Attributes:
        steps: batches trained on (empty batches excluded).
        epochs: passes over the loader started.
        empty_batches: empty batches skipped.
        diverged: head -> why its copy stopped (e.g. ``"loss inf at step 3, epoch 0"``);
            weight 0 for those heads.
        notes: other events worth recording in the estimate's notes (e.g. steps the vmap
            engine skipped for a copy).
    """

    steps: int = 0
    epochs: int = 0
    empty_batches: int = 0
    diverged: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def merge(self, other: TrainReport) -> None:
        """Add ``other`` (another group of copies, trained on the same data) to this report."""
        self.steps = max(self.steps, other.steps)
        self.epochs = max(self.epochs, other.epochs)
        self.empty_batches += other.empty_batches
        self.diverged.update(other.diverged)
        self.notes.extend(other.notes)


class CopyEngine(Protocol):
    """How a group of copies trains; driven by :func:`drive`."""

    name: str
    heads: list[str]

    def training(self) -> bool:
        """Whether any copy still trains (read on the host; no device sync)."""

    def step(self, batch: Any, *, step: int, epoch: int) -> None:
        """Train every copy still training on ``batch`` (and step per-step schedulers)."""

    def end_epoch(self, epoch: int) -> None:
        """After a pass: step per-epoch schedulers, check divergence (one sync at most)."""

    def finish(self) -> TrainReport:
        """After training (also on errors): the diverged copies and notes."""


def host_reads_free(device: torch.device) -> bool:
    """Whether reading a device flag on the host costs no synchronization (the CPU)."""
    return device.type == "cpu"


def _skip(batch: Any) -> bool:
    # Under torch.distributed every rank must take the same steps (gradient averaging is a
    # collective), so a batch empty on any rank is skipped on all of them.
    empty = is_empty_batch(batch)
    if world_size() == 1:
        return empty
    return reduced_floats([float(empty)])[0] > 0


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional; logging still reports progress
        return None
    return tqdm(total=total or None, desc=desc, leave=False)


def _one_pass(
    engine: CopyEngine, training: CopyTraining, report: TrainReport, epoch: int, bar: Any
) -> int:
    """One pass over ``training.train`` (at most ``plan.per_epoch`` non-empty batches, until
    ``plan.steps``); returns the batches trained on."""
    plan, seen = training.plan, 0
    for batch in training.train:
        if plan.per_epoch is not None and seen >= plan.per_epoch:
            break
        if plan.steps is not None and report.steps >= plan.steps:
            break
        if _skip(batch):
            report.empty_batches += 1
            continue
        engine.step(batch, step=report.steps, epoch=epoch)
        seen += 1
        report.steps += 1
        if bar is not None:
            bar.update(1)
        if not engine.training():
            break
    return seen


def drive(engine: CopyEngine, training: CopyTraining) -> TrainReport:
    """Train ``engine``'s copies for ``training.plan``, fed in lockstep from ``training.train``.

    Empty batches are skipped and counted. Epoch-aware samplers get
    ``set_epoch(plan.sampler_epoch(e))`` at each pass (the caller restores them). Training
    stops early once no copy trains any more (every copy diverged).

    Returns:
        A :class:`TrainReport` (with the engine's diverged copies and notes).

    Raises:
        ValueError: a pass over ``train`` yielded no non-empty batch.
    """
    plan = training.plan
    report = TrainReport()
    desc = f"G-Blend estimate ({engine.name}) {engine.heads}"
    bar = _progress(plan.total(), desc, training.progress)
    start = time.perf_counter()
    epoch = 0
    try:
        while engine.training() and (plan.epochs is None or epoch < plan.epochs):
            if training.samplers is not None:
                training.samplers.set_epoch(plan.sampler_epoch(epoch))
            report.epochs += 1
            if _one_pass(engine, training, report, epoch, bar) == 0 and engine.training():
                raise ValueError(
                    f"Parameter `train` yielded no non-empty batch in a pass "
                    f"({report.empty_batches} empty batches skipped). Pass a non-empty loader."
                )
            engine.end_epoch(epoch)
            epoch += 1
            logger.info(
                "%s: epoch %d done (%d steps, %d empty batches skipped, %.1f s)",
                desc,
                epoch,
                report.steps,
                report.empty_batches,
                time.perf_counter() - start,
            )
            if plan.steps is not None and report.steps >= plan.steps:
                break
    finally:
        if bar is not None:
            bar.close()
        done = engine.finish()
    report.diverged, report.notes = done.diverged, done.notes
    return report
