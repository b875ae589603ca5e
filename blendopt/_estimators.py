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
        optimizer: the wrapped optimizer (its class and hyper-parameters train the copies).
        horizon: n of Algorithm 1 from the schedule (``None``: the estimator decides).
        unit: unit of ``horizon``.
        index: how many estimates were made before this one (0 for the first).
        weights: the weights in use.
        steps_done: optimizer steps the run has made (a per-step scheduler's position).
        epochs_done: epochs the run has completed (a per-epoch scheduler's position).
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
    """Base class: turns measurements into weights (see :class:`blendopt.RetrainEstimator`)."""

    def initial_weights(self, heads: Sequence[str]) -> dict[str, float] | None:
        """Weights to use before the first estimate; ``None`` means uniform."""
        return None

    @property
    def needs_schedule(self) -> bool:
        """Whether the blender needs a schedule to know when to call :meth:`estimate`."""
        return True

    def default_schedule(self) -> Schedule | None:
        """The schedule used when ``GradientBlender`` gets none (``None``: pass one)."""
        return None

    def waiting_for(self) -> str | None:
        """Why no estimate can be made yet (``None``: it can); a due estimate is then recorded
        as ``"waiting"`` and the weights are kept."""
        return None

    def check_heads(self, heads: Sequence[str]) -> None:  # noqa: B027 (optional hook)
        """Check the options against the blender's heads, at ``GradientBlender(...)``; raise
        ``ValueError`` naming the option (e.g. ``floor`` >= 1/K)."""

    def observe(self, losses: Mapping[str, torch.Tensor], *, step: int) -> None:  # noqa: B027
        """Called by ``GradientBlender.blend`` every step, before the blend, with the per-head
        losses still attached to their graphs (``step``: optimizer steps done so far); an
        override must not backpropagate them without ``retain_graph=True``."""

    @abstractmethod
    def estimate(self, request: EstimateRequest) -> BlendEstimate:
        """Estimate the weights for ``request.heads``."""

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint with the blender (plain Python values)."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:  # noqa: B027 (optional hook)
        """Restore :meth:`state_dict`."""


class FixedWeights(Estimator):
    """Fixed weights, e.g. the paper's published ones (Table 4: Kinetics RGB+audio
    ``{"rgb": 0.630, "audio": 0.014, "fused": 0.356}``). Used as is, not normalized.
    """

    def __init__(self, weights: Mapping[str, float]) -> None:
        self.weights = check_weights(weights, list(weights))

    def initial_weights(self, heads: Sequence[str]) -> dict[str, float]:
        return check_weights(self.weights, heads)

    @property
    def needs_schedule(self) -> bool:
        return False

    def estimate(self, request: EstimateRequest) -> BlendEstimate:
        weights = check_weights(self.weights, request.heads)
        return BlendEstimate(
            weights=weights,
            generalization={},
            overfitting_change={},
            accepted=True,
            notes=("fixed weights",),
        )

    def __repr__(self) -> str:
        return f"FixedWeights({self.weights})"
