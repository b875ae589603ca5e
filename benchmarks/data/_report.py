"""Skipped-sample records, the collate function that drops them, and the epoch report.

A dataset never raises on a bad media file inside a DataLoader worker: it returns a
:class:`SkippedSample` sentinel that names the file and the reason. :func:`collate_clips`
drops the sentinels, collates the rest and hands the records to the main process inside
the batch (``batch.skipped``), where a :class:`SkipReport` counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import default_collate

__all__ = ["ClipBatch", "MediaError", "SkipReport", "SkippedSample", "collate_clips"]


class MediaError(RuntimeError):
    """A media file cannot give the requested sample (missing, corrupt, silent, no stream)."""


@dataclass(frozen=True)
class SkippedSample:
    """Sentinel a dataset returns instead of a sample whose file could not be used.

    Attributes:
        index: the dataset index that was asked for.
        path: the media file.
        reason: a short human-readable reason (``"file not found"``, ``"silent audio"``, ...).
        fields: how many fields the sample would have had (2 in train mode, 3 in test mode),
            so that a batch whose samples were all skipped keeps its shape.
    """

    index: int
    path: str
    reason: str
    fields: int = 2


class ClipBatch(tuple):
    """A collated batch: a plain tuple ``(inputs, target)`` or ``(inputs, target, video_index)``.

    It unpacks like the tuple :func:`torch.utils.data.default_collate` would give and carries
    the samples dropped from it in :attr:`skipped` (a tuple of :class:`SkippedSample`). The
    attribute survives worker-to-main pickling and ``pin_memory=True``.
    """

    skipped: tuple[SkippedSample, ...]

    def __new__(cls, items: Iterable[Any], skipped: Iterable[SkippedSample] = ()) -> ClipBatch:
        self = super().__new__(cls, items)
        self.skipped = tuple(skipped)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (ClipBatch, (tuple(self), self.skipped))

    @property
    def size(self) -> int:
        """Number of samples in the batch (0 when every sample of it was skipped)."""
        if len(self) < 2:
            return 0
        target = self[1]
        return int(target.shape[0]) if isinstance(target, torch.Tensor) else len(target)

    def pin_memory(self) -> ClipBatch:
        """Pin every tensor; called by the DataLoader's pin-memory thread."""
        return ClipBatch((_pin(x) for x in self), self.skipped)

    def __repr__(self) -> str:
        return f"ClipBatch(size={self.size}, fields={len(self)}, skipped={len(self.skipped)})"


def _pin(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.pin_memory()
    if isinstance(x, dict):
        return {k: _pin(v) for k, v in x.items()}
    return x


def collate_clips(samples: Sequence[Any]) -> ClipBatch:
    """Collate dataset samples, dropping :class:`SkippedSample` sentinels.

    Pass it as ``DataLoader(..., collate_fn=collate_clips)``. The result unpacks as
    ``inputs, target`` (train) or ``inputs, target, video_index`` (test); ``inputs`` is a
    dict of batched tensors per modality. When every sample was skipped, the batch is
    ``({}, empty tensor[, empty tensor])`` with ``batch.size == 0``: skip it.
    """
    good = [s for s in samples if not isinstance(s, SkippedSample)]
    skipped = [s for s in samples if isinstance(s, SkippedSample)]
    if good:
        return ClipBatch(default_collate(good), skipped)
    width = max(s.fields for s in skipped) if skipped else 2
    empty = ({}, torch.empty(0), torch.empty(0, dtype=torch.long))
    return ClipBatch(empty[:width], skipped)


class SkipReport:
    """Counts the samples skipped over an epoch, in the main process.

    Feed it every batch (``report.update(batch)``) or wrap the loader
    (``for batch in report.track(loader)``); :meth:`summary` says how many and which.
    """

    def __init__(self) -> None:
        self.skipped: list[SkippedSample] = []
        self.batches = 0
        self.samples = 0

    def update(self, batch: Any) -> None:
        """Record one batch produced by :func:`collate_clips`."""
        self.batches += 1
        if isinstance(batch, ClipBatch):
            self.samples += batch.size
            self.skipped.extend(batch.skipped)

    def track(self, loader: Iterable[Any]) -> Iterator[Any]:
        """Yield the loader's batches unchanged, recording each one."""
        for batch in loader:
            self.update(batch)
            yield batch

    @property
    def count(self) -> int:
        """Number of skipped samples seen so far."""
        return len(self.skipped)

    def by_reason(self) -> dict[str, int]:
        """Skipped samples counted by reason."""
        return dict(Counter(s.reason.split(":")[0] for s in self.skipped))

    def files(self) -> list[str]:
        """The distinct files that were skipped, sorted."""
        return sorted({s.path for s in self.skipped})

    def summary(self) -> str:
        """A few lines: counts, reasons, and the skipped files."""
        lines = [
            f"{self.samples} samples loaded in {self.batches} batches; "
            f"{self.count} skipped from {len(self.files())} files"
        ]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.by_reason().items())]
        first: dict[str, str] = {}
        for s in self.skipped:
            first.setdefault(s.path, s.reason)
        lines += [f"  - {path}: {reason}" for path, reason in sorted(first.items())]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SkipReport(samples={self.samples}, skipped={self.count})"
