"""``GradientBlender``: any torch.optim optimizer, trained on the G-Blend loss Σ_k w_k L_k.

Loss re-weighting is gradient blending (§2.4, Eq. 7): one backward pass of the blended loss
gives the blended gradient Σ_k w_k ∇L_k, so the per-step cost is that of the naive summed loss.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from blendopt._estimators import EstimateRequest, Estimator, FixedWeights, check_weights
from blendopt._math import BlendEstimate, uniform_weights
from blendopt._schedule import Schedule
from blendopt._statistics import TrainStatistics
from blendopt._warnings import BlendWarning

_STATE_VERSION = 1


class GradientBlender(Optimizer):
    """Wrap ``optimizer`` to train a multi-head model on the G-Blend blended loss.

    ``param_groups``, ``state`` and ``defaults`` are the wrapped optimizer's own objects (also
    after :meth:`load_state_dict`), so learning-rate schedulers, gradient clipping,
    ``torch.amp.GradScaler`` and DDP work as with the plain optimizer.

    Typical loop (``start_epoch`` is needed only with an epoch-based schedule)::

        optimizer = GradientBlender(
            torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
            heads=["rgb", "audio", "fused"],
            estimator=...,
            schedule=...,
        )
        for epoch in range(epochs):
            optimizer.start_epoch()  # runs a G-Blend estimate when the schedule says so
            for batch in loader:
                optimizer.zero_grad()
                optimizer.backward(loss_fn(model, batch))  # was: sum(losses).backward()
                optimizer.step()

    Args:
        optimizer: the optimizer to wrap (any ``torch.optim.Optimizer``).
        heads: the head names; ``backward`` expects exactly these keys.
        estimator: where the weights come from: an :class:`Estimator` (e.g.
            :class:`RetrainEstimator`), or a mapping head -> weight for fixed weights.
            ``None``: the weights stay at ``weights`` (uniform by default).
        schedule: when to estimate (:class:`Offline` or :class:`Online`); required by
            estimators that measure (not by fixed weights).
        weights: initial weights (default: the estimator's, else uniform 1/k).
        check_finite: how non-finite losses are caught, each time naming the head. ``True``:
            check every step and raise before the backward pass (on an accelerator this
            synchronizes with the device every step). ``False``: count them on the device and
            raise at the next :meth:`start_epoch`. ``None`` (default): ``True`` for losses on
            the CPU, where the check is free, ``False`` elsewhere.

    Attributes:
        optimizer: the wrapped optimizer.
        heads: the heads, in order.
        statistics: per-head training-loss means per epoch (:class:`TrainStatistics`).
        history: one record per weight change (estimates, rejections, manual changes).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        heads: Sequence[str],
        estimator: Estimator | Mapping[str, float] | None = None,
        *,
        schedule: Schedule | None = None,
        weights: Mapping[str, float] | None = None,
        check_finite: bool | None = None,
    ) -> None:
        if isinstance(optimizer, GradientBlender):
            raise TypeError(
                "Parameter `optimizer` is already a GradientBlender; wrap the plain optimizer once."
            )
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                "Parameter `optimizer` should be a torch.optim.Optimizer instance. Found "
                f"{type(optimizer).__name__}."
            )
        heads = self._check_heads(heads)
        if isinstance(estimator, Mapping):
            estimator = FixedWeights(estimator)
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
        if estimator is not None and schedule is None:
            schedule = estimator.default_schedule()
        if estimator is not None and estimator.needs_schedule and schedule is None:
            raise ValueError(
                f"The estimator {estimator!r} needs a schedule: pass "
                "`schedule=blendopt.Offline(horizon=N)` (estimate once, Algorithm 2) or "
                "`schedule=blendopt.Online(every=n)` (Algorithm 3)."
            )
        if schedule is not None and estimator is None:
            raise ValueError(
                "Parameter `schedule` was given without an `estimator`; pass the estimator the "
                "schedule should call (e.g. blendopt.RetrainEstimator(...))."
            )
        if check_finite is not None and not isinstance(check_finite, bool):
            raise TypeError(
                f"Parameter `check_finite` should be a bool or None. Found {check_finite!r}."
            )

        self.optimizer = optimizer
        # Optimizer.__init__ resets `state` and `param_groups` through the forwarding setters
        # below; hand the wrapped optimizer its own objects back afterwards.
        own_state, own_groups = optimizer.state, optimizer.param_groups
        super().__init__(optimizer.param_groups, optimizer.defaults)
        optimizer.state, optimizer.param_groups = own_state, own_groups

        self.heads: list[str] = heads
        self._head_set = frozenset(heads)
        self.estimator = estimator
        self.schedule = schedule
        self.check_finite = check_finite
        initial = weights
        if initial is None and estimator is not None:
            initial = estimator.initial_weights(heads)
        self._weights = (
            check_weights(initial, heads) if initial is not None else uniform_weights(heads)
        )
        self._weight_cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self.statistics = TrainStatistics(heads)
        self.history: list[dict[str, Any]] = []
        self._epochs_started = 0
        self._steps = 0
        self._estimates = 0
        self._last_estimate_position = -1

    # -- the wrapped optimizer's state, by reference -------------------------------------------

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:
        """The wrapped optimizer's ``param_groups`` (the same list object)."""
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = value

    @property  # type: ignore[override]
    def state(self) -> Any:
        """The wrapped optimizer's ``state`` (the same mapping)."""
        return self.optimizer.state

    @state.setter
    def state(self, value: Any) -> None:
        self.optimizer.state = value

    @property  # type: ignore[override]
    def defaults(self) -> dict[str, Any]:
        """The wrapped optimizer's ``defaults``."""
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, value: dict[str, Any]) -> None:
        self.optimizer.defaults = value

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        # LR schedulers (and Accelerate's GradScaler path) put a `step` wrapper on the instance,
        # bound to this blender: a copy must not keep it (it would step the original, and it
        # cannot be pickled). A plain optimizer drops it too.
        state.pop("step", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- weights ---------------------------------------------------------------------------------

    @staticmethod
    def _check_heads(heads: Sequence[str]) -> list[str]:
        if isinstance(heads, str) or not isinstance(heads, Sequence):
            raise TypeError(
                f"Parameter `heads` should be a list of head names, e.g. ['rgb', 'audio', "
                f"'fused']. Found {heads!r}."
            )
        heads = list(heads)
        if not heads:
            raise ValueError(
                "Parameter `heads` should name at least one head. Found an empty list."
            )
        for h in heads:
            if not isinstance(h, str):
                raise TypeError(f"Parameter `heads` should hold strings. Found {h!r}.")
        duplicates = sorted({h for h in heads if heads.count(h) > 1})
        if duplicates:
            raise ValueError(
                f"Parameter `heads` names {duplicates[0]!r} twice; name each head once."
            )
        return heads

    @property
    def weights(self) -> dict[str, float]:
        """The weights in use, head -> float (a copy)."""
        return dict(self._weights)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Use ``weights`` from now on (recorded in :attr:`history`)."""
        new = check_weights(weights, self.heads)
        self._record(
            kind="manual", before=self._weights, after=new, estimate=None, horizon=None, seconds=0.0
        )
        self._apply(new)

    def _apply(self, weights: dict[str, float]) -> None:
        self._weights = dict(weights)
        self._weight_cache.clear()

    def _weight_tensor(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (device, dtype)
        cached = self._weight_cache.get(key)
        if cached is None:
            cached = torch.tensor(
                [self._weights[h] for h in self.heads], dtype=dtype, device=device
            )
            self._weight_cache[key] = cached
        return cached

    # -- the per-step path -------------------------------------------------------------------

    def _validate(self, losses: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        if not isinstance(losses, Mapping):
            raise TypeError(
                "`backward` takes a dict head -> scalar loss tensor, e.g. {'rgb': loss_rgb, ...}. "
                f"Found {type(losses).__name__}."
            )
        if losses.keys() != self._head_set:
            extra = [h for h in losses if h not in self._head_set]
            missing = [h for h in self.heads if h not in losses]
            if extra:
                raise ValueError(
                    f"Parameter `heads` should list every key of `losses`. Found extra key "
                    f"{extra[0]!r}; add it to `heads` or drop it from `losses`."
                )
            raise ValueError(
                f"`losses` has no loss for head {missing[0]!r}. Pass a loss for every head in "
                f"{self.heads} (a head can be switched off with weight 0)."
            )
        values = []
        for h in self.heads:
            loss = losses[h]
            if not isinstance(loss, torch.Tensor):
                raise TypeError(
                    f"The loss of head {h!r} should be a tensor. Found {type(loss).__name__}."
                )
            if loss.ndim != 0:
                raise ValueError(
                    f"The loss of head {h!r} should be a scalar. Found shape {tuple(loss.shape)}; "
                    "reduce it (e.g. `.mean()`) before `backward`."
                )
            if not loss.requires_grad:
                raise ValueError(
                    f"The loss of head {h!r} does not require grad: it was computed under "
                    "torch.no_grad(), from detached outputs, or from frozen parameters only. "
                    "Compute it from the model's outputs with grad enabled."
                )
            values.append(loss)
        return values

    def _raise_nonfinite(self, values: torch.Tensor) -> None:
        head, value = next(
            (h, v) for h, v in zip(self.heads, values.tolist(), strict=True) if not math.isfinite(v)
        )
        raise ValueError(
            f"The loss of head {head!r} is {value} (not finite) at step {self._steps}. Lower the "
            "learning rate, clip gradients, or check that head's inputs and labels."
        )

    def blend(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The blended loss ``Σ_k w_k L_k`` (Eq. 7) with its graph, for loops that call backward.

        Validates ``losses`` and records the per-head statistics exactly as :meth:`backward`
        does; the caller backpropagates the result (PyTorch Lightning's automatic optimization,
        ``accelerator.backward``, ``scaler.scale(loss).backward()``).

        Args:
            losses: head -> scalar loss, one entry per head.

        Returns:
            The blended loss, attached to the graph of every head's loss.

        Raises:
            ValueError: an unknown or missing head, a non-scalar loss, a loss without grad, or
                (see ``check_finite``) a non-finite loss.
            TypeError: ``losses`` is not a mapping of tensors.
            RuntimeError: an epoch-based schedule is set and :meth:`start_epoch` was never
                called.
        """
        values = self._validate(losses)
        if self.schedule is not None:
            if self.schedule.unit == "epoch" and self._epochs_started == 0:
                raise RuntimeError(
                    "The schedule counts epochs: call `optimizer.start_epoch()` at the start of "
                    "every epoch (it runs the G-Blend estimates when they are due)."
                )
            if self.schedule.unit == "step" and self._steps == 0:
                self._maybe_estimate(0)
        if self.estimator is not None:
            self.estimator.observe(losses, step=self._steps)
        device = values[0].device
        if any(v.device != device for v in values):  # model parallel: blend on the first device
            values = [v.to(device) for v in values]
        stacked = torch.stack(values)
        if stacked.dtype in (torch.float16, torch.bfloat16):
            stacked = stacked.float()
        blended = _weighted_sum(stacked, self._weight_tensor(device, stacked.dtype))
        detached = stacked.detach()
        check = (
            self.check_finite if self.check_finite is not None else detached.device.type == "cpu"
        )
        # With weights >= 0, the blend is finite exactly when every loss is (0·inf is nan).
        if check and not math.isfinite(blended.item()):
            self._raise_nonfinite(detached)
        self.statistics.record(detached, finite_checked=check)
        return blended

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        scaler: torch.amp.GradScaler | None = None,
        retain_graph: bool | None = None,
    ) -> torch.Tensor:
        """Backpropagate the blended loss ``Σ_k w_k L_k`` (Eq. 7) in one backward pass.

        ``backward(losses)`` is ``blend(losses).backward()``.

        Args:
            losses: head -> scalar loss, one entry per head.
            scaler: a ``torch.amp.GradScaler``: the blended loss is scaled before backward;
                then call ``scaler.step(optimizer)`` and ``scaler.update()`` as usual.
            retain_graph: passed to ``Tensor.backward``.

        Returns:
            The blended loss, detached.

        Raises:
            The errors of :meth:`blend`.
        """
        blended = self.blend(losses)
        (scaler.scale(blended) if scaler is not None else blended).backward(
            retain_graph=retain_graph
        )
        return blended.detach()

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Step the wrapped optimizer; with a step-based schedule, estimate when due."""
        loss = self.optimizer.step() if closure is None else self.optimizer.step(closure)
        self._steps += 1
        if self.schedule is not None and self.schedule.unit == "step":
            self._maybe_estimate(self._steps)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of the wrapped optimizer's parameters."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the wrapped optimizer."""
        self.optimizer.add_param_group(param_group)

    # -- epochs and estimates ----------------------------------------------------------------

    def start_epoch(self) -> dict[str, Any] | None:
        """Mark the start of an epoch; run the G-Blend estimate if the schedule says so.

        Closes the previous epoch's statistics (a collective under ``torch.distributed``:
        call it on every rank). Call it once per epoch, before the epoch's first ``backward``.

        Returns:
            The history record of the estimate made now, or ``None``.

        Raises:
            FloatingPointError: non-finite losses were counted on the device in the previous
                epoch (see ``check_finite``).
        """
        closed = self.statistics.close_epoch(self._epochs_started - 1)
        if closed is not None:
            bad = {h: n for h, n in closed["nonfinite"].items() if n}
            if bad:
                raise FloatingPointError(
                    f"Non-finite losses in epoch {closed['epoch']}: "
                    + ", ".join(
                        f"head {h!r} {n} of {closed['steps']} steps" for h, n in bad.items()
                    )
                    + ". Lower the learning rate, clip gradients, or check those heads' inputs; "
                    "pass check_finite=True to stop at the first one."
                )
        record = None
        if self.schedule is not None and self.schedule.unit == "epoch":
            record = self._maybe_estimate(self._epochs_started)
        self._epochs_started += 1
        return record

    def estimate_now(self, horizon: int | None = None) -> dict[str, Any]:
        """Run the estimator now, outside the schedule, and apply the result.

        Args:
            horizon: n for the estimate, in the schedule's unit (epochs by default).
        """
        if self.estimator is None:
            raise ValueError(
                "No estimator: pass `estimator=` to GradientBlender to estimate weights."
            )
        return self._estimate(horizon, self.schedule.unit if self.schedule is not None else "epoch")

    def _maybe_estimate(self, position: int) -> dict[str, Any] | None:
        assert self.schedule is not None
        assert self.estimator is not None
        if position <= self._last_estimate_position or not self.schedule.is_due(position):
            return None
        self._last_estimate_position = position
        return self._estimate(self.schedule.horizon(position), self.schedule.unit)

    def _estimate(self, horizon: int | None, unit: str) -> dict[str, Any]:
        assert self.estimator is not None
        request = EstimateRequest(
            heads=tuple(self.heads),
            optimizer=self.optimizer,
            horizon=horizon,
            unit=unit,  # type: ignore[arg-type]
            index=self._estimates,
            weights=dict(self._weights),
        )
        start = time.perf_counter()
        estimate = self.estimator.estimate(request)
        if not isinstance(estimate, BlendEstimate):
            raise TypeError(
                f"{type(self.estimator).__name__}.estimate should return a BlendEstimate. Found "
                f"{type(estimate).__name__}."
            )
        self._estimates += 1
        before = dict(self._weights)
        after = (
            check_weights(estimate.weights, self.heads, name="estimate.weights")
            if estimate.accepted
            else before
        )
        record = self._record(
            kind="estimate" if estimate.accepted else "rejected",
            before=before,
            after=after,
            estimate=estimate,
            horizon=horizon,
            seconds=time.perf_counter() - start,
        )
        if not estimate.accepted:
            warnings.warn(
                f"G-Blend estimate {self._estimates - 1} rejected (no head generalized); "
                f"keeping the weights in use {before}. optimizer.history[-1] holds the "
                "measurements.",
                BlendWarning,
                stacklevel=3,
            )
        self._apply(after)
        return record

    def _record(
        self,
        *,
        kind: str,
        before: Mapping[str, float],
        after: Mapping[str, float],
        estimate: BlendEstimate | None,
        horizon: int | None,
        seconds: float,
    ) -> dict[str, Any]:
        record = {
            "kind": kind,
            "epoch": self._epochs_started,
            "step": self._steps,
            "horizon": horizon,
            "weights_before": dict(before),
            "weights": dict(after),
            "estimate": None if estimate is None else estimate.to_dict(),
            "seconds": seconds,
        }
        self.history.append(record)
        return record

    # -- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict plus the blender's own state.

        ``{"optimizer": <wrapped optimizer's state_dict()>, "blender": {...}}`` holds only
        tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
        The blender part holds the weights, the statistics, the history, the schedule position
        (epochs started, steps, estimates made) and the estimator's state.
        """
        return {
            "optimizer": self.optimizer.state_dict(),
            "blender": {
                "version": _STATE_VERSION,
                "heads": list(self.heads),
                "weights": [self._weights[h] for h in self.heads],
                "epochs_started": self._epochs_started,
                "steps": self._steps,
                "estimates": self._estimates,
                "last_estimate_position": self._last_estimate_position,
                "statistics": self.statistics.state_dict(),
                "history": list(self.history),
                "estimator": {} if self.estimator is None else self.estimator.state_dict(),
            },
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load :meth:`state_dict`; checks heads and parameter counts first, naming what differs."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"optimizer", "blender"}:
            keys = (
                list(state_dict) if isinstance(state_dict, Mapping) else type(state_dict).__name__
            )
            raise ValueError(
                "`load_state_dict` expects a GradientBlender state dict with keys 'optimizer' and "
                f"'blender'. Found {keys}; to load a plain optimizer's state dict use "
                "`optimizer.optimizer.load_state_dict(...)`."
            )
        ours = state_dict["blender"]
        if ours.get("version") != _STATE_VERSION:
            raise ValueError(
                f"Unsupported GradientBlender state version {ours.get('version')!r} (this blendopt "
                f"reads version {_STATE_VERSION})."
            )
        if list(ours["heads"]) != self.heads:
            raise ValueError(
                f"The checkpoint's heads {list(ours['heads'])} differ from this blender's heads "
                f"{self.heads}; construct the blender with the checkpoint's heads in that order."
            )
        saved_groups = state_dict["optimizer"]["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"The checkpoint's optimizer has {len(saved_groups)} parameter groups, this one "
                f"has {len(self.param_groups)}; build the optimizer over the same parameter groups."
            )
        for index, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(
                    f"Parameter group {index} has {len(saved['params'])} parameters in the "
                    f"checkpoint and {len(group['params'])} here; build the optimizer over the "
                    "same model."
                )
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self._apply(dict(zip(self.heads, (float(w) for w in ours["weights"]), strict=True)))
        self._epochs_started = int(ours["epochs_started"])
        self._steps = int(ours["steps"])
        self._estimates = int(ours["estimates"])
        self._last_estimate_position = int(ours["last_estimate_position"])
        self.statistics.load_state_dict(ours["statistics"])
        self.history = list(ours["history"])
        if self.estimator is not None:
            self.estimator.load_state_dict(ours["estimator"])

    def __repr__(self) -> str:
        weights = ", ".join(f"{h!r}: {w:.4g}" for h, w in self._weights.items())
        return (
            f"GradientBlender({type(self.optimizer).__name__}, heads={self.heads}, "
            f"weights={{{weights}}}, estimator={self.estimator!r}, schedule={self.schedule!r}, "
            f"epochs_started={self._epochs_started}, steps={self._steps})"
        )


def _weighted_sum(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``values @ weights`` in their own dtype, also inside ``torch.autocast``.

    Autocast runs matmul in bf16/fp16, which would round the weights and the blended loss
    (w = 0.630 became 0.6289 under CPU bf16 autocast); a multiply-and-sum avoids it but costs
    ~5x the single matmul kernel on the CPU, so autocast is switched off around it instead.
    """
    device_type = values.device.type
    try:
        autocast = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        autocast = torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
    if not autocast:
        return values @ weights
    with torch.autocast(device_type, enabled=False):
        return values @ weights


def _on_the_blender(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``method`` on the blender itself when it is called through PyTorch Lightning's
    ``LightningOptimizer`` (what ``LightningModule.optimizers()`` returns).

    That wrapper takes the blender's class as a base class, so ``isinstance`` checks pass, and
    forwards the attributes it lacks to the blender: a method found on the class would run with
    the wrapper as ``self`` and write the weights, counters and history on the wrapper, where the
    blender (its steps, checkpoints and estimates) never sees them.
    """

    @functools.wraps(method)
    def run(self: GradientBlender, *args: Any, **kwargs: Any) -> Any:
        blender = self.__dict__.get("_optimizer")
        if isinstance(blender, GradientBlender) and blender is not self:
            return getattr(blender, method.__name__)(*args, **kwargs)
        return method(self, *args, **kwargs)

    return run


for _name in (
    "blend",
    "backward",
    "set_weights",
    "start_epoch",
    "estimate_now",
    "state_dict",
    "load_state_dict",
    "__repr__",
):
    setattr(GradientBlender, _name, _on_the_blender(getattr(GradientBlender, _name)))
