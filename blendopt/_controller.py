"""When to estimate G-Blend weights, and applying the results (the blender's LRScheduler)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from torch.optim import Optimizer

from blendopt._estimators import EstimateRequest, Estimator, FixedWeights
from blendopt._finite import NonFiniteMonitor
from blendopt._math import BlendEstimate, uniform_weights
from blendopt._schedule import Schedule
from blendopt._warnings import deferred_estimate_warnings, warn, warn_estimate
from blendopt._weighting import BlendWeights, check_weights
from blendopt.warnings import NoEstimateWarning

_POSITIONS = ("epochs_started", "steps", "estimates", "last_estimate_position")


class EstimationController:
    """Counts epochs and steps, runs the estimator when due, applies and records the weights.

    A due estimate the estimator cannot make yet (``waiting_for()``) is recorded as
    ``kind="waiting"``; a checkpoint with no estimate made warns once with that reason.
    """

    def __init__(
        self,
        weights: BlendWeights,
        optimizer: Optimizer,
        estimator: Estimator | None,
        schedule: Schedule | None,
        monitor: NonFiniteMonitor,
    ) -> None:
        self.weights = weights
        self.optimizer = optimizer
        self.estimator = estimator
        self.schedule = schedule
        self.monitor = monitor
        self.history: list[dict[str, Any]] = []
        self.epochs_started = 0
        self.steps = 0
        self.estimates = 0
        self.last_estimate_position = -1
        self._warned_no_estimate = False

    def before_first_blend(self) -> None:
        if self.schedule is None:
            return
        if self.schedule.unit == "epoch" and self.epochs_started == 0:
            raise RuntimeError(
                "The schedule counts epochs: call `optimizer.start_epoch()` at the start of "
                "every epoch (it runs the G-Blend estimates when they are due)."
            )
        if self.schedule.unit == "step" and self.steps == 0:
            self.maybe_estimate(0)

    def start_epoch(self) -> dict[str, Any] | None:
        record = None
        if self.schedule is not None and self.schedule.unit == "epoch":
            record = self.maybe_estimate(self.epochs_started)
        self.epochs_started += 1
        return record

    def after_step(self) -> dict[str, Any] | None:
        self.steps += 1
        if self.schedule is not None and self.schedule.unit == "step":
            return self.maybe_estimate(self.steps)
        return None

    def is_due(self, position: int) -> bool:
        """Whether an estimate is due at ``position`` (in the schedule's unit) and not made yet."""
        return (
            self.schedule is not None
            and self.estimator is not None
            and position > self.last_estimate_position
            and self.schedule.is_due(position)
        )

    def maybe_estimate(self, position: int) -> dict[str, Any] | None:
        """Estimate if due at ``position``; return the history record, or ``None``."""
        if not self.is_due(position):
            return None
        assert self.schedule is not None
        self.last_estimate_position = position
        return self.estimate(self.schedule.horizon(position), self.schedule.unit)

    def estimate(self, horizon: int | None, unit: str) -> dict[str, Any]:
        """Run the estimator now and apply the result (rejected estimates keep the weights)."""
        if self.estimator is None:
            raise ValueError(
                "No estimator: pass `estimator=` to GradientBlender to estimate weights."
            )
        self.monitor.report(f"before G-Blend estimate {self.estimates}", to_step=self.steps)
        request = EstimateRequest(
            heads=tuple(self.weights.heads),
            optimizer=self.optimizer,
            horizon=horizon,
            unit=unit,  # type: ignore[arg-type]
            index=self.estimates,
            weights=self.weights.values,
            steps_done=self.steps,
            epochs_done=self.epochs_started,
        )
        waiting = self.estimator.waiting_for()
        start = time.perf_counter()
        with deferred_estimate_warnings():
            estimate = self.estimator.estimate(request)
        if not isinstance(estimate, BlendEstimate):
            raise TypeError(
                f"{type(self.estimator).__name__}.estimate should return a BlendEstimate. Found "
                f"{type(estimate).__name__}."
            )
        before = self.weights.values
        if waiting is not None:  # weights kept; not an estimate
            return self.record("waiting", before, before, estimate, horizon, start)
        index = self.estimates
        self.estimates += 1
        after = (
            check_weights(estimate.weights, self.weights.heads, name="estimate.weights")
            if estimate.accepted
            else before
        )
        kind = "estimate" if estimate.accepted else "rejected"
        record = self.record(kind, before, after, estimate, horizon, start)
        record["index"] = index
        where = f"epoch {self.epochs_started}" if unit == "epoch" else f"step {self.steps}"
        warn_estimate(estimate, f"G-Blend estimate {index} at {where}")
        self.weights.set(after, step=self.steps)
        return record

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Use ``weights`` (validated) from now on, recorded as a manual change."""
        self.record("manual", self.weights.values, weights, None, None, None)
        self.weights.set(weights, step=self.steps)

    def record(
        self,
        kind: str,
        before: Mapping[str, float],
        after: Mapping[str, float],
        estimate: BlendEstimate | None,
        horizon: int | None,
        start: float | None,
    ) -> dict[str, Any]:
        """Append a weight-change record to :attr:`history` (``start``: ``perf_counter()``)."""
        record = {
            "kind": kind,
            "epoch": self.epochs_started,
            "step": self.steps,
            "horizon": horizon,
            "weights_before": dict(before),
            "weights": dict(after),
            "estimate": None if estimate is None else estimate.to_dict(),
            "seconds": 0.0 if start is None else time.perf_counter() - start,
        }
        self.history.append(record)
        return record

    def warn_if_never_estimated(self) -> None:
        """Warn once (:class:`NoEstimateWarning`) if steps ran and no estimate was made."""
        if self._warned_no_estimate or self.estimates or not self.steps or self.schedule is None:
            return
        self._warned_no_estimate = True
        waiting = None if self.estimator is None else self.estimator.waiting_for()
        reason = waiting or f"no estimate was due yet ({self.schedule!r})"
        weights = ", ".join(f"{h} {w:.3g}" for h, w in self.weights.values.items())
        warn(
            f"No G-Blend estimate in {self.steps} steps: {reason}; the weights stayed at "
            f"{weights}. Train longer, or measure more often (e.g. "
            "mode=blendopt.GradientMode(interval=5, min_measurements=4)).",
            NoEstimateWarning,
        )

    def state_dict(self) -> dict[str, Any]:
        """Positions, history and the estimator's state (plain values)."""
        self.warn_if_never_estimated()
        return {
            **{name: getattr(self, name) for name in _POSITIONS},
            "history": list(self.history),
            "estimator": {} if self.estimator is None else self.estimator.state_dict(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        for name in _POSITIONS:
            setattr(self, name, int(state_dict[name]))
        self.history = list(state_dict["history"])
        if self.estimator is not None:
            self.estimator.load_state_dict(state_dict["estimator"])

    def __repr__(self) -> str:
        return (
            f"EstimationController(estimator={self.estimator!r}, schedule={self.schedule!r}, "
            f"epochs_started={self.epochs_started}, steps={self.steps}, "
            f"estimates={self.estimates})"
        )


def resolve_weighting(
    heads: Sequence[str],
    estimator: Estimator | Mapping[str, float] | None,
    schedule: Schedule | None,
    weights: Mapping[str, float] | None,
) -> tuple[Estimator | None, Schedule | None, dict[str, float]]:
    """``GradientBlender``'s ``estimator``/``schedule``/``weights``, validated together: the
    estimator (a mapping becomes :class:`FixedWeights`), the schedule, the initial weights."""
    fixed = isinstance(estimator, (Mapping, FixedWeights))
    if isinstance(estimator, Mapping):
        estimator = FixedWeights(estimator)
    _check_combination(estimator, schedule, weights, fixed=fixed)
    if estimator is not None and schedule is None:
        schedule = estimator.default_schedule()
    if estimator is not None and estimator.needs_schedule and schedule is None:
        raise ValueError(
            f"The estimator {estimator!r} needs a schedule: pass "
            "`schedule=blendopt.Offline(horizon=N)` (estimate once, Algorithm 2) or "
            "`schedule=blendopt.Online(every=n)` (Algorithm 3)."
        )
    if weights is not None:
        initial = check_weights(weights, heads, "weights", warn_sum=True)
    elif fixed:
        assert isinstance(estimator, FixedWeights)
        initial = check_weights(estimator.weights, heads, "estimator", warn_sum=True)
    else:
        given = estimator.initial_weights(heads) if estimator is not None else None
        initial = check_weights(given, heads) if given is not None else uniform_weights(heads)
    return estimator, schedule, initial


def _check_combination(
    estimator: Any, schedule: Any, weights: Mapping[str, float] | None, *, fixed: bool
) -> None:
    if estimator is not None and not isinstance(estimator, Estimator):
        raise TypeError(
            "Parameter `estimator` should be a blendopt Estimator, a mapping head -> weight, "
            f"or None. Found {type(estimator).__name__}."
        )
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(
            "Parameter `schedule` should be blendopt.Offline(...) or blendopt.Online(...). "
            f"Found {type(schedule).__name__}."
        )
    if fixed and schedule is not None:
        raise ValueError(
            f"Parameter `schedule` ({schedule!r}) was given with fixed weights "
            f"({estimator!r}), which never change: nothing would be estimated. Drop "
            "`schedule=`, or pass an estimator that measures (e.g. blendopt.RetrainEstimator)."
        )
    if fixed and weights is not None:
        raise ValueError(
            "Parameter `weights` was given together with fixed weights as `estimator` "
            f"({estimator!r}); the weights would be set twice. Pass them once: either "
            "`estimator={...}` or `weights={...}`."
        )
    if schedule is not None and estimator is None:
        raise ValueError(
            "Parameter `schedule` was given without an `estimator`; pass the estimator the "
            "schedule should call (e.g. blendopt.RetrainEstimator(...))."
        )
