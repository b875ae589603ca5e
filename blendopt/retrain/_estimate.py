"""Exact G-Blend weights by retraining copies of the model (Algorithm 1, GB-Estimate):
:func:`estimate_weights` once, :class:`RetrainEstimator` on the blender's schedule. Per head k,
a copy at the checkpoint trains on L_k alone for n epochs on T (updating exactly head k's
sub-network); the metric on T' and V before and after gives the weights."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from blendopt._distributed import unwrap_model
from blendopt._estimators import EstimateRequest, Estimator
from blendopt._math import BlendEstimate, blend_estimate, uniform_weights
from blendopt._measure import (
    LossFn,
    MetricFn,
    is_empty_batch,
    measure_counted,
    measure_per_sample_counted,
)
from blendopt._noise import noise_aware_estimate
from blendopt._rng import SamplerEpochs, derive_seed, isolated_rng, loader_generators
from blendopt._warnings import (
    DivergedCopyWarning,
    estimate_warnings_deferred,
    warn,
)
from blendopt.retrain._clone import make_copies
from blendopt.retrain._config import (
    CopyTraining,
    Engine,
    OptimizerSpec,
    RetrainConfig,
    TrainPlan,
    check_model,
)
from blendopt.retrain._loop import TrainReport, train_copies
from blendopt.retrain._vmap import supports_vmap, train_copies_vmap

logger = logging.getLogger("blendopt")

#: ``measure(model) -> (on_probe, on_holdout, empty batches skipped)``.
Measure = Callable[[nn.Module], tuple[dict[str, Any], dict[str, Any], int]]
_MEASUREMENTS = ("train_before", "holdout_before", "train_after", "holdout_after")


def _batches_per_epoch(train: Iterable[Any], fraction: float) -> int | None:
    try:
        n = len(train)  # type: ignore[arg-type]
    except TypeError:
        if fraction < 1.0:
            raise ValueError(
                "Parameter `fraction` < 1 needs a training loader with a length. Pass a loader "
                "over a subset instead (see `blendopt.holdout_split`)."
            ) from None
        return None
    if n == 0:
        raise ValueError("Parameter `train` is an empty loader. Pass a non-empty loader.")
    return max(1, math.ceil(fraction * n))


def discover_heads(
    model: nn.Module,
    loss_fn: LossFn,
    train: Iterable[Any],
    *,
    seed: int,
    generators: Sequence[torch.Generator] = (),
) -> list[str]:
    """The keys ``loss_fn`` returns on ``train``'s first non-empty batch (eval mode, no
    gradients, under a seeded random state)."""
    was_training = model.training
    model.eval()
    try:
        with isolated_rng(seed, generators), torch.no_grad():
            first = next((b for b in train if not is_empty_batch(b)), None)
            if first is None:
                raise ValueError(
                    "Parameter `train` is an empty loader (no non-empty batch). Pass a "
                    "non-empty loader."
                )
            return list(loss_fn(model, first))
    finally:
        model.train(was_training)


def resolve_engine(engine: Engine, model: nn.Module, training: CopyTraining) -> str:
    """``"loop"`` for ``"loop"``/``"auto"``; ``"vmap"`` if :func:`supports_vmap` accepts (trial
    forward on the first batch), else ``ValueError`` naming why."""
    if engine in ("loop", "auto"):
        return "loop"
    with isolated_rng(derive_seed(training.plan.seed, 0), training.generators):
        batch = next((b for b in training.train if not is_empty_batch(b)), None)
    ok, why = supports_vmap(
        training.optimizer,  # type: ignore[arg-type]
        model,
        loss_fn=training.loss_fn,
        batch=batch,
        heads=training.heads,
        train_step=training.train_step,
    )
    if not ok:
        raise ValueError(
            f"Parameter `engine` is 'vmap' but {why}. Pass engine='loop' (or 'auto', the loop)."
        )
    return "vmap"


def measure_pair(
    model: nn.Module,
    metric: MetricFn,
    probe: Iterable[Any],
    holdout: Iterable[Any],
    heads: Sequence[str],
    *,
    seed: int,
    generators: Sequence[torch.Generator] = (),
    per_sample: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """``(on_probe, on_holdout, empty batches)``: ``metric`` per head (per sample with
    ``per_sample``) on T' and V in eval mode, read under ``seed`` (batches pair before/after)."""
    measure_fn = measure_per_sample_counted if per_sample else measure_counted
    with isolated_rng(seed, generators):
        on_probe, empty_probe = measure_fn(model, metric, probe, heads, name="metric")
    with isolated_rng(seed, generators):
        on_holdout, empty_holdout = measure_fn(model, metric, holdout, heads, name="metric")
    return on_probe, on_holdout, empty_probe + empty_holdout


