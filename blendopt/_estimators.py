"""Estimators turn measurements into G-Blend weights; the blender only applies them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer

from blendopt._copies import TrainStep
from blendopt._estimate import BlendEstimate
from blendopt._math import DEFAULT_EPS
from blendopt._measure import MetricFn
from blendopt._replay import Interval, SchedulerSpec, check_scheduler
from blendopt._retrain import (
    Engine,
    LossFn,
    OptimizerSpec,
    check_engine,
    estimate_weights,
    resolve_engine,
)
from blendopt._rng import derive_seed, loader_generators
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
    """Base class: turns measurements into weights (see :class:`RetrainEstimator`)."""

    def initial_weights(self, heads: Sequence[str]) -> dict[str, float] | None:
        """Weights to use before the first estimate; ``None`` means uniform."""
        return None

    @property
    def needs_schedule(self) -> bool:
        """Whether the blender needs a schedule to know when to call :meth:`estimate`."""
        return True

    def default_schedule(self) -> Schedule | None:
        """The schedule used when ``GradientBlender`` gets none (``None``: the user must pass one
        if :attr:`needs_schedule`)."""
        return None

    def observe(self, losses: Mapping[str, torch.Tensor], *, step: int) -> None:  # noqa: B027
        """Called by ``GradientBlender.blend`` every step, before the blend, with the per-head
        losses still attached to their graphs (``step``: optimizer steps done so far).

        Estimators that learn from the run itself (per-head gradients, rolling statistics)
        override it; it must not call backward on the losses without ``retain_graph=True``.
        """

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


class RetrainEstimator(Estimator):
    """Exact estimation by retraining a copy of the model per head (Algorithm 1).

    Each estimate calls :func:`blendopt.estimate_weights` on ``model`` at its current
    checkpoint, looking ahead the schedule's horizon (or ``epochs`` if given), with a fresh
    optimizer of the blender's wrapped optimizer's class and hyper-parameters.

    Args:
        model: the model being trained (held by reference; copies are made per estimate).
        loss_fn: ``loss_fn(model, batch) -> {head: scalar loss}``.
        train: training loader T.
        holdout: holdout loader V.
        probe: train probe T' (defaults to ``train``).
        epochs: fixed look-ahead n in epochs, overriding the schedule's horizon.
        metric, higher_is_better, fraction, eps, copies_at_once, progress: as in
            :func:`blendopt.estimate_weights`.
        seed: base seed; estimate i uses a seed derived from (seed, i), so a resumed run
            re-estimates exactly as the uninterrupted one.
        optimizer: optimizer (or factory) for the copies; defaults to the blender's.
        scheduler: the run's learning-rate schedule, for the copies to follow over the
            horizon: a factory ``optimizer -> LRScheduler`` (the one that built the run's
            scheduler; it is rebuilt on each copy's optimizer and fast-forwarded to the run's
            position) or the run's ``LRScheduler`` itself (replayed from its current state; it
            can be set after the blender is built: ``estimator.scheduler = scheduler``).
            ``None``: the copies train at the current rates, held constant.
        scheduler_interval: ``"step"`` if the run calls ``scheduler.step()`` after every
            optimizer step (the position is the blender's steps done), ``"epoch"`` if once per
            epoch (the position is the epochs done). Required with ``scheduler``.
        train_step: ``train_step(model, optimizer, batch, head) -> loss``, one training step of
            a copy (to clip or accumulate gradients like the run does); see
            :func:`blendopt.estimate_weights`.
        engine: how the copies train: ``"loop"``, ``"vmap"`` or ``"auto"`` (see
            :func:`blendopt.estimate_weights`). ``"auto"`` is resolved once, at the first
            estimate (its timed trial on accelerators costs a few dozen copy steps), and the
            answer is kept for the run (``engine_chosen``); ``"vmap"`` is checked at each
            estimate and refuses unsupported options with a ``ValueError``.
        noise_aware: per-sample measurements with paired standard errors; heads whose gain is
            within noise are shrunk toward uniform weights (see :func:`blendopt.estimate_weights`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train: Iterable[Any],
        holdout: Iterable[Any],
        *,
        probe: Iterable[Any] | None = None,
        epochs: int | None = None,
        metric: Literal["loss"] | MetricFn = "loss",
        higher_is_better: bool = False,
        fraction: float = 1.0,
        eps: float = DEFAULT_EPS,
        seed: int = 0,
        copies_at_once: int | None = None,
        progress: bool = False,
        optimizer: OptimizerSpec | None = None,
        scheduler: SchedulerSpec | None = None,
        scheduler_interval: Interval | None = None,
        train_step: TrainStep | None = None,
        engine: Engine = "auto",
        noise_aware: bool = False,
    ) -> None:
        check_engine(engine)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"Parameter `model` should be an nn.Module. Found {type(model).__name__}."
            )
        if not callable(loss_fn):
            raise TypeError(
                "Parameter `loss_fn` should be callable `(model, batch) -> {head: loss}`. "
                f"Found {loss_fn!r}."
            )
        if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"Parameter `epochs` should be an int >= 1 or None. Found {epochs!r}.")
        check_scheduler(scheduler, scheduler_interval)
        if train_step is not None and not callable(train_step):
            raise TypeError(
                "Parameter `train_step` should be callable `(model, optimizer, batch, head) -> "
                f"loss`. Found {type(train_step).__name__}."
            )
        self.model = model
        self.loss_fn = loss_fn
        self.train = train
        self.holdout = holdout
        self.probe = probe
        self.epochs = epochs
        self.metric = metric
        self.higher_is_better = higher_is_better
        self.fraction = fraction
        self.eps = eps
        self.seed = seed
        self.copies_at_once = copies_at_once
        self.progress = progress
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.train_step = train_step
        self.engine = engine
        self.noise_aware = noise_aware
        #: the engine ``"auto"`` resolved to at the first estimate (``None`` before).
        self.engine_chosen: str | None = None

    def _engine(self, request: EstimateRequest) -> Engine:
        if self.engine != "auto":
            return self.engine
        if self.engine_chosen is None:
            self.engine_chosen = resolve_engine(
                "auto",
                self.model,
                self.optimizer if self.optimizer is not None else request.optimizer,
                self.loss_fn,
                self.train,
                request.heads,
                train_step=self.train_step,
                seed=derive_seed(self.seed, request.index, 0),
                generators=loader_generators([self.train]),
            )
        return self.engine_chosen  # type: ignore[return-value]

    def state_dict(self) -> dict[str, Any]:
        """The engine ``"auto"`` chose, so a resumed run keeps it (its dropout draws)."""
        return {} if self.engine_chosen is None else {"engine_chosen": self.engine_chosen}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (an empty one from older checkpoints resets the choice)."""
        chosen = state_dict.get("engine_chosen")
        if chosen not in (None, "loop", "vmap"):
            raise ValueError(
                f"The RetrainEstimator state has engine_chosen={chosen!r}; expected 'loop', "
                "'vmap' or none. Pass the state_dict this estimator saved."
            )
        self.engine_chosen = chosen

    def estimate(self, request: EstimateRequest) -> BlendEstimate:
        length, unit = (
            (self.epochs, "epoch") if self.epochs is not None else (request.horizon, request.unit)
        )
        if length is None:
            raise ValueError(
                "The G-Blend estimate needs a look-ahead n: give the schedule a horizon "
                "(`Offline(horizon=N)`) or the estimator `epochs=n`."
            )
        return estimate_weights(
            self.model,
            self.loss_fn,
            self.train,
            self.holdout,
            optimizer=self.optimizer if self.optimizer is not None else request.optimizer,
            epochs=length if unit == "epoch" else None,
            steps=length if unit == "step" else None,
            probe=self.probe,
            metric=self.metric,
            higher_is_better=self.higher_is_better,
            fraction=self.fraction,
            heads=request.heads,
            eps=self.eps,
            seed=derive_seed(self.seed, request.index),
            copies_at_once=self.copies_at_once,
            progress=self.progress,
            fallback=request.weights,
            scheduler=self.scheduler,
            scheduler_interval=self.scheduler_interval,
            scheduler_position=(
                request.steps_done if self.scheduler_interval == "step" else request.epochs_done
            ),
            train_step=self.train_step,
            engine=self._engine(request),
            noise_aware=self.noise_aware,
        )

    def __repr__(self) -> str:
        metric = (
            self.metric
            if isinstance(self.metric, str)
            else getattr(self.metric, "__qualname__", "custom")
        )
        return (
            f"RetrainEstimator(epochs={self.epochs}, metric={metric!r}, fraction={self.fraction}, "
            f"seed={self.seed}, engine={self.engine!r}, noise_aware={self.noise_aware}"
            + (
                f", scheduler={type(self.scheduler).__name__}, "
                f"scheduler_interval={self.scheduler_interval!r}"
                if self.scheduler is not None
                else ""
            )
            + ")"
        )
