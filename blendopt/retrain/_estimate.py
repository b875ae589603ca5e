"""Exact G-Blend weight estimation by retraining copies of the model (Algorithm 1, GB-Estimate).

For each head k (every uni-modal head and the fused "naive" head), a copy of the model at the
checkpoint is trained on L_k alone for n epochs on T; the per-head loss (or error) is measured
on the train probe T' and the holdout V before and after; the weights follow from
:func:`blendopt.blend_estimate`. Training a full copy on L_k alone updates exactly the
parameters of the uni-modal sub-network of head k (encoder k and classifier k), which is the
"uni-modal network initialized from the checkpoint" of Algorithm 1.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from blendopt._distributed import unwrap_model
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
from blendopt._warnings import DivergedCopyWarning, estimate_warnings_deferred, warn
from blendopt.retrain._clone import make_copies
from blendopt.retrain._config import CopyTraining, Engine, OptimizerSpec, RetrainConfig, TrainPlan
from blendopt.retrain._driver import TrainReport
from blendopt.retrain._loop import train_copies
from blendopt.retrain._vmap import supports_vmap, train_copies_vmap

logger = logging.getLogger("blendopt")

#: ``measure(model) -> (on_probe, on_holdout, empty batches skipped)``.
Measure = Callable[[nn.Module], tuple[dict[str, Any], dict[str, Any], int]]


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
    """The keys ``loss_fn`` returns on the first non-empty batch of ``train``.

    Side-effect free: ``model`` runs in eval mode without gradients (no BatchNorm statistics
    move) and the loader is read under its own seeded random state, restored afterwards.

    Raises:
        ValueError: ``train`` yields no non-empty batch, or ``loss_fn`` returns no head.
    """
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
            heads = list(loss_fn(model, first))
    finally:
        model.train(was_training)
    if not heads:
        raise ValueError("Parameter `heads` should name at least one head. Found none.")
    return heads


def resolve_engine(engine: Engine, model: nn.Module, training: CopyTraining) -> str:
    """The engine that trains the copies: ``"loop"`` for ``"loop"`` and ``"auto"``, or
    ``"vmap"`` once :func:`~blendopt.retrain.supports_vmap` accepts the model and options
    (with a trial forward on the first batch, read under its own random state).

    Raises:
        ValueError: ``engine="vmap"`` with an option or model the vmap engine does not
            support (the message names it).
    """
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
    """Measure ``metric`` per head on the train probe T' and the holdout V (eval mode).

    Both loaders are read with the same seed every time, so they yield the same batches (and
    augmentations) before and after training: with ``per_sample=True`` the values pair sample
    by sample (head -> 1-D tensor, for the noise-aware estimate), else they are averages.

    Returns:
        ``(on_probe, on_holdout, empty_batches_skipped)``.
    """
    measure_fn = measure_per_sample_counted if per_sample else measure_counted
    with isolated_rng(seed, generators):
        on_probe, empty_probe = measure_fn(model, metric, probe, heads, name="metric")
    with isolated_rng(seed, generators):
        on_holdout, empty_holdout = measure_fn(model, metric, holdout, heads, name="metric")
    return on_probe, on_holdout, empty_probe + empty_holdout


def train_and_measure(
    reference: nn.Module, training: CopyTraining, measure: Measure, engine: str, group_size: int
) -> tuple[dict[str, Any], dict[str, Any], TrainReport, int]:
    """Train the copies of ``reference`` in groups of ``group_size``, then measure each one.

    Every group reads ``training.train`` under the same seed, so grouping does not change the
    data a copy sees. A diverged copy is not measured. ``engine="vmap"`` trains each group as
    one vmapped ensemble: same data, schedule replay, empty-batch skipping and divergence
    report, with one dropout stream for the group instead of one per copy.

    Returns:
        ``(on_probe, on_holdout, report, empty_batches_measuring)``, the measurements per head
        after training (diverged heads absent) and the merged :class:`TrainReport`.
    """
    heads = list(training.heads)
    on_probe: dict[str, Any] = {}
    on_holdout: dict[str, Any] = {}
    report = TrainReport()
    empty = 0
    with SamplerEpochs([training.train]) as samplers:
        training = dataclasses.replace(training, samplers=samplers)
        for first in range(0, len(heads), group_size):
            group = heads[first : first + group_size]
            copies = None if engine == "vmap" else make_copies(reference, group, training)
            with isolated_rng(derive_seed(training.plan.seed, 2), training.generators):
                if copies is None:
                    result = train_copies_vmap(reference, group, training)
                    models = result.models
                    done = TrainReport(
                        result.steps,
                        result.epochs,
                        result.empty_batches,
                        result.diverged(),
                        result.skip_notes(),
                    )
                else:
                    done = train_copies(copies, training)
                    models = {c.head: c.model for c in copies}
            report.merge(done)
            for h, net in models.items():
                if h not in done.diverged:
                    t, v, skipped = measure(net)
                    on_probe[h], on_holdout[h] = t[h], v[h]
                    empty += skipped
            del copies, models
    return on_probe, on_holdout, report, empty


def _blend_healthy(
    healthy: Sequence[str],
    before: tuple[Mapping[str, Any], Mapping[str, Any]],
    after: tuple[Mapping[str, Any], Mapping[str, Any]],
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
    measured = (
        {h: before[0][h] for h in healthy},
        {h: before[1][h] for h in healthy},
        {h: after[0][h] for h in healthy},
        {h: after[1][h] for h in healthy},
    )
    kwargs: dict[str, Any] = {
        "higher_is_better": config.higher_is_better,
        "eps": config.eps,
        "fallback": sub_fallback if sum(sub_fallback.values()) > 0 else None,
    }
    if config.noise_aware:
        return noise_aware_estimate(*measured, warn=not estimate_warnings_deferred(), **kwargs)
    return blend_estimate(*measured, **kwargs)


def blend_measured(
    heads: Sequence[str],
    before: tuple[Mapping[str, float], Mapping[str, float]],
    after: tuple[Mapping[str, float], Mapping[str, float]],
    report: TrainReport,
    config: RetrainConfig | None = None,
    *,
    empty_measuring: int = 0,
) -> BlendEstimate:
    """The estimate from the measurements (:func:`blendopt.blend_estimate`, or with
    ``config.noise_aware`` :func:`blendopt.noise_aware_estimate` on paired per-sample values),
    with the copies' divergences and the skipped empty batches recorded.

    Heads whose copy diverged get weight 0 and ``nan`` for what was not measured (after, dG,
    dO); a :class:`blendopt.DivergedCopyWarning` names them. If every copy diverged the
    estimate is rejected and ``config.fallback`` (uniform by default) is returned.
    """
    config = config or RetrainConfig()
    diverged = report.diverged
    full_fallback = dict(config.fallback) if config.fallback is not None else uniform_weights(heads)
    healthy = [h for h in heads if h not in diverged]
    estimate = _blend_healthy(healthy, before, after, config, full_fallback)
    stopped = [
        f"head {h!r}: its copy diverged ({why}) and stopped training; weight 0"
        for h, why in diverged.items()
    ]
    notes = stopped + list(report.notes) + list(estimate.notes)
    empty = report.empty_batches + empty_measuring
    if empty:
        notes.append(
            f"skipped {empty} empty batches ({report.empty_batches} while training the copies, "
            f"{empty_measuring} while measuring)"
        )
    if not diverged:
        return dataclasses.replace(estimate, notes=tuple(notes), skipped_batches=empty)
    if not estimate_warnings_deferred():  # inside GradientBlender, its controller warns once
        warn(
            "G-Blend estimate: " + "; ".join(stopped) + ". Lower the learning rate, "
            "clip gradients (`train_step=`), or check those heads' inputs.",
            DivergedCopyWarning,
        )
    weights = (
        {h: estimate.weights.get(h, 0.0) for h in heads} if estimate.accepted else full_fallback
    )
    nan, higher_is_better = math.nan, config.higher_is_better
    measured = {
        "train_before": {h: _mean(before[0][h]) for h in heads},
        "holdout_before": {h: _mean(before[1][h]) for h in heads},
        "train_after": {h: _mean(after[0].get(h, nan)) for h in heads},
        "holdout_after": {h: _mean(after[1].get(h, nan)) for h in heads},
    }
    return BlendEstimate(
        weights=weights,
        generalization={h: estimate.generalization.get(h, nan) for h in heads},
        overfitting_change={h: estimate.overfitting_change.get(h, nan) for h in heads},
        accepted=estimate.accepted,
        notes=tuple(notes),
        measurements=measured,
        higher_is_better=higher_is_better,
        floored=estimate.floored,
        zeroed=estimate.zeroed,
        diverged=dict(diverged),
        skipped_batches=empty,
        rejected=estimate.rejected or (None if estimate.accepted else "every copy diverged"),
    )


def _mean(value: Any) -> float:
    """A measurement as one number (per-sample tensors of the noise-aware path are averaged)."""
    return float(value.double().mean()) if isinstance(value, torch.Tensor) else float(value)


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

    For each head, a deep copy of ``model`` is trained on that head's loss alone for ``epochs``
    epochs (or ``steps`` batches) on ``train`` with a fresh optimizer of ``optimizer``'s class
    and hyper-parameters, along the run's learning-rate schedule if ``scheduler`` is given; the
    copies are fed in lockstep from one pass over the data. Each head's ``metric`` is measured
    in eval mode on the train probe T' (``probe``) and on the holdout V (``holdout``) before and
    after, and the weights are ``w_k ∝ dG_k / dO_k²``.

    ``model``, its buffers and train/eval mode, and ``optimizer``'s state are left untouched.
    The caller's random state is restored afterwards, including the loaders' own generators
    (``DataLoader(generator=...)``, a sampler's) and epoch-aware samplers' epochs, so the run's
    next batches are the same as without the estimate. The estimate draws from its own seeded
    generators, so the same checkpoint and ``seed`` give the same weights. Empty batches are
    skipped and counted in ``notes``. A copy whose loss becomes non-finite stops training; its
    head gets weight 0, ``notes`` says why and a :class:`blendopt.DivergedCopyWarning` is
    emitted (no per-step host-device sync: on accelerators the check is read once per epoch).

    Args:
        model: the multi-head model (``DistributedDataParallel`` is unwrapped).
        loss_fn: ``loss_fn(model, batch) -> {head: scalar loss}``.
        train: the training loader T (an iterable of batches; not the holdout).
        holdout: the holdout loader V (never trained on).
        optimizer: the training optimizer (a ``GradientBlender`` is unwrapped) or a factory
            ``params -> Optimizer``.
        probe: the train probe T' (a fixed subset of the training data); defaults to ``train``.
        config: the settings (:class:`blendopt.retrain.RetrainConfig`); exactly one of
            ``epochs`` and ``steps`` must be set.
        **settings: fields of :class:`~blendopt.retrain.RetrainConfig` replacing ``config``'s,
            e.g. ``epochs=3, metric=blendopt.top1_error(predict)``.

    Returns:
        A :class:`blendopt.BlendEstimate`: ``.weights`` (head -> weight, sum 1) and
        ``.measurements`` (``train_before``, ``holdout_before``, ``train_after``,
        ``holdout_after``), ``.generalization``, ``.overfitting_change``, ``.notes``.

    Raises:
        ValueError: bad settings (see :class:`~blendopt.retrain.RetrainConfig`), neither or
            both of ``epochs``/``steps``, empty loaders, ``loss_fn`` returning the wrong heads,
            or ``engine="vmap"`` with an option it does not support.
        TypeError: bad ``model``/``optimizer``/settings.
    """
    cfg = RetrainConfig.build(config, settings)
    if not isinstance(model, nn.Module):
        raise TypeError(f"Parameter `model` should be an nn.Module. Found {type(model).__name__}.")
    if (cfg.epochs is None) == (cfg.steps is None):
        raise ValueError(
            f"Pass exactly one of `epochs` and `steps`. Found epochs={cfg.epochs!r}, "
            f"steps={cfg.steps!r}."
        )
    metric: MetricFn = loss_fn if cfg.metric == "loss" else cfg.metric  # type: ignore[assignment]
    plan = TrainPlan(
        cfg.epochs, cfg.steps, _batches_per_epoch(train, cfg.fraction), cfg.scheduler_interval,
        seed=cfg.seed,
    )  # fmt: skip
    probe = train if probe is None else probe
    base = unwrap_model(model)
    generators = loader_generators([train, probe, holdout])

    start = time.perf_counter()
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
    if len(heads) == 0:
        raise ValueError("Parameter `heads` should name at least one head. Found none.")
    training = CopyTraining(
        loss_fn, train, heads, plan, optimizer=optimizer, source=base, scheduler=cfg.scheduler,
        scheduler_position=cfg.scheduler_position, train_step=cfg.train_step,
        generators=generators, progress=cfg.progress,
    )  # fmt: skip
    engine = resolve_engine(cfg.engine, base, training)

    def measure(net: nn.Module) -> tuple[dict[str, Any], dict[str, Any], int]:
        # The same seed at every checkpoint: T' and V yield the same batches before and after.
        return measure_pair(
            net, metric, probe, holdout, heads, seed=derive_seed(cfg.seed, 1),
            generators=generators, per_sample=cfg.noise_aware,
        )  # fmt: skip

    train_before, holdout_before, empty_measuring = measure(reference)
    train_after, holdout_after, report, empty_after = train_and_measure(
        reference, training, measure, engine, cfg.copies_at_once or len(heads)
    )
    estimate = blend_measured(
        heads,
        (train_before, holdout_before),
        (train_after, holdout_after),
        report,
        cfg,
        empty_measuring=empty_measuring + empty_after,
    )
    logger.info(
        "G-Blend estimate (%s engine) done in %.1f s: %s",
        engine,
        time.perf_counter() - start,
        ", ".join(f"{h}={w:.3f}" for h, w in estimate.weights.items()),
    )
    return estimate
