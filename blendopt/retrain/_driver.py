"""The one copy-training driver of Algorithm 1: the per-step skeleton (epochs, batches, fraction,
empty batches, samplers, progress) around an engine's step and divergence check."""

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
        notes: other events for the estimate's notes (e.g. steps the vmap engine skipped).
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
    """A group of copies :func:`drive` trains: ``step`` trains every copy still training on a
    batch, ``end_epoch`` steps per-epoch schedulers and checks divergence (one sync at most),
    ``finish`` reports the diverged copies (also on errors)."""

    name: str
    heads: list[str]

    def training(self) -> bool: ...
    def step(self, batch: Any, *, step: int, epoch: int) -> None: ...
    def end_epoch(self, epoch: int) -> None: ...
    def finish(self) -> TrainReport: ...


def host_reads_free(device: torch.device) -> bool:
    """Whether reading a device flag on the host costs no synchronization (the CPU)."""
    return device.type == "cpu"


def _skip(batch: Any) -> bool:
    # Every rank must take the same steps: a batch empty on any rank is skipped on all.
    empty = is_empty_batch(batch)
    return empty if world_size() == 1 else reduced_floats([float(empty)])[0] > 0


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if enabled:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is optional; logging still reports progress
            return None
        return tqdm(total=total or None, desc=desc, leave=False)
    return None


def _one_pass(engine: CopyEngine, training: CopyTraining, report: TrainReport, bar: Any) -> int:
    """One pass over the loader (at most ``per_epoch`` batches, until ``steps``): batches done."""
    plan, seen = training.plan, 0
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


def drive(engine: CopyEngine, training: CopyTraining) -> TrainReport:
    """Train ``engine``'s copies for ``training.plan``, fed in lockstep from ``training.train``.

    Empty batches are skipped and counted; epoch-aware samplers get
    ``set_epoch(plan.sampler_epoch(e))`` at each pass; training stops once no copy trains.

    Raises:
        ValueError: a pass over ``train`` yielded no non-empty batch.
    """
    plan, report = training.plan, TrainReport()
    desc = f"G-Blend estimate ({engine.name}) {engine.heads}"
    bar = _progress(plan.total(), desc, training.progress)
    start = time.perf_counter()
    try:
        while engine.training() and (plan.epochs is None or report.epochs < plan.epochs):
            if training.samplers is not None:
                training.samplers.set_epoch(plan.sampler_epoch(report.epochs))
            report.epochs += 1
            if _one_pass(engine, training, report, bar) == 0 and engine.training():
                raise ValueError(
                    f"Parameter `train` yielded no non-empty batch in a pass "
                    f"({report.empty_batches} empty batches skipped). Pass a non-empty loader."
                )
            engine.end_epoch(report.epochs - 1)
            logger.info(
                "%s: epoch %d done (%d steps, %d empty batches skipped, %.1f s)", desc,
                report.epochs, report.steps, report.empty_batches, time.perf_counter() - start,
            )  # fmt: skip
            if plan.steps is not None and report.steps >= plan.steps:
                break
    finally:
        if bar is not None:
            bar.close()
        done = engine.finish()
    report.diverged, report.notes = done.diverged, done.notes
    return report
