"""``GradientBlender``: the Optimizer facade over ``BlendWeights``, ``EstimationController``,
``NonFiniteMonitor`` and ``TrainStatistics``; one backward of Σ_k w_k L_k (Eq. 7)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.optim import Optimizer

from blendopt import _contract
from blendopt._controller import EstimationController, resolve_weighting
from blendopt._estimators import Estimator
from blendopt._finite import NonFiniteMonitor
from blendopt._schedule import Schedule
from blendopt._statistics import TrainStatistics
from blendopt._warnings import warn
from blendopt._weighting import BlendWeights, check_count, check_heads, check_losses, check_weights
from blendopt.warnings import UnblendedStepWarning

# {"state", "param_groups"} plus "blender" (one entry per piece).
_STATE_VERSION = 2


class GradientBlender(Optimizer):
    """Wrap ``optimizer`` to train a multi-head model on the G-Blend blended loss.

    ``param_groups``, ``state`` and ``defaults`` are the wrapped optimizer's own objects, so LR
    schedulers, gradient clipping, ``GradScaler`` and DDP work as with the plain optimizer::

        optimizer = GradientBlender(
            torch.optim.SGD(...), heads=["rgb", "audio", "fused"], estimator=..., schedule=...
        )
        for epoch in range(epochs):
            optimizer.start_epoch()  # estimates when the schedule says so
            for batch in loader:
                optimizer.zero_grad()
                optimizer.backward(loss_fn(model, batch))  # a dict head -> loss
                optimizer.step()

    Args:
        optimizer: the ``torch.optim.Optimizer`` to wrap.
        heads: the head names; ``backward`` expects exactly these keys.
        estimator: an :class:`Estimator`, a mapping head -> weight (:class:`FixedWeights`), or
            ``None`` (the weights stay at ``weights``).
        schedule: when to estimate (:class:`Offline` or :class:`Online`).
        weights: initial weights (default: the estimator's, else uniform 1/k), used as given.
        check_finite: ``True``: check every loss each step (a sync); ``False``: count on the
            device, report every ``check_finite_every`` steps and at estimates, epochs and
            checkpoints; ``None``: ``True`` on the CPU. Heads at weight > 0 raise, at 0 warn.
        check_finite_every: steps between reports with ``check_finite=False``.
        mask_zero_weights: leave heads at weight 0 out of the blend (``False``: keep ``0 · L_k``,
            as DDP without ``find_unused_parameters`` needs).

    Attributes:
        optimizer: the wrapped optimizer.
        heads: the heads, in order.
        statistics: per-head training-loss means per epoch (:class:`TrainStatistics`).
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
        check_finite_every: int = 1000,
        mask_zero_weights: bool = True,
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
        heads = check_heads(heads)
        estimator, schedule, initial = resolve_weighting(heads, estimator, schedule, weights)
        if estimator is not None:
            estimator.check_heads(heads)
        if not isinstance(mask_zero_weights, bool):
            raise TypeError(
                f"Parameter `mask_zero_weights` should be a bool. Found {mask_zero_weights!r}."
            )
        if check_finite is not None and not isinstance(check_finite, bool):
            raise TypeError(
                f"Parameter `check_finite` should be a bool or None. Found {check_finite!r}."
            )
        check_count("check_finite_every", check_finite_every, " (optimizer steps)")
        self.optimizer = optimizer
        # Optimizer.__init__ resets `state` and `param_groups` through the forwarding setters.
        own_state, own_groups = optimizer.state, optimizer.param_groups
        super().__init__(optimizer.param_groups, optimizer.defaults)
        optimizer.state, optimizer.param_groups = own_state, own_groups

        self.heads: list[str] = heads
        self._head_set = frozenset(heads)
        self.check_finite = check_finite
        self.check_finite_every = check_finite_every
        self._weighting = BlendWeights(heads, initial, mask=mask_zero_weights)
        self._finite = NonFiniteMonitor(heads)
        self._controller = EstimationController(
            self._weighting, optimizer, estimator, schedule, self._finite
        )
        self.statistics = TrainStatistics(heads)
        self._blends_since_step = 0
        self._warned_unblended = False

    param_groups = _contract.forwarded("param_groups")  # type: ignore[assignment]
    state = _contract.forwarded("state")  # type: ignore[assignment]
    defaults = _contract.forwarded("defaults")  # type: ignore[assignment]
    # GradScaler sets these on the optimizer it steps; a fused kernel reads the wrapped one's.
    grad_scale = _contract.forwarded("grad_scale")
    found_inf = _contract.forwarded("found_inf")

    @property
    def _step_supports_amp_scaling(self) -> bool:
        return bool(getattr(self.optimizer, "_step_supports_amp_scaling", False))

    # True while a closure runs again within one step (LBFGS): one record per step.
    _mute_statistics = False

    def __getstate__(self) -> dict[str, Any]:
        # Like `Optimizer.__getstate__`: hooks are not pickled (nor deep-copied).
        return _contract.picklable_state(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _contract.restore_hook_registries(self)
        self._patch_step_function()

    @property
    def estimator(self) -> Estimator | None:
        """The estimator (``None``: weights change only through :meth:`set_weights`)."""
        return self._controller.estimator

    @property
    def schedule(self) -> Schedule | None:
        """When estimates run (``None`` without an estimator that measures)."""
        return self._controller.schedule

    @property
    def history(self) -> list[dict[str, Any]]:
        """One record per weight change: estimates, rejections and manual changes."""
        return self._controller.history

    @history.setter
    def history(self, value: list[dict[str, Any]]) -> None:
        self._controller.history = value

    @property
    def weights(self) -> dict[str, float]:
        """The weights in use, head -> float (a copy)."""
        return self._weighting.values

    @property
    def average_weights(self) -> dict[str, float]:
        """Time-average of the weights over the steps so far (:attr:`weights` before a step)."""
        return self._weighting.average(step=self._controller.steps)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Use ``weights`` from now on (recorded in :attr:`history`; validated as ``weights=``)."""
        self._controller.set_weights(check_weights(weights, self.heads, "weights", warn_sum=True))

    def _nonfinite_checked(self, detached: torch.Tensor) -> None:
        device = detached.device
        in_blend = self._weighting.active_mask(device)
        for h, v, blended in zip(self.heads, detached.tolist(), in_blend.tolist(), strict=True):
            if not math.isfinite(v) and blended:
                raise ValueError(
                    f"The loss of head {h!r} is {v} (not finite) at step "
                    f"{self._controller.steps}. Lower the learning rate, clip gradients, or "
                    "check that head's inputs and labels."
                )
        # Only heads at weight 0, which the blend leaves out: record and warn.
        self._finite.record(torch.isfinite(detached), in_blend, self._controller.steps)
        self._finite.report("at blend()", to_step=self._controller.steps + 1)

    def blend(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The blended loss ``Σ_k w_k L_k`` (Eq. 7) with its graph; the caller backpropagates.

        Args:
            losses: head -> scalar loss, one entry per head.

        Returns:
            The blended loss, attached to the graph of every head at weight > 0.

        Raises:
            ValueError: an unknown or missing head, a non-scalar loss or one without grad, or a
                non-finite loss of a head at weight > 0 (see ``check_finite``).
            TypeError: ``losses`` is not a mapping of tensors.
            RuntimeError: an epoch schedule is set and :meth:`start_epoch` was never called.
        """
        self._check_constructed("blend")
        values = check_losses(losses, self.heads, self._head_set)
        controller = self._controller
        controller.before_first_blend()
        record = not self._mute_statistics
        if controller.estimator is not None and record:
            controller.estimator.observe(losses, step=controller.steps)
        device = values[0].device
        if any(v.device != device for v in values):  # model parallel: blend on the first device
            values = [v.to(device) for v in values]
        blended, detached = self._weighting.blend(values)
        check = self.check_finite if self.check_finite is not None else device.type == "cpu"
        if check:
            # With weights >= 0, the blend of all heads is finite exactly when every loss is.
            finite = (
                math.isfinite(blended.item())
                if self._weighting.all_active
                else bool(torch.isfinite(detached).all())
            )
            if not finite:
                self._nonfinite_checked(detached)
            if record:
                self.statistics.record(detached, finite_checked=finite)
        elif record:
            mask = torch.isfinite(detached)
            self._finite.record(mask, self._weighting.active_mask(device), controller.steps)
            self.statistics.record(detached, finite_checked=False, finite=mask)
        self._blends_since_step += 1
        return blended

    def backward(
        self,
        losses: Mapping[str, torch.Tensor],
        *,
        scaler: torch.amp.GradScaler | None = None,
        retain_graph: bool | None = None,
    ) -> torch.Tensor:
        """``blend(losses).backward()``: one backward pass of ``Σ_k w_k L_k``.

        Args:
            losses: head -> scalar loss, one entry per head.
            scaler: a ``torch.amp.GradScaler`` that scales the blended loss before backward.
            retain_graph: passed to ``Tensor.backward``.

        Returns:
            The blended loss, detached (errors: those of :meth:`blend`).
        """
        blended = self.blend(losses)
        (scaler.scale(blended) if scaler is not None else blended).backward(
            retain_graph=retain_graph
        )
        return blended.detach()

    def step(  # type: ignore[override]
        self, closure: Callable[[], float] | None = None, /, **kwargs: Any
    ) -> float | None:
        """Step the wrapped optimizer; with a step schedule, estimate when due.

        Warns once (:class:`UnblendedStepWarning`) if no :meth:`blend` ran since the last step.

        Args:
            closure: re-evaluates the model (LBFGS); only its first call records statistics.
            **kwargs: passed on to the wrapped optimizer's ``step``.

        Returns:
            What the wrapped optimizer's step returns.
        """
        if closure is not None:
            closure = self._record_first_call_only(closure)
        if kwargs.get("closure") is not None:
            kwargs["closure"] = self._record_first_call_only(kwargs["closure"])
        loss = _contract.step_inner(self.optimizer, closure, kwargs)
        if not self._blends_since_step and not self._warned_unblended:
            self._warn_unblended()
        self._blends_since_step = 0
        self._controller.after_step()
        if self._finite.pending and self._controller.steps % self.check_finite_every == 0:
            self._finite.report(
                f"every {self.check_finite_every} steps", to_step=self._controller.steps
            )
        return loss

    def _record_first_call_only(self, closure: Callable[[], Any]) -> Callable[[], Any]:
        calls = 0

        def closure_once() -> Any:
            nonlocal calls
            calls += 1
            self._mute_statistics = calls > 1
            try:
                return closure()
            finally:
                self._mute_statistics = False

        return closure_once

    def _warn_unblended(self) -> None:
        weights = self._weighting.values
        if self.estimator is None and len(set(weights.values())) == 1:
            return  # equal weights, no estimator: the plain summed loss trains the same way
        self._warned_unblended = True
        warn(
            f"optimizer.step() ran at step {self._controller.steps} with no "
            "optimizer.blend(losses)/optimizer.backward(losses) since the previous step, so the "
            "gradient did not come from the G-Blend loss (weights "
            f"{ {h: round(w, 4) for h, w in weights.items()} }). Replace "
            "`sum(losses.values()).backward()` by `optimizer.backward(losses)` (or backpropagate "
            "`optimizer.blend(losses)`). Warned once.",
            UnblendedStepWarning,
        )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear the gradients of the wrapped optimizer's parameters."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group to the wrapped optimizer."""
        self.optimizer.add_param_group(param_group)

    def start_epoch(self) -> dict[str, Any] | None:
        """Start an epoch (on every rank, before its first ``backward``); estimate if due.

        Returns:
            The history record of the estimate made now, or ``None``.

        Raises:
            FloatingPointError: non-finite losses of heads at weight > 0 were counted.
        """
        self.statistics.close_epoch(self._controller.epochs_started - 1)
        where = f"at start_epoch() (epoch {self._controller.epochs_started})"
        self._finite.report(where, to_step=self._controller.steps)
        return self._controller.start_epoch()

    def estimate_due(self) -> bool:
        """Whether the next :meth:`start_epoch` (or :meth:`step`) will run an estimate."""
        controller = self._controller
        if controller.schedule is None:
            return False
        if controller.schedule.unit == "epoch":
            return controller.is_due(controller.epochs_started)
        return controller.is_due(controller.steps + 1) or controller.is_due(controller.steps)

    def estimate_now(self, horizon: int | None = None) -> dict[str, Any]:
        """Run the estimator now, outside the schedule, and apply the result.

        Args:
            horizon: n for the estimate, in the schedule's unit (epochs by default).

        Returns:
            The history record (``ValueError`` without an estimator).
        """
        return self._controller.estimate(
            horizon, self.schedule.unit if self.schedule is not None else "epoch"
        )

    def state_dict(self) -> dict[str, Any]:
        """The wrapped optimizer's state dict plus the blender's own state under ``"blender"``.

        The plain optimizer loads it too; ``torch.load(weights_only=True)`` reads it.
        """
        self._check_constructed("state_dict")
        self._finite.report("at state_dict()", to_step=self._controller.steps)
        _contract.run_hooks(self._optimizer_state_dict_pre_hooks, self)
        state_dict = dict(self.optimizer.state_dict())
        state_dict["blender"] = {
            "version": _STATE_VERSION,
            "heads": list(self.heads),
            "weighting": self._weighting.state_dict(),
            "controller": self._controller.state_dict(),
            "statistics": self.statistics.state_dict(),
            "finite": self._finite.state_dict(),
        }
        return _contract.run_hooks(self._optimizer_state_dict_post_hooks, self, state_dict)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict of this blender, or of the plain optimizer (blender state kept).

        Raises:
            TypeError: ``state_dict`` is not a mapping.
            ValueError: an unknown layout or version, other heads, or other parameter counts.
        """
        self._check_constructed("load_state_dict")
        if not isinstance(state_dict, Mapping):
            raise TypeError(
                "Parameter `state_dict` should be a mapping (from `optimizer.state_dict()`). "
                f"Found {type(state_dict).__name__}."
            )
        state_dict = _contract.run_hooks(
            self._optimizer_load_state_dict_pre_hooks, self, dict(state_dict)
        )
        if "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError(
                "`load_state_dict` expects an optimizer state dict with keys 'state' and "
                f"'param_groups' (plus 'blender' from a GradientBlender). Found keys "
                f"{list(state_dict)}."
            )
        inner = {k: v for k, v in state_dict.items() if k != "blender"}
        ours = state_dict.get("blender")
        if ours is not None:
            ours = self._check_blender_state(ours)
        try:
            self.optimizer.load_state_dict(inner)
        except ValueError as error:  # torch checks the group and parameter counts: show them
            saved = [len(group["params"]) for group in inner["param_groups"]]
            here = [len(group["params"]) for group in self.param_groups]
            if saved == here:
                raise
            raise ValueError(
                f"{error}: the checkpoint's parameter groups hold {saved} parameters, this "
                f"optimizer's {here}; build the optimizer over the same model and parameter "
                "groups."
            ) from error
        if ours is not None:
            self._weighting.load_state_dict(ours["weighting"])
            self._controller.load_state_dict(ours["controller"])
            self.statistics.load_state_dict(ours["statistics"])
            self._finite.load_state_dict(ours["finite"])
        self._blends_since_step = 0
        _contract.run_hooks(self._optimizer_load_state_dict_post_hooks, self)

    def _check_blender_state(self, ours: Any) -> Mapping[str, Any]:
        if not isinstance(ours, Mapping):
            raise TypeError(
                "The state dict's 'blender' entry should be a mapping (from "
                f"`GradientBlender.state_dict()`). Found {type(ours).__name__}."
            )
        if ours.get("version") != _STATE_VERSION:
            raise ValueError(
                f"Unsupported GradientBlender state version {ours.get('version')!r} (this blendopt "
                f"reads version {_STATE_VERSION}, what `GradientBlender.state_dict()` writes)."
            )
        if list(ours["heads"]) != self.heads:
            raise ValueError(
                f"The checkpoint's heads {list(ours['heads'])} differ from this blender's heads "
                f"{self.heads}; construct the blender with the checkpoint's heads in that order."
            )
        return ours

    def _check_constructed(self, method: str) -> None:
        # Refuse a wrapper that subclasses the blender's class (LightningOptimizer).
        if "_controller" not in self.__dict__:
            raise TypeError(
                f"GradientBlender.{method}() was called on a {type(self).__name__}, which wraps "
                "a GradientBlender without being one, so the blender would not see the call. "
                "With PyTorch Lightning, `import blendopt.integrations.lightning` (it holds "
                "GradientBlendCallback) before `trainer.fit`; elsewhere, call the blender itself."
            )

    def __repr__(self) -> str:
        # On a LightningOptimizer `self.optimizer` is the blender: name the controller's optimizer.
        weights = ", ".join(f"{h!r}: {w:.4g}" for h, w in self.weights.items())
        controller = self._controller
        return (
            f"{self.__class__.__name__}({type(controller.optimizer).__name__}, "
            f"heads={self.heads}, weights={{{weights}}}, estimator={self.estimator!r}, "
            f"schedule={self.schedule!r}, epochs_started={controller.epochs_started}, "
            f"steps={controller.steps})"
        )