def train_and_measure(
    reference: nn.Module, training: CopyTraining, measure: Measure, engine: str, group_size: int
) -> tuple[dict[str, Any], dict[str, Any], TrainReport, int]:
    """Train ``reference``'s copies in groups of ``group_size`` (same data seed) and measure
    those that did not diverge: ``(on_probe, on_holdout, report, empty batches measuring)``."""
    heads, report, empty = list(training.heads), TrainReport(), 0
    on_probe: dict[str, Any] = {}
    on_holdout: dict[str, Any] = {}
    with SamplerEpochs([training.train]) as samplers:
        training = dataclasses.replace(training, samplers=samplers)
        for first in range(0, len(heads), group_size):
            group = heads[first : first + group_size]
            copies = None if engine == "vmap" else make_copies(reference, group, training)
            with isolated_rng(derive_seed(training.plan.seed, 2), training.generators):
                if copies is None:
                    done = train_copies_vmap(reference, group, training)
                else:
                    done = train_copies(copies, training)
            report.merge(done)
            for h, net in done.models.items():
                if h not in done.diverged:
                    t, v, skipped = measure(net)
                    on_probe[h], on_holdout[h] = t[h], v[h]
                    empty += skipped
            del copies, done
    return on_probe, on_holdout, report, empty


def _blend_healthy(
    healthy: Sequence[str],
    measured: Sequence[Mapping[str, Any]],
    config: RetrainConfig,
    fallback: Mapping[str, float],
) -> BlendEstimate:
    """The estimate over the heads whose copy did not diverge (rejected if there are none)."""
    if not healthy:
        return BlendEstimate(
            weights={},
            generalization={},
            overfitting_change={},
            accepted=False,
            notes=(
                "estimate rejected: every head's copy diverged; using the fallback weights "
                + ", ".join(f"{h}={w:.4g}" for h, w in fallback.items()),
            ),
            higher_is_better=config.higher_is_better,
        )
    sub_fallback = {h: fallback[h] for h in healthy}
    kwargs: dict[str, Any] = {
        "higher_is_better": config.higher_is_better,
        "eps": config.eps,
        "fallback": sub_fallback if sum(sub_fallback.values()) > 0 else None,
    }
    values = [{h: m[h] for h in healthy} for m in measured]
    if config.noise_aware:
        return noise_aware_estimate(*values, warn=not estimate_warnings_deferred(), **kwargs)
    return blend_estimate(*values, resolution=config.resolution, **kwargs)


def blend_measured(
    heads: Sequence[str],
    before: tuple[Mapping[str, float], Mapping[str, float]],
    after: tuple[Mapping[str, float], Mapping[str, float]],
    report: TrainReport,
    config: RetrainConfig | None = None,
    *,
    empty_measuring: int = 0,
) -> BlendEstimate:
    """The estimate from the measurements (``blend_estimate``, or ``noise_aware_estimate``),
    recording the diverged copies (weight 0, ``nan`` where not measured, a
    :class:`blendopt.warnings.DivergedCopyWarning`; all diverged: rejected, ``config.fallback``
    or uniform weights) and the skipped empty batches."""
    config, diverged = config or RetrainConfig(), report.diverged
    fallback = dict(config.fallback) if config.fallback is not None else uniform_weights(heads)
    measured = (*before, *after)
    estimate = _blend_healthy([h for h in heads if h not in diverged], measured, config, fallback)
    stopped = [
        f"head {h!r}: its copy diverged ({why}) and stopped training; weight 0"
        for h, why in diverged.items()
    ]
    empty = report.empty_batches + empty_measuring
    skipped = [
        f"skipped {empty} empty batches ({report.empty_batches} while training the copies, "
        f"{empty_measuring} while measuring)"
    ]
    notes = (*stopped, *report.notes, *estimate.notes, *(skipped if empty else []))
    estimate = dataclasses.replace(estimate, notes=notes, skipped_batches=empty)
    if not diverged:
        return estimate
    if not estimate_warnings_deferred():  # inside GradientBlender, its controller warns once
        warn(
            "G-Blend estimate: " + "; ".join(stopped) + ". Lower the learning rate, "
            "clip gradients (`train_step=`), or check those heads' inputs.",
            DivergedCopyWarning,
        )
    nan = math.nan
    return dataclasses.replace(
        estimate,
        weights={h: estimate.weights.get(h, 0.0) for h in heads} if estimate.accepted else fallback,
        generalization={h: estimate.generalization.get(h, nan) for h in heads},
        overfitting_change={h: estimate.overfitting_change.get(h, nan) for h in heads},
        measurements={
            name: {h: _mean(m.get(h, nan)) for h in heads}
            for name, m in zip(_MEASUREMENTS, measured, strict=True)
        },
        generalization_se=None,
        overfitting_change_se=None,
        raw_weights=None,
        prior=None,
        diverged=dict(diverged),
        rejected=estimate.rejected or (None if estimate.accepted else "every copy diverged"),
    )


