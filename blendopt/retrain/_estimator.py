"""``RetrainEstimator``: Algorithm 1 as an estimator the blender calls on its schedule."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from blendopt._estimators import EstimateRequest, Estimator
from blendopt._math import BlendEstimate
from blendopt._measure import LossFn
from blendopt._rng import derive_seed
from blendopt.retrain._config import Engine, OptimizerSpec, RetrainConfig
from blendopt.retrain._estimate import estimate_weights

#: Settings the blender supplies at each estimate, not the user.
_PER_ESTIMATE = ("steps", "heads", "fallback", "scheduler_position")


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
        optimizer: optimizer (or factory) for the copies; defaults to the blender's.
        config: the settings (:class:`blendopt.retrain.RetrainConfig`).
        **settings: fields of ``RetrainConfig`` replacing ``config``'s, e.g. ``epochs=n`` (a
            fixed look-ahead overriding the schedule's horizon), ``metric``, ``seed`` (estimate
            i uses a seed derived from (seed, i), so a resumed run re-estimates exactly as the
            uninterrupted one), ``engine``, ``noise_aware``, ``train_step``. ``scheduler``: the
            run's learning-rate schedule for the copies to follow over the horizon, a factory
            ``optimizer -> LRScheduler`` (rebuilt on each copy's optimizer and fast-forwarded
            to the run's position) or the run's ``LRScheduler`` itself (replayed from its
            current state; it can be set after the blender is built:
            ``estimator.scheduler = scheduler``), with ``scheduler_interval`` ``"step"`` (the
            position is the blender's steps done) or ``"epoch"`` (the epochs done).
            ``engine="auto"`` is resolved once, at the first estimate (``engine_chosen``).

    Raises:
        TypeError: bad ``model``/``loss_fn``/settings.
        ValueError: bad settings, or one the blender sets per estimate (``steps``, ``heads``,
            ``fallback``, ``scheduler_position``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        train: Iterable[Any],
        holdout: Iterable[Any],
        *,
        probe: Iterable[Any] | None = None,
        optimizer: OptimizerSpec | None = None,
        config: RetrainConfig | None = None,
        **settings: Any,
    ) -> None:
        config = RetrainConfig.build(config, settings)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"Parameter `model` should be an nn.Module. Found {type(model).__name__}."
            )
        if not callable(loss_fn):
            raise TypeError(
                "Parameter `loss_fn` should be callable `(model, batch) -> {head: loss}`. "
                f"Found {loss_fn!r}."
            )
        given = [name for name in _PER_ESTIMATE if getattr(config, name) is not None]
        if given:
            raise ValueError(
                f"Parameter `{given[0]}` is set by the blender at each estimate. Drop it; use "
                "`epochs=` for a fixed look-ahead."
            )
        self.model, self.loss_fn, self.probe = model, loss_fn, probe
        self.train, self.holdout, self.optimizer = train, holdout, optimizer
        self._config = config
        #: the run's scheduler and how it steps; may be set after the blender is built.
        self.scheduler, self.scheduler_interval = config.scheduler, config.scheduler_interval
        #: the engine ``"auto"`` resolved to at the first estimate (``None`` before).
        self.engine_chosen: str | None = None

    @property
    def config(self) -> RetrainConfig:
        """The settings, with the current ``scheduler`` and ``scheduler_interval``."""
        return dataclasses.replace(
            self._config, scheduler=self.scheduler, scheduler_interval=self.scheduler_interval
        )

    @property
    def engine(self) -> Engine:
        """The engine asked for (see ``engine_chosen`` for what ``"auto"`` became)."""
        return self._config.engine

    def _engine(self) -> Engine:
        if self.engine != "auto":
            return self.engine
        if self.engine_chosen is None:
            self.engine_chosen = "loop"  # "auto" is the loop; a saved "vmap" choice is kept
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
        config = self.config
        length, unit = (
            (config.epochs, "epoch")
            if config.epochs is not None
            else (request.horizon, request.unit)
        )
        if length is None:
            raise ValueError(
                "The G-Blend estimate needs a look-ahead n: give the schedule a horizon "
                "(`Offline(horizon=N)`) or the estimator `epochs=n`."
            )
        position = (
            request.steps_done if config.scheduler_interval == "step" else request.epochs_done
        )
        config = dataclasses.replace(
            config,
            epochs=length if unit == "epoch" else None,
            steps=length if unit == "step" else None,
            heads=request.heads,
            seed=derive_seed(config.seed, request.index),
            fallback=request.weights,
            scheduler_position=position,
            engine=self._engine(),
        )
        return estimate_weights(
            self.model,
            self.loss_fn,
            self.train,
            self.holdout,
            optimizer=self.optimizer if self.optimizer is not None else request.optimizer,
            probe=self.probe,
            config=config,
        )

    def __repr__(self) -> str:
        c = self._config
        metric = (
            c.metric if isinstance(c.metric, str) else getattr(c.metric, "__qualname__", "custom")
        )
        return (
            f"RetrainEstimator(epochs={c.epochs}, metric={metric!r}, fraction={c.fraction}, "
            f"seed={c.seed}, engine={c.engine!r}, noise_aware={c.noise_aware}"
            + (
                f", scheduler={type(self.scheduler).__name__}, "
                f"scheduler_interval={self.scheduler_interval!r}"
                if self.scheduler is not None
                else ""
            )
            + ")"
        )
