"""The estimate record: weights, the measurements behind them, and its events as data."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


def ratios(d_o: Mapping[str, float], d_g: Mapping[str, float]) -> dict[str, float]:
    """``dO_k / dG_k`` per head (Eq. 3); ``dG_k = 0`` gives ``±inf`` (sign of dO), nan if dO = 0."""
    return {h: _ratio(d_o[h], g) for h, g in d_g.items()}


def _ratio(o: float, g: float) -> float:
    if g != 0.0:
        return o / g
    return math.copysign(math.inf, o) if o != 0.0 else math.nan


@dataclass(frozen=True)
class BlendEstimate:
    """One G-Blend weight estimate with the measurements behind it and its events.

    Attributes:
        weights: head -> weight, summing to 1 when ``accepted`` (else the fallback weights).
        generalization: head -> dG.
        overfitting_change: head -> dO.
        accepted: False when every raw weight was 0 (no head generalized).
        notes: human-readable records of every edge rule applied (never parsed).
        measurements: the raw values (``train_before``, ``holdout_before``, ...), as given.
        higher_is_better: whether the raw values are scores.
        generalization_se: head -> standard error of dG (``None``: not measured).
        overfitting_change_se: head -> standard error of dO (``None``: not measured).
        raw_weights: the weights before shrinkage, floor and smoothing (``None``: none applied).
        prior: the weights a head within noise was shrunk toward (``None``: no shrinkage).
        floored: heads whose dO² was floored at ``eps``.
        zeroed: heads at weight 0 because dG <= 0 (diverged heads are in ``diverged``).
        diverged: head -> why its Algorithm-1 copy diverged; such a head gets weight 0.
        skipped_batches: empty batches skipped while training copies and measuring.
        rejected: why the estimate was rejected (``None`` when accepted).
    """

    weights: dict[str, float]
    generalization: dict[str, float]
    overfitting_change: dict[str, float]
    accepted: bool
    notes: tuple[str, ...] = ()
    measurements: dict[str, dict[str, float]] = field(default_factory=dict)
    higher_is_better: bool = False
    generalization_se: dict[str, float] | None = None
    overfitting_change_se: dict[str, float] | None = None
    raw_weights: dict[str, float] | None = None
    prior: dict[str, float] | None = None
    floored: tuple[str, ...] = ()
    zeroed: tuple[str, ...] = ()
    diverged: dict[str, str] = field(default_factory=dict)
    skipped_batches: int = 0
    rejected: str | None = None

    @property
    def heads(self) -> list[str]:
        return list(self.weights)

    @property
    def ogr(self) -> dict[str, float]:
        """OGR per head (dO / dG, see :func:`ratios`)."""
        return ratios(self.overfitting_change, self.generalization)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (safe for ``torch.load(weights_only=True)`` and JSON)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlendEstimate:
        """Inverse of :meth:`to_dict` (a missing key takes the default)."""
        values = {f.name: _plain(data[f.name]) for f in fields(cls) if f.name in data}
        for name in ("notes", "floored", "zeroed"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value
