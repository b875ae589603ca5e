"""Holdout split for G-Blend: a seeded shuffle of the training set into T, V and a probe T'."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset


@dataclass(frozen=True)
class HoldoutSplit:
    """Indices of one split of a training set.

    Attributes:
        train: indices trained on (T).
        holdout: indices never trained on (V).
        probe: a fixed subset of ``train`` (T') for the train-side measurements.
    """

    train: list[int]
    holdout: list[int]
    probe: list[int]

    def subsets(self, dataset: Dataset[Any]) -> tuple[Subset[Any], Subset[Any], Subset[Any]]:
        """``(train, holdout, probe)`` as ``torch.utils.data.Subset`` views of ``dataset``."""
        return (
            Subset(dataset, self.train),
            Subset(dataset, self.holdout),
            Subset(dataset, self.probe),
        )


def _count(name: str, value: float | int, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"Parameter `{name}` should be a fraction in (0, 1) or a count. Found {value!r}."
        )
    if isinstance(value, float):
        if not 0.0 < value < 1.0:
            raise ValueError(
                f"Parameter `{name}` as a fraction should be in (0, 1). Found {value}."
            )
        return max(1, round(value * n))
    if value < 1:
        raise ValueError(f"Parameter `{name}` as a count should be >= 1. Found {value}.")
    return value


def holdout_split(
    size: int,
    *,
    holdout: float | int = 0.08,
    probe: float | int | None = None,
    labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
) -> HoldoutSplit:
    """Split ``range(size)`` by a seeded shuffle into training, holdout and train-probe indices.

    Args:
        size: number of training samples.
        holdout: fraction (float in (0, 1)) or count (int) of samples held out as V.
        probe: fraction or count of the remaining samples forming T' (default: as many as V).
        labels: one class label per sample, to stratify the split by class.
        seed: seed of the shuffle.

    Returns:
        A :class:`HoldoutSplit`; indices are sorted within each part.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"Parameter `size` should be an int >= 2. Found {size!r}.")
    n_holdout = _count("holdout", holdout, size)
    if n_holdout >= size:
        raise ValueError(
            f"Parameter `holdout` leaves no training data: {n_holdout} of {size} samples held out."
        )
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(size)
        held = order[:n_holdout]
    else:
        y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
        if y.shape != (size,):
            raise ValueError(
                f"Parameter `labels` should hold one label per sample, shape ({size},). Found "
                f"shape {y.shape}."
            )
        held = _stratified(y, n_holdout, rng)
    train = np.setdiff1d(np.arange(size), held)
    n_probe = n_holdout if probe is None else _count("probe", probe, len(train))
    n_probe = min(n_probe, len(train))
    probe_idx = rng.choice(train, size=n_probe, replace=False)
    return HoldoutSplit(
        train=sorted(train.tolist()),
        holdout=sorted(held.tolist()),
        probe=sorted(probe_idx.tolist()),
    )


def _stratified(y: np.ndarray, n_holdout: int, rng: np.random.Generator) -> np.ndarray:
    """Hold out ``n_holdout`` indices, each class in proportion (largest remainders)."""
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n_holdout / len(y))
    per_class = np.floor(exact).astype(int)
    remainder = n_holdout - int(per_class.sum())
    if remainder > 0:
        # Ties between equal remainders are broken at random, so no class is always favoured.
        keys = exact - per_class + rng.random(len(classes)) * 1e-9
        per_class[np.argsort(-keys)[:remainder]] += 1
    held = []
    for c, k in zip(classes, per_class, strict=True):
        members = np.flatnonzero(y == c)
        held.append(rng.permutation(members)[:k])  # k <= len(members): exact < count
    return np.concatenate(held)
