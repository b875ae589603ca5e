"""Estimators turn measurements into G-Blend weights; the blender only applies them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

from blendopt._estimate import BlendEstimate
from blendopt._schedule import Schedule, Unit
from blendopt._weighting import check_weights


@dataclass(frozen=True)
class EstimateRequest:
    """What the blender knows when it asks for an estimate.

    Attributes:
        heads: the heads, in order.
        optimizer: the wrapped optimizer.
        horizon: n of Algorithm 1 from the schedule (``None``: the estimator decides).
        unit: unit of ``horizon``.
        index: how many estimates were made before this one.
        weights: the weights in use.
        steps_done, epochs_done: optimizer steps and epochs the run has completed.
    """

    heads: tuple[str, ...]
    optimizer: Optimizer
    horizon: int | None
    unit: Unit
    index: int
    weights: Mapping[str, float]
    steps_done: int = 0
    epochs_done: int = 0


class Estimator(ABC):
    """Base class: turns measurements into weights (see :class:`blendopt.RetrainEstimator`).

    Attributes:
        needs_schedule: whether the blender needs a schedule to know when to :meth:`estimate`.
    """

    needs_schedule: bool = True

    def initial_weights(self, heads: Sequence[str]) -> dict[str, float] | None:
        """Weights to use before the first estimate; ``None`` means uniform."""
        return None

    def default_schedule(self) -> Schedule | None:
        """The schedule used when ``GradientBlender`` gets none (``None``: pass one)."""
        return None

    def waiting_for(self) -> str | None:
        """Why no estimate can be made yet (``None``: it can; else the weights are kept)."""
        return None

    def check_heads(self, heads: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Check the options against the blender's heads, at ``GradientBlender(...)``; raise
        ``ValueError`` naming the option (e.g. ``floor`` >= 1/K)."""

    def observe(self, losses: Mapping[str, torch.Tensor], *, step: int) -> None:  # noqa: B027
        """Called by ``GradientBlender.blend`` every step with the per-head losses (with graphs)."""

    @abstractmethod
    def estimate(self, request: EstimateRequest) -> BlendEstimate:
        """Estimate the weights for ``request.heads``."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint with the blender (plain Python values)."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore :meth:`state_dict`."""


class FixedWeights(Estimator):
    """Fixed weights, e.g. the paper's (Table 4), used as given (not normalized)."""

    needs_schedule = False

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = check_weights(weights, list(weights))

    def initial_weights(self, heads: Sequence[str]) -> dict[str, float]:
        return check_weights(self.weights, heads)

    def estimate(self, request: EstimateRequest) -> BlendEstimate:
        return BlendEstimate(
            weights=check_weights(self.weights, request.heads),
            generalization={},
            overfitting_change={},
            accepted=True,
            notes=("fixed weights",),
        )

    def __repr__(self) -> str:
        return f"FixedWeights({self.weights})"