def _mean(value: Any) -> float:
    """A measurement as one number (per-sample tensors of the noise-aware path are averaged)."""
    return float(value.double().mean()) if isinstance(value, torch.Tensor) else float(value)


def _copy_training(
    model: nn.Module,
    loss_fn: LossFn,
    train: Iterable[Any],
    optimizer: OptimizerSpec,
    cfg: RetrainConfig,
    generators: Sequence[torch.Generator],
) -> tuple[nn.Module, CopyTraining]:
    """The reference copy of ``model`` (without gradients) and what trains its copies."""
    plan = TrainPlan(cfg.epochs, cfg.steps, interval=cfg.scheduler_interval, seed=cfg.seed)
    plan = dataclasses.replace(plan, per_epoch=_batches_per_epoch(train, cfg.fraction))
    base = unwrap_model(model)
    reference = copy.deepcopy(base)
    for p in reference.parameters():
        p.grad = None  # the copies start without the user's gradients
    heads = (
        list(cfg.heads)
        if cfg.heads is not None
        else discover_heads(
            reference, loss_fn, train, seed=derive_seed(cfg.seed, 0), generators=generators
        )
    )
    if not heads:
        raise ValueError("Parameter `heads` should name at least one head. Found none.")
    return reference, CopyTraining(
        loss_fn,
        train,
        heads,
        plan,
        optimizer=optimizer,
        source=base,
        scheduler=cfg.scheduler,
        scheduler_position=cfg.scheduler_position,
        train_step=cfg.train_step,
        generators=generators,
        progress=cfg.progress,
    )


