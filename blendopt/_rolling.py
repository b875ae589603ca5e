"""``RollingEstimator``: G-Blend weights from the joint run itself, no model copies.

Two modes, each a small strategy with its own parameters: :class:`GradientMode` (Proposition 1
from per-head gradient inner products, the default) and :class:`LossMode` (Algorithm 1's coarse
rule from loss statistics). Both then apply, recorded in the estimate's ``notes`` and fields:

1. shrinkage (``shrink=True``): a head's weight ``g/σ²`` is pulled toward the prior weights by
   its own noise, ``1 - c = SE(g)²/g² + SE(σ²)²/(σ²)²`` (capped at 1; block means: the window's
   measurements are autocorrelated), so a gain within its SE, or a σ² as noisy as itself, keeps
   the prior;
2. floor (``floor=0.05``): every head keeps at least ``floor``, so it keeps learning;
3. smoothing: ``w ← (1 - c) w_new + c w_old`` with ``c = smoothing × left``, ``left`` the share
   of the previous estimate's evidence that the new one does not hold (the measurements that
   left the window since; all of it in loss mode; none before the first estimate, since the
   initial weights are no evidence), so no measurement is counted twice.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from blendopt._distributed import rank_means, unwrap_model, world_size
from blendopt._estimators import EstimateRequest, Estimator
from blendopt._math import BlendEstimate, check_floor, correlated_blend, weight_rule
from blendopt._measure import LossFn, MetricFn, measure_per_sample
from blendopt._noise import mean_and_standard_error, reduced_moments
from blendopt._rng import derive_seed, isolated_rng
from blendopt._schedule import Schedule

Mode = Literal["gradient", "loss"]
ParamScope = Literal["private", "all"]


class _Cycle:
    """Endless loader batches, each drawn under its own seeded CPU generator state."""

    def __init__(self, loader: Iterable[Any], seed: int) -> None:
        self.loader, self.seed = loader, seed
        self.draws = self.pass_start = 0  # pass_start: the draw that started the current pass
        self._it: Iterator[Any] | None = None

    def restore(self, draws: int, pass_start: int) -> None:
        """Replay the current pass up to ``draws`` (after loading a checkpoint)."""
        self._it = None
        self.draws = self.pass_start = pass_start
        for _ in range(draws - pass_start):
            self.next()

    def next(self) -> Any:
        outer = torch.get_rng_state()
        torch.default_generator.manual_seed(derive_seed(self.seed, self.draws))
        self.draws += 1
        try:
            batch = None if self._it is None else next(self._it, None)
            if batch is None:  # a new pass
                self._it, self.pass_start = iter(self.loader), self.draws - 1
                batch = next(self._it, None)
                if batch is None:
                    raise ValueError("The holdout/probe loader is empty; pass a non-empty loader.")
        finally:
            torch.set_rng_state(outer)
        return batch


def _check_count(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Parameter `{name}` should be an int >= 1. Found {value!r}.")
    return value


@dataclass
class _Stats:
    """Per head: gain (dG), overfitting (dO), their SEs, σ² for the weight rule; the loss means."""

    gain: dict[str, float] = field(default_factory=dict)
    gain_se: dict[str, float] = field(default_factory=dict)
    over: dict[str, float] = field(default_factory=dict)
    over_se: dict[str, float] = field(default_factory=dict)
    variance: dict[str, float] = field(default_factory=dict)
    variance_se: dict[str, float] = field(default_factory=dict)  # empty: σ² taken as exact
    measurements: dict[str, dict[str, float]] = field(default_factory=dict)


class GradientMode:
    """Proposition 1 from per-head gradient inner products (``RollingEstimator``'s default).

    Every ``interval`` steps, inside ``GradientBlender.blend``, it takes per-head gradients
    ``v_k = ∇L_k`` on the training batch, ``∇L^V_k`` on a holdout batch and ``∇L^T_k`` on a
    probe batch (eval mode; without a probe ``v_k``) and keeps per head (§2.2, Eq. 4-5; appendix
    C) the gain ``g_k = ⟨∇L^V_k, v_k⟩`` (dG) and the overfitting ``o_k = ⟨∇L^T_k - ∇L^V_k, v_k⟩``
    (dO). Over the last ``window`` measurements ``w_k ∝ mean(g_k) / (2 mean(o_k²))`` (Eq. 6), or
    with ``correlated`` ``w ∝ Σ⁻¹ mean(g)``, ``Σ_kj = mean(o_k o_j)`` (appendix C).

    Args:
        interval: measure every ``interval`` optimizer steps.
        window: an estimate uses the last ``window`` measurements.
        min_measurements: no estimate before the window holds this many.
        params: ``"private"``: each head's parameters that only its loss reaches (a short
            backward); ``"all"``: every parameter its loss reaches.
        correlated: the correlated form of appendix C.
        warmup_interval: until ``min_measurements`` are in, measure every
            ``min(warmup_interval, interval)`` steps (so a ~100-step run estimates).

    Raises:
        ValueError: a count < 1, ``min_measurements > window``, an unknown ``params``.
    """

    name = "gradient"

    def __init__(
        self,
        *,
        interval: int = 20,
        window: int = 12,
        min_measurements: int = 8,
        params: ParamScope = "private",
        correlated: bool = False,
        warmup_interval: int = 5,
    ) -> None:
        if params not in ("private", "all"):
            raise ValueError(f"Parameter `params` should be 'private' or 'all'. Found {params!r}.")
        self.interval = _check_count("interval", interval)
        self.warmup_interval = _check_count("warmup_interval", warmup_interval)
        self.window = _check_count("window", window)
        self.min_measurements = _check_count("min_measurements", min_measurements)
        if min_measurements > window:
            raise ValueError(
                f"Parameter `min_measurements` ({min_measurements}) should be <= `window` "
                f"({window}); lower it or widen the window."
            )
        self.params: ParamScope = params
        self.correlated = correlated
        self._reset()

    def _reset(self) -> None:
        self._scopes: dict[str, list[nn.Parameter]] | None = None  # head -> its parameters
        self._shortcut: list[str] = []  # heads whose scope no other head's loss reaches
        self._last_window: tuple[int, int] | None = None  # measurements of the last estimate
        self._rows: list[list[float]] = []  # one per measurement: [g_1..g_K, o_1..o_K]
        self.measurements = 0

    def observe(self, est: RollingEstimator, losses: Mapping[str, torch.Tensor], step: int) -> None:
        """Measure the inner products every ``interval`` steps (more often while warming up)."""
        warming = len(self._rows) < self.min_measurements
        if step % (min(self.warmup_interval, self.interval) if warming else self.interval) == 0:
            self._measure(est, losses)

    def waiting_for(self) -> str | None:
        """Why no estimate can be made yet (``None``: the window is ready)."""
        if len(self._rows) >= self.min_measurements:
            return None
        return (
            f"{len(self._rows)} of {self.min_measurements} gradient measurements in the window "
            f"(one every {min(self.warmup_interval, self.interval)} steps until they are in)"
        )

    def _find_scopes(self, losses: Mapping[str, torch.Tensor], model: nn.Module) -> None:
        """Each head's scope; the heads whose scope no other loss reaches take one backward."""
        params = [p for p in unwrap_model(model).parameters() if p.requires_grad]
        reached = {h: _reached(loss, params) for h, loss in losses.items()}
        self._scopes, self._shortcut = {}, []
        for h in losses:
            others = set().union(*(reached[o] for o in losses if o != h))
            private = reached[h] - others if self.params == "private" else set()
            if not reached[h]:
                raise ValueError(
                    f"The loss of head {h!r} reaches no trainable parameter of the model; "
                    "pass the model whose outputs `loss_fn` uses."
                )
            self._scopes[h] = [params[i] for i in sorted(private or reached[h])]
            if not others.intersection(private or reached[h]):
                self._shortcut.append(h)
        inside = {id(p) for scope in self._scopes.values() for p in scope}
        self._outside = [p for p in params if id(p) not in inside]
        # One backward group for the shortcut heads, then one per other head.
        shared = [[h] for h in losses if h not in self._shortcut]
        self._groups = [g for g in [list(self._shortcut), *shared] if g]
        self._sizes = {h: sum(p.numel() for p in scope) for h, scope in self._scopes.items()}

    def _measure(self, est: RollingEstimator, losses: Mapping[str, torch.Tensor]) -> None:
        heads = list(est._heads or losses)
        if self._scopes is None:
            self._find_scopes(losses, est.model)
        holdout, probe = est._eval_losses(heads, self._outside)
        groups: Iterable[tuple[list[str], list[torch.Tensor]]]
        groups = self._flat_gradients(losses, holdout, probe)
        if world_size() > 1:  # the global batches' gradients (one rank's noise), one collective
            groups = list(groups)
            means = iter(rank_means([t for _, ts in groups for t in ts]))
            groups = [(names, [next(means) for _ in ts]) for names, ts in groups]
        sums: dict[str, torch.Tensor] = {}  # head -> (g, o) on the device
        for names, (v, gv, *gt) in groups:  # without a probe ∇L^T is v itself
            products = torch.stack([gv * v, ((gt[0] if gt else v) - gv) * v])
            parts = products.split([self._sizes[h] for h in names], dim=1)
            sums.update((h, part.sum(1)) for h, part in zip(names, parts, strict=True))
        values = torch.stack([sums[h] for h in heads], 1).reshape(-1).tolist()  # the one sync
        if not all(math.isfinite(x) for x in values):
            raise FloatingPointError(
                f"A per-head gradient inner product is not finite ({values}); lower the "
                "learning rate or check the holdout batches."
            )
        self._rows.append(values)
        del self._rows[: -self.window]
        self.measurements += 1

    def _flat_gradients(
        self,
        losses: Mapping[str, torch.Tensor],
        holdout: Mapping[str, torch.Tensor],
        probe: Mapping[str, torch.Tensor] | None,
    ) -> Iterator[tuple[list[str], list[torch.Tensor]]]:
        """Per group (the shortcut heads, then each other head) ``[v, ∇L^V(, ∇L^T)]`` over its
        scopes, flat in float64; one group at a time, so never K gradient copies at once."""
        scope, groups = self._scopes or {}, self._groups
        for i, names in enumerate(groups):
            params = [p for h in names for p in scope[h]]
            grads = [
                torch.autograd.grad(
                    sum(side[h] for h in names),
                    params,
                    retain_graph=side is losses or i < len(groups) - 1,
                    allow_unused=True,
                )
                for side in (losses, holdout, *([] if probe is None else [probe]))
            ]
            yield names, [_flat(g, params) for g in grads]

    def estimate(
        self, est: RollingEstimator, heads: list[str], current: dict[str, float]
    ) -> BlendEstimate:
        """Weights from the rolling window (Eq. 6, or appendix C with ``correlated``)."""
        if len(self._rows) < self.min_measurements:
            n = f"{len(self._rows)} of {self.min_measurements}"
            return _keep(current, f"{n} measurements in the window; weights kept")
        order = est._heads or heads
        if sorted(order) != sorted(heads):
            raise ValueError(
                f"The estimator measured heads {order}, the blender asks for {heads}; use one "
                "estimator per blender."
            )
        k, cols = len(order), [order.index(h) for h in heads]
        rows = np.asarray(self._rows, dtype=np.float64)
        g_rows, o_rows = rows[:, cols], rows[:, k:][:, cols]
        stats = _Stats()
        for i, h in enumerate(heads):  # block means: overlapping, autocorrelated measurements
            stats.gain[h], stats.gain_se[h] = mean_and_standard_error(g_rows[:, i], block="auto")
            stats.over[h], stats.over_se[h] = mean_and_standard_error(o_rows[:, i], block="auto")
            # Eq. 6's 2σ_k² and its SE: the weight g/σ² is as noisy as both (reliability)
            stats.variance[h], stats.variance_se[h] = mean_and_standard_error(
                2.0 * o_rows[:, i] ** 2, block="auto"
            )
        raw = None
        notes: list[str] = [f"gradient window of {len(rows)} measurements"]
        if self.correlated:
            sigma = o_rows.T @ o_rows / len(rows)
            ridge = 1e-6 * float(np.trace(sigma)) / k or 1.0  # relative: unit-free weights
            try:
                w = correlated_blend([stats.gain[h] for h in heads], sigma + ridge * np.eye(k))
                raw = dict(zip(heads, w.tolist(), strict=True))
            except ValueError as error:
                notes.append(f"correlated form failed ({error}); diagonal form used")
        # The previous weights carry only the evidence that has left the window since.
        window = (self.measurements - len(rows), self.measurements)
        last = self._last_window
        left = 0.0 if last is None else min(max(window[0] - last[0], 0) / (last[1] - last[0]), 1)
        out = est._finish(heads, current, stats, raw, notes, left)
        if out.accepted:
            self._last_window = window
        return out

    def state_dict(self) -> dict[str, Any]:
        """The measurement window, its counter and the last estimate's window."""
        rows, last = [list(r) for r in self._rows], self._last_window
        return {"rows": rows, "measurements": self.measurements, "last_window": last and list(last)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the keys of a ``RollingEstimator`` state dict)."""
        self._rows = [list(r) for r in state_dict["rows"]]
        self.measurements = int(state_dict["measurements"])
        last = state_dict.get("last_window")
        self._last_window = None if last is None else (int(last[0]), int(last[1]))

    def describe(self) -> str:
        """The parameters, for ``repr``."""
        return (
            f"interval={self.interval}, window={self.window}, params={self.params!r}, "
            f"correlated={self.correlated}, warmup_interval={self.warmup_interval}"
        )

    def __repr__(self) -> str:
        return f"GradientMode({self.describe()}, min_measurements={self.min_measurements})"


def _reached(loss: torch.Tensor, params: list[nn.Parameter]) -> set[int]:
    """Indices of the ``params`` that ``loss``'s graph reaches (a walk, no backward)."""
    index = {id(p): i for i, p in enumerate(params)}
    found: set[int] = set()
    seen: set[Any] = set()
    stack = [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf
        if variable is not None and id(variable) in index:
            found.add(index[id(variable)])
        stack.extend(n for n, _ in node.next_functions)
    return found


def _flat(grads: Sequence[torch.Tensor | None], params: list[nn.Parameter]) -> torch.Tensor:
    """One float64 vector of gradients over ``params`` (a missing one as zeros)."""
    pairs = zip(grads, params, strict=True)
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in pairs]
    ).double()