def estimate_weights(
    model: nn.Module,
    loss_fn: LossFn,
    train: Iterable[Any],
    holdout: Iterable[Any],
    *,
    optimizer: OptimizerSpec,
    probe: Iterable[Any] | None = None,
    config: RetrainConfig | None = None,
    **settings: Any,
) -> BlendEstimate:
    """Estimate G-Blend weights from the current checkpoint (Algorithm 1, GB-Estimate).

    Per head, a copy of ``model`` trains on that head's loss alone (a diverging copy stops:
    weight 0, a ``DivergedCopyWarning``); the metric on T' and V before and after gives
    ``w_k ∝ dG_k / dO_k²``. ``model``, ``optimizer`` and the caller's random state stay untouched.

    Args:
        model: the multi-head model (``DistributedDataParallel`` is unwrapped).
        loss_fn: ``loss_fn(model, batch) -> {head: scalar loss}``.
        train: the training loader T (not the holdout).
        holdout: the holdout loader V (never trained on).
        optimizer: the training optimizer (a ``GradientBlender`` is unwrapped) or a factory.
        probe: the train probe T' (a fixed subset of the training data); default ``train``.
        config: the settings (:class:`blendopt.retrain.RetrainConfig`: every field explained).
        **settings: fields replacing ``config``'s, e.g. ``epochs=3, metric=top1_error(predict)``.

    Returns:
        A :class:`blendopt.BlendEstimate` (``.weights``, ``.measurements``, ``.notes``, ...).

    Raises:
        ValueError: bad settings or loaders, wrong heads, ``engine="vmap"`` where it cannot run.
        TypeError: bad ``model``/``optimizer``/settings.
    """
    cfg = RetrainConfig.build(config, settings)
    check_model(model)
    probe = train if probe is None else probe
    start, generators = time.perf_counter(), loader_generators([train, probe, holdout])
    reference, training = _copy_training(model, loss_fn, train, optimizer, cfg, generators)
    heads = training.heads
    engine = resolve_engine(cfg.engine, training.source, training)  # type: ignore[arg-type]
    metric: MetricFn = loss_fn if cfg.metric == "loss" else cfg.metric  # type: ignore[assignment]
    measure = functools.partial(  # one seed at both checkpoints: the same batches
        measure_pair,
        metric=metric,
        probe=probe,
        holdout=holdout,
        heads=heads,
        seed=derive_seed(cfg.seed, 1),
        generators=generators,
        per_sample=cfg.noise_aware,
    )
    *before, empty_before = measure(reference)
    *after, report, empty_after = train_and_measure(
        reference, training, measure, engine, cfg.copies_at_once or len(heads)
    )
    estimate = blend_measured(
        heads,
        tuple(before),
        tuple(after),
        report,
        cfg,  # type: ignore[arg-type]
        empty_measuring=empty_before + empty_after,
    )
    logger.info(
        "G-Blend estimate (%s engine) done in %.1f s: %s",
        engine,
        time.perf_counter() - start,
        ", ".join(f"{h}={w:.3f}" for h, w in estimate.weights.items()),
    )
    return estimate


#: Settings the blender supplies at each estimate, not the user.
_PER_ESTIMATE = ("steps", "heads", "fallback", "scheduler_position")


class RetrainEstimator(Estimator):
    """Exact estimation by retraining a copy of the model per head (Algorithm 1).

    Each estimate is :func:`blendopt.estimate_weights` on ``model`` at its checkpoint, looking
    ahead the schedule's horizon (or ``epochs``), seeded from ``(seed, estimate index)``, with
    ``optimizer`` or else a fresh one like the blender's. The arguments are
    :func:`~blendopt.estimate_weights`'s; ``scheduler`` and ``scheduler_interval`` may also be
    set later as attributes; ``engine="auto"`` is resolved at the first estimate
    (``engine_chosen``).

    Raises:
        TypeError: bad ``model``/``loss_fn``/settings.
        ValueError: bad settings, or one the blender sets (``steps``, ``heads``, ``fallback``,
            ``scheduler_position``).
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
        check_model(model)
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
        by_epoch = config.epochs is not None or request.unit == "epoch"
        length = config.epochs if config.epochs is not None else request.horizon
        if length is None:
            raise ValueError(
                "The G-Blend estimate needs a look-ahead n: give the schedule a horizon "
                "(`Offline(horizon=N)`) or the estimator `epochs=n`."
            )
        if self.engine == "auto":  # "auto" is the loop; a saved "vmap" choice is kept
            self.engine_chosen = self.engine_chosen or "loop"
        config = dataclasses.replace(
            config,
            epochs=length if by_epoch else None,
            steps=None if by_epoch else length,
            heads=request.heads,
            seed=derive_seed(config.seed, request.index),
            fallback=request.weights,
            scheduler_position=request.steps_done
            if config.scheduler_interval == "step"
            else request.epochs_done,
            engine=self.engine_chosen if self.engine == "auto" else self.engine,
        )
        return estimate_weights(
            self.model,
            self.loss_fn,
            self.train,
            self.holdout,
            probe=self.probe,
            config=config,
            optimizer=self.optimizer if self.optimizer is not None else request.optimizer,
        )

    def __repr__(self) -> str:
        c, scheduler = self._config, self.scheduler
        metric = getattr(c.metric, "__qualname__", "custom") if callable(c.metric) else c.metric
        sched = "" if scheduler is None else f", scheduler={type(scheduler).__name__}, "
        sched += "" if scheduler is None else f"scheduler_interval={self.scheduler_interval!r}"
        return (
            f"RetrainEstimator(epochs={c.epochs}, metric={metric!r}, fraction={c.fraction}, "
            f"seed={c.seed}, engine={c.engine!r}, noise_aware={c.noise_aware}{sched})"
        )