class LossMode:
    """Algorithm 1's coarse rule from the run's own loss statistics (``mode="loss"``).

    At each boundary the holdout (and probe) values per sample (eval mode); dG and dO between
    consecutive boundaries (Eq. 3) with paired standard errors. Without a probe the train side
    is the mean of the per-step training losses since the previous boundary.

    Args:
        metric: ``metric(model, batch) -> {head: per-sample values}`` (default ``loss_fn``,
            whose batch means pair whole batches; per-sample values give tighter SEs).

    Raises:
        TypeError: ``metric`` is not callable.
    """

    name = "loss"

    def __init__(self, *, metric: MetricFn | None = None) -> None:
        if metric is not None and not callable(metric):
            raise TypeError(f"Parameter `metric` should be callable or None. Found {metric!r}.")
        self.metric = metric
        self._reset()

    def _reset(self) -> None:
        self._step_losses: list[torch.Tensor] = []  # without a probe, on the device
        self._previous: dict[str, Any] | None = None
        self._estimated = False  # an estimate was accepted

    def waiting_for(self) -> str | None:
        """Why the next boundary only records a baseline (``None``: it estimates)."""
        if self._previous is not None and self._previous["train"] is not None:
            return None
        return "no loss boundary recorded yet: the next one records the baseline"

    def observe(self, est: RollingEstimator, losses: Mapping[str, torch.Tensor], step: int) -> None:
        """Record the per-step training losses (without a probe), on their device."""
        if est.probe is None:
            heads = est._heads or list(losses)
            self._step_losses.append(torch.stack([losses[h].detach() for h in heads]))

    def estimate(
        self, est: RollingEstimator, heads: list[str], current: dict[str, float]
    ) -> BlendEstimate:
        """Weights from the last two boundaries' loss statistics (Eq. 3, paired errors)."""
        holdout, train = self._measure(est, heads)
        previous, self._previous = self._previous, {"holdout": holdout, "train": train}
        if previous is None or train is None or previous["train"] is None:
            return _keep(current, "first loss boundary recorded; weights kept")
        columns = {}  # means and SEs from n, Σx, Σx² summed over the ranks, one collective
        for h in heads:
            for side, now in (("holdout", holdout), ("train", train)):
                columns[f"{side}_before:{h}"], columns[f"{side}_after:{h}"] = (
                    previous[side][h],
                    now[h],
                )
            columns[f"dV:{h}"] = previous["holdout"][h] - holdout[h]
            if est.probe is not None:  # the same probe samples: paired
                columns[f"dT:{h}"] = train[h] - previous["train"][h]
        m = reduced_moments(columns)
        stats = _Stats()
        for key in ("holdout_before", "holdout_after", "train_before", "train_after"):
            stats.measurements[key] = {h: m[f"{key}:{h}"][0] for h in heads}
        for h in heads:
            stats.gain[h], stats.gain_se[h] = m[f"dV:{h}"]  # dG (Eq. 3), paired SE
            d_train = m[f"train_after:{h}"][0] - m[f"train_before:{h}"][0]
            stats.over[h] = -stats.gain[h] - d_train  # dO = (V1 - T1) - (V0 - T0) (Eq. 3)
            sides = ["dT"] if est.probe is not None else ["train_before", "train_after"]
            se_t2 = sum(m[f"{side}:{h}"][1] ** 2 for side in sides)  # else independent steps
            stats.over_se[h] = math.sqrt(stats.gain_se[h] ** 2 + se_t2)
            stats.variance[h] = stats.over[h] ** 2 + stats.over_se[h] ** 2
        notes = ["loss statistics between boundaries"]  # disjoint from the previous estimate's
        out = est._finish(heads, current, stats, None, notes, float(self._estimated))
        self._estimated = self._estimated or out.accepted
        return out

    def _measure(
        self, est: RollingEstimator, heads: list[str]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Per-sample holdout values and the train side (probe values or the step losses)."""
        net = unwrap_model(est.model)
        metric = self.metric if self.metric is not None else est.loss_fn
        with isolated_rng(derive_seed(est.seed, 3)):
            holdout = measure_per_sample(net, metric, est.holdout, heads, name="metric")
        train: dict[str, torch.Tensor] | None
        if est.probe is not None:
            with isolated_rng(derive_seed(est.seed, 3)):
                train = measure_per_sample(net, metric, est.probe, heads, name="metric")
        elif not self._step_losses:
            train = None
        else:
            order = est._heads or heads
            steps = torch.stack(self._step_losses).to("cpu", torch.float64)
            train = {h: steps[:, order.index(h)] for h in heads}
        self._step_losses = []
        return holdout, train

    def state_dict(self) -> dict[str, Any]:
        """The step losses since the last boundary and the last boundary's values."""
        return {
            "step_losses": [r.detach().to("cpu", torch.float64) for r in self._step_losses],
            "previous": copy.deepcopy(self._previous),
            "estimated": self._estimated,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (the keys of a ``RollingEstimator`` state dict)."""
        self._step_losses = [torch.as_tensor(r).clone() for r in state_dict["step_losses"]]
        self._previous = copy.deepcopy(state_dict["previous"])
        self._estimated = bool(state_dict.get("estimated", False))

    def describe(self) -> str:
        """The parameters, for ``repr``."""
        metric = None if self.metric is None else getattr(self.metric, "__qualname__", "custom")
        return f"metric={metric!r}"

    def __repr__(self) -> str:
        return f"LossMode({self.describe()})"


Strategy = GradientMode | LossMode
_GRADIENT_OPTIONS = ("interval", "window", "min_measurements", "params", "correlated")
_LOSS_OPTIONS = ("metric",)


def _strategy(mode: Mode | Strategy, options: dict[str, Any]) -> Strategy:
    """A fresh copy of the mode given, or one built from its name (and deprecated options)."""
    unknown = [k for k in options if k not in _GRADIENT_OPTIONS + _LOSS_OPTIONS]
    if unknown:
        raise TypeError(f"RollingEstimator() got an unexpected keyword argument {unknown[0]!r}")
    if isinstance(mode, (GradientMode, LossMode)):
        if options:
            raise TypeError(
                f"Pass {sorted(options)} to the mode object ({type(mode).__name__}(...)), not "
                "to RollingEstimator, when `mode` is one."
            )
        strategy = copy.copy(mode)
        strategy._reset()  # its own state: a mode object may serve several estimators
        return strategy
    if mode not in ("gradient", "loss"):
        raise ValueError(f"Parameter `mode` should be 'gradient' or 'loss'. Found {mode!r}.")
    gradient = GradientMode(**{k: v for k, v in options.items() if k in _GRADIENT_OPTIONS})
    loss = LossMode(**{k: v for k, v in options.items() if k in _LOSS_OPTIONS})
    if options:
        new = "GradientMode" if mode == "gradient" else "LossMode"
        given = ", ".join(f"{k}=..." for k in options)
        message = f"RollingEstimator({given}) is deprecated: pass mode={new}({given}) (options"
        message += " of the other mode are ignored, as before). The flat spelling goes in the next"
        warnings.warn(message + " release.", DeprecationWarning, stacklevel=3)
    return gradient if mode == "gradient" else loss


class RollingEstimator(Estimator):
    """G-Blend weights from the joint run's own per-head gradients or statistics (no copies).

    Two-line use (the schedule defaults to :meth:`default_schedule`)::

        est = blendopt.RollingEstimator(model, loss_fn, holdout_loader)
        optimizer = blendopt.GradientBlender(torch.optim.SGD(...), heads, est)

    With the defaults the first estimate comes once 8 measurements are in (step ~36), then
    every ``every`` steps; a checkpoint before any estimate warns once (``NoEstimateWarning``).
    A measurement costs about two forwards of a holdout/probe batch plus short backwards:
    pass loaders with the training batch size (docs/estimators.md).

    Args:
        model: the model being trained (DDP/compiled models are unwrapped for the holdout pass).
        loss_fn: ``loss_fn(model, batch) -> {head: scalar loss}``.
        holdout: holdout loader V (never trained on).
        probe: train-probe loader T' (training data, eval mode); without it the training
            batch's gradient (gradient mode, biased up by its noise) or losses (loss mode).
        mode: :class:`GradientMode` (``"gradient"``, the default) or :class:`LossMode`.
        prior: ``"uniform"`` or ``"previous"`` (the weights in use): where shrinkage pulls.
        shrink: apply the noise shrinkage (``False``: raw OGR weights, for studies).
        floor: minimum weight of every head, in [0, 1/K).
        smoothing: weight of the previous weights, times the share of their evidence that
            left the window, in [0, 1) (module docstring).
        every: steps between estimates of :meth:`default_schedule`.
        eps: relative floor of σ_k².
        seed: seed of the holdout/probe batch draws (the training run's RNG is not touched).
        **mode_options: deprecated flat spelling of the mode's parameters.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``, ``loss_fn``/``metric`` not callable.
        ValueError: an unknown ``mode``/``params``/``prior``, a count < 1,
            ``min_measurements > window``, ``smoothing``/``floor``/``eps`` out of range.
    """

    def __init__(  # noqa: PLR0913  12 parameters as torch.optim.Adam; mode options in `mode`
        self,
        model: nn.Module,
        loss_fn: LossFn,
        holdout: Iterable[Any],
        *,
        probe: Iterable[Any] | None = None,
        mode: Mode | Strategy = "gradient",
        prior: Literal["uniform", "previous"] = "uniform",
        shrink: bool = True,
        floor: float = 0.05,
        smoothing: float = 0.5,
        every: int = 50,
        eps: float = 1e-12,
        seed: int = 0,
        **mode_options: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"Parameter `model` should be an nn.Module. Found {type(model).__name__}."
            )
        if not callable(loss_fn):
            raise TypeError(
                "Parameter `loss_fn` should be callable `(model, batch) -> {head: loss}`. "
                f"Found {loss_fn!r}."
            )
        self.strategy: Strategy = _strategy(mode, mode_options)
        if prior not in ("uniform", "previous"):
            raise ValueError(
                f"Parameter `prior` should be 'uniform' or 'previous'. Found {prior!r}."
            )
        self.every = _check_count("every", every)
        if not (isinstance(smoothing, (int, float)) and 0.0 <= smoothing < 1.0):
            raise ValueError(f"Parameter `smoothing` should be in [0, 1). Found {smoothing!r}.")
        if not (isinstance(floor, (int, float)) and 0.0 <= floor < 0.5):
            raise ValueError(f"Parameter `floor` should be in [0, 1/K) (K heads). Found {floor!r}.")
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
            raise ValueError(f"Parameter `eps` should be a finite number > 0. Found {eps!r}.")
        self.model, self.loss_fn, self.holdout, self.probe = model, loss_fn, holdout, probe
        self.prior, self.shrink, self.seed = prior, shrink, seed
        self.floor, self.smoothing, self.eps = float(floor), float(smoothing), float(eps)
        self._holdout_batches = _Cycle(holdout, derive_seed(seed, 1))
        self._probe_batches = None if probe is None else _Cycle(probe, derive_seed(seed, 2))
        self._heads: list[str] | None = None  # in the order of the first losses observed
        self._last_step: int | None = None  # steps done at the last estimate

    @property
    def mode(self) -> Mode:
        """``"gradient"`` or ``"loss"``: the name of :attr:`strategy`."""
        return self.strategy.name  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        # The mode's parameters read through the estimator, as before (``est.interval``).
        if name in _GRADIENT_OPTIONS + _LOSS_OPTIONS and "strategy" in self.__dict__:
            return getattr(self.strategy, name)
        raise AttributeError(f"'RollingEstimator' object has no attribute {name!r}")

    @property
    def measurements(self) -> int:
        """Gradient measurements made so far (0 in loss mode)."""
        return getattr(self.strategy, "measurements", 0)

    def default_schedule(self) -> Schedule:
        """Estimate as soon as the mode can (:meth:`waiting_for`), then every ``every`` steps."""
        return WhenReady(self)

    def waiting_for(self) -> str | None:
        """Why no estimate can be made yet (``None``: it can); the blender then skips it."""
        return self.strategy.waiting_for()

    def _ready(self) -> bool:
        """Whether the default schedule may request now (loss mode: every boundary counts)."""
        return self.mode == "loss" or self.waiting_for() is None

    def check_heads(self, heads: Sequence[str]) -> None:
        """Check ``floor < 1/K`` for the blender's K heads."""
        check_floor(self.floor, len(heads))

    def observe(self, losses: Mapping[str, torch.Tensor], *, step: int) -> None:
        """Measure (gradient mode) or record the step's losses (loss mode without a probe)."""
        if self._heads is None:
            self._heads = list(losses)
        self.strategy.observe(self, losses, step)

    def _eval_losses(
        self, heads: Sequence[str], frozen: Sequence[nn.Parameter]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """Next holdout (and probe) batch's losses in eval mode, ``frozen`` out of the graph."""
        cycles = (self._holdout_batches, self._probe_batches)
        batches = [c.next() for c in cycles if c is not None]
        net = unwrap_model(self.model)
        was_training = net.training
        net.eval()  # once for both batches: a model's train() walks every module
        for p in frozen:
            p.requires_grad_(False)
        try:
            with torch.enable_grad():
                values = [self.loss_fn(net, batch) for batch in batches]
        finally:
            net.train(was_training)
            for p in frozen:
                p.requires_grad_(True)
        missing = [h for v in values for h in heads if h not in v]
        if missing:
            raise ValueError(
                f"`loss_fn` returned no loss for head {missing[0]!r} on a holdout/probe batch."
            )
        out = [{h: v[h] for h in heads} for v in values]
        return out[0], out[1] if len(out) > 1 else None

    def estimate(self, request: EstimateRequest) -> BlendEstimate:
        """Weights from the rolling window (gradient mode) or the last two boundaries (loss)."""
        if self._ready():
            self._last_step = request.steps_done
        return self.strategy.estimate(self, list(request.heads), dict(request.weights))

    def _prior(self, heads: Sequence[str], current: Mapping[str, float]) -> dict[str, float]:
        if self.prior == "previous":
            return {h: float(current[h]) for h in heads}
        return {h: 1.0 / len(heads) for h in heads}

    def _finish(
        self,
        heads: list[str],
        current: dict[str, float],
        stats: _Stats,
        raw: dict[str, float] | None,
        notes: list[str],
        left: float,
    ) -> BlendEstimate:
        """Shrinkage, floor, smoothing by ``smoothing × left`` (module docstring)."""
        prior = self._prior(heads, current)
        none = dict.fromkeys(heads, 0.0)
        se = stats.gain_se if self.shrink else none
        vse = (stats.variance_se or none) if self.shrink else none
        rule = {"prior": prior, "raw": raw, "eps": self.eps, "floor": self.floor}
        result = weight_rule(
            stats.gain, stats.variance, gain_se=se, variance_se=vse, fallback=current, **rule
        )
        notes.extend(result.notes)
        weights, carry = result.weights, self.smoothing * left
        if result.accepted and carry > 0:
            weights = {h: (1.0 - carry) * weights[h] + carry * current[h] for h in heads}
            total = sum(weights.values())
            weights = {h: w / total for h, w in weights.items()}
            notes.append(f"smoothed: {carry:.3g} of the previous weights (smoothing × {left:.3g})")
        return BlendEstimate(
            weights=weights,
            generalization=stats.gain,
            overfitting_change=stats.over,
            accepted=result.accepted,
            notes=tuple(notes),
            measurements=stats.measurements,
            generalization_se=stats.gain_se,
            overfitting_change_se=stats.over_se,
            raw_weights=result.raw,
            prior=prior if self.shrink else None,
            floored=result.floored,
            zeroed=tuple(h for h in result.zeroed if weights[h] == 0.0),
            rejected=result.rejected,
        )

    def state_dict(self) -> dict[str, Any]:
        """Windows and counters (plain values, CPU tensors); every key of both modes."""
        return {
            "heads": None if self._heads is None else list(self._heads),
            "last_estimate_step": self._last_step,
            **GradientMode().state_dict(),
            "holdout_draws": [self._holdout_batches.draws, self._holdout_batches.pass_start],
            "probe_draws": None
            if self._probe_batches is None
            else [self._probe_batches.draws, self._probe_batches.pass_start],
            **LossMode().state_dict(),
            **self.strategy.state_dict(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`, replaying the holdout/probe passes to the saved draw."""
        if not state_dict:
            return
        self._heads = None if state_dict["heads"] is None else list(state_dict["heads"])
        self._last_step = state_dict.get("last_estimate_step")
        self.strategy.load_state_dict(state_dict)
        self._holdout_batches.restore(*map(int, state_dict["holdout_draws"]))
        if self._probe_batches is not None and state_dict["probe_draws"] is not None:
            self._probe_batches.restore(*map(int, state_dict["probe_draws"]))

    def __repr__(self) -> str:
        return (
            f"RollingEstimator(mode={self.mode!r}, {self.strategy.describe()}, "
            f"probe={self.probe is not None}, prior={self.prior!r}, shrink={self.shrink}, "
            f"floor={self.floor:g}, smoothing={self.smoothing:g}, every={self.every})"
        )


class WhenReady(Schedule):
    """:meth:`RollingEstimator.default_schedule`: as soon as it can, then every ``every`` steps."""

    unit = "step"

    def __init__(self, estimator: RollingEstimator) -> None:
        self.estimator = estimator
        self.every = estimator.every

    def is_due(self, position: int) -> bool:
        last = self.estimator._last_step
        ready = self.estimator._ready()
        return ready and (last is None or position - last >= self.every)

    def horizon(self, position: int) -> int | None:
        return self.every

    def __repr__(self) -> str:
        return f"WhenReady(every={self.every}, unit='step')"


def _keep(current: dict[str, float], note: str) -> BlendEstimate:
    return BlendEstimate(dict(current), {}, {}, accepted=True, notes=(note,))
