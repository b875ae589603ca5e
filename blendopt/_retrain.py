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
from typing import Any, Literal, TypeVar

import torch
from torch import nn
from torch.optim import Optimizer

from blendopt._copies import HeadCopy, LossFn, TrainPlan, TrainReport, TrainStep, train_copies
from blendopt._math import DEFAULT_EPS, BlendEstimate, blend_estimate, uniform_weights
from blendopt._measure import MetricFn, is_empty_batch, measure_counted, measure_per_sample_counted
from blendopt._noise import noise_aware_estimate
from blendopt._replay import Interval, SchedulerSpec, check_scheduler, scheduler_for_copy
from blendopt._rng import RngStream, SamplerEpochs, derive_seed, isolated_rng, loader_generators
from blendopt._warnings import DivergedCopyWarning, estimate_warnings_deferred, warn

T = TypeVar("T")

logger = logging.getLogger("blendopt")

#: ``optimizer`` for the copies: an optimizer instance whose class and hyper-parameters are
#: reused, or a factory ``params -> Optimizer``.
OptimizerSpec = Optimizer | Callable[[list[nn.Parameter]], Optimizer]
#: How the copies are trained: ``"loop"`` (one after another per batch, in lockstep),
#: ``"vmap"`` (one vmapped ensemble, see :mod:`blendopt._vmap_copies`) or ``"auto"``.
Engine = Literal["auto", "loop", "vmap"]
ENGINES = ("auto", "loop", "vmap")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside ``DistributedDataParallel``/``DataParallel``/``torch.compile``."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def _inner_optimizer(optimizer: Optimizer) -> Optimizer:
    # A GradientBlender (or any wrapper following its contract) exposes the wrapped optimizer.
    while hasattr(optimizer, "optimizer") and isinstance(optimizer.optimizer, Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def clone_optimizer(optimizer: Optimizer, source: nn.Module, target: nn.Module) -> Optimizer:
    """A fresh optimizer of ``optimizer``'s class and hyper-parameters over ``target``'s parameters.

    Parameters of ``source`` map to ``target`` by position (``target`` is a deep copy of
    ``source``). The per-group hyper-parameters, including the current learning rate, are
    copied; the optimizer state (momentum, moments) is not, as in Algorithm 1. Parameters the
    optimizer does not hold stay untrained in the copy too.
    """
    inner, groups = remap_param_groups(optimizer, source, target.parameters())
    return type(inner)([{"params": params, **hyper} for params, hyper in groups])


def remap_param_groups(
    optimizer: Optimizer, source: nn.Module, targets: Iterable[T]
) -> tuple[Optimizer, list[tuple[list[T], dict[str, Any]]]]:
    """The wrapped optimizer's parameter groups with each parameter of ``source`` replaced by
    the target at its position in ``source.parameters()``.

    Returns:
        The innermost optimizer (a ``GradientBlender`` is unwrapped) and, per group, the
        targets and a deep copy of the group's hyper-parameters.

    Raises:
        ValueError: a group holds a parameter that is not in ``source``.
    """
    inner = _inner_optimizer(optimizer)
    mapping = {id(p): t for p, t in zip(source.parameters(), targets, strict=True)}
    groups = []
    for index, group in enumerate(inner.param_groups):
        params = []
        for p in group["params"]:
            if id(p) not in mapping:
                raise ValueError(
                    f"The optimizer's param group {index} holds a parameter of shape "
                    f"{tuple(p.shape)} that is not in the model. Pass the model the optimizer "
                    "trains, or an optimizer factory `params -> Optimizer`."
                )
            params.append(mapping[id(p)])
        groups.append((params, {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}))
    return inner, groups


def _make_optimizer(spec: OptimizerSpec, source: nn.Module, target: nn.Module) -> Optimizer:
    if isinstance(spec, Optimizer):
        return clone_optimizer(spec, source, target)
    if callable(spec):
        made = spec([p for p in target.parameters() if p.requires_grad])
        if not isinstance(made, Optimizer):
            raise TypeError(
                f"The optimizer factory should return a torch.optim.Optimizer. Found "
                f"{type(made).__name__}."
            )
        return made
    raise TypeError(
        "Parameter `optimizer` should be a torch.optim.Optimizer (its class and hyper-parameters "
        f"are reused) or a factory `params -> Optimizer`. Found {type(spec).__name__}."
    )


def _resolve_metric(metric: Literal["loss"] | MetricFn, loss_fn: LossFn) -> MetricFn:
    if metric == "loss":
        return loss_fn
    if isinstance(metric, str):
        raise ValueError(
            f"Parameter `metric` should be 'loss' or a callable `(model, batch) -> {{head: "
            f"value}}`. Found {metric!r}; for top-1 error use `blendopt.top1_error(predict)`."
        )
    if not callable(metric):
        raise TypeError(f"Parameter `metric` should be 'loss' or a callable. Found {metric!r}.")
    return metric


def _batches_per_epoch(train: Iterable[Any], fraction: float) -> int | None:
    if not (isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0):
        raise ValueError(f"Parameter `fraction` should be in (0, 1]. Found {fraction!r}.")
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


def _check_arguments(
    model: nn.Module,
    epochs: int | None,
    steps: int | None,
    copies_at_once: int | None,
    train_step: TrainStep | None,
) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"Parameter `model` should be an nn.Module. Found {type(model).__name__}.")
    if (epochs is None) == (steps is None):
        raise ValueError(
            f"Pass exactly one of `epochs` and `steps`. Found epochs={epochs!r}, steps={steps!r}."
        )
    for name, value in (("epochs", epochs), ("steps", steps)):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < 1
        ):
            raise ValueError(f"Parameter `{name}` should be an int >= 1. Found {value!r}.")
    if copies_at_once is not None and (not isinstance(copies_at_once, int) or copies_at_once < 1):
        raise ValueError(
            f"Parameter `copies_at_once` should be an int >= 1. Found {copies_at_once!r}."
        )
    if train_step is not None and not callable(train_step):
        raise TypeError(
            "Parameter `train_step` should be callable `(model, optimizer, batch, head) -> loss`. "
            f"Found {type(train_step).__name__}."
        )


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


def _first_batch(
    train: Iterable[Any], *, seed: int, generators: Sequence[torch.Generator] = ()
) -> Any:
    """The first non-empty batch of ``train``, read under its own random state (or None)."""
    with isolated_rng(seed, generators):
        return next((b for b in train if not is_empty_batch(b)), None)


def check_engine(engine: object) -> None:
    """Validate ``engine`` (one of :data:`ENGINES`).

    Raises:
        TypeError: ``engine`` is not a string.
        ValueError: an unknown engine.
    """
    if not isinstance(engine, str):
        raise TypeError(
            f"Parameter `engine` should be one of {list(ENGINES)}. Found {type(engine).__name__}."
        )
    if engine not in ENGINES:
        raise ValueError(f"Parameter `engine` should be one of {list(ENGINES)}. Found {engine!r}.")


def resolve_engine(
    engine: Engine,
    model: nn.Module,
    optimizer: OptimizerSpec,
    loss_fn: LossFn,
    train: Iterable[Any],
    heads: Sequence[str],
    *,
    train_step: TrainStep | None = None,
    seed: int = 0,
    generators: Sequence[torch.Generator] = (),
) -> Literal["loop", "vmap"]:
    """The engine that trains the copies: ``engine`` itself, or for ``"auto"`` the choice of
    :func:`blendopt._vmap_copies.choose_engine` (the loop on the CPU; elsewhere a timed trial
    where :func:`~blendopt._vmap_copies.supports_vmap` accepts the model and options).

    Raises:
        ValueError: ``engine="vmap"`` with an option or model the vmap engine does not
            support (the message names it), or an unknown engine.
    """
    from blendopt._vmap_copies import choose_engine, supports_vmap  # imports this module

    check_engine(engine)
    if engine == "loop":
        return "loop"
    device = next(iter(model.parameters()), torch.empty(0)).device
    batch = (
        None
        if engine == "auto" and device.type == "cpu"  # choose_engine's CPU rule needs no batch
        else _first_batch(train, seed=seed, generators=generators)
    )
    if engine == "auto":
        chosen = choose_engine(model, optimizer, loss_fn, batch, heads, train_step=train_step)
        return "vmap" if chosen == "vmap" else "loop"
    ok, why = supports_vmap(
        optimizer, model, loss_fn=loss_fn, batch=batch, heads=heads, train_step=train_step
    )
    if not ok:
        raise ValueError(
            f"Parameter `engine` is 'vmap' but {why}. Pass engine='loop' (or 'auto', which "
            "falls back to the loop)."
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


def make_copies(
    reference: nn.Module,
    source: nn.Module,
    group: Sequence[str],
    heads: Sequence[str],
    optimizer: OptimizerSpec,
    *,
    seed: int,
    scheduler: SchedulerSpec | None = None,
    scheduler_position: int | None = None,
) -> list[HeadCopy]:
    """One copy of ``reference`` per head of ``group``, with its optimizer, scheduler, stream.

    Each copy's dropout draws from a stream seeded by ``(seed, head index)``, so a copy's
    training does not depend on which other copies share its pass.
    """
    out = []
    for h in group:
        net = copy.deepcopy(reference)
        opt = _make_optimizer(optimizer, source, net)
        sched = (
            None
            if scheduler is None
            else scheduler_for_copy(scheduler, opt, position=scheduler_position)
        )
        out.append(HeadCopy(h, net, opt, RngStream(derive_seed(seed, 3, heads.index(h))), sched))
    return out


def train_and_measure(
    reference: nn.Module,
    source: nn.Module,
    heads: Sequence[str],
    measure_copy: Callable[[nn.Module], tuple[dict[str, float], dict[str, float], int]],
    *,
    loss_fn: LossFn,
    train: Iterable[Any],
    optimizer: OptimizerSpec,
    plan: TrainPlan,
    group_size: int,
    generators: Sequence[torch.Generator] = (),
    scheduler: SchedulerSpec | None = None,
    scheduler_position: int | None = None,
    train_step: TrainStep | None = None,
    progress: bool = False,
    engine: Literal["loop", "vmap"] = "loop",
) -> tuple[dict[str, float], dict[str, float], TrainReport, int]:
    """Train the copies of ``reference`` in groups of ``group_size``, then measure each one.

    Every group reads ``train`` under the same seed (``plan.seed``), so grouping does not
    change the data a copy sees. A diverged copy is not measured. ``engine="vmap"`` trains
    each group as one vmapped ensemble (:func:`blendopt._vmap_copies.train_copies_vmap`;
    ``train_step`` must be None): same data, schedule replay, empty-batch skipping and
    divergence report, with one dropout stream for the group instead of one per copy.

    Returns:
        ``(on_probe, on_holdout, report, empty_batches_measuring)``, the measurements per head
        after training (diverged heads absent) and the merged :class:`TrainReport`.
    """
    on_probe: dict[str, float] = {}
    on_holdout: dict[str, float] = {}
    report = TrainReport()
    empty = 0
    with SamplerEpochs([train]) as samplers:
        for first_index in range(0, len(heads), group_size):
            group = heads[first_index : first_index + group_size]
            if engine == "vmap":
                done, models = _train_group_vmap(
                    reference,
                    source,
                    group,
                    heads,
                    loss_fn=loss_fn,
                    train=train,
                    optimizer=optimizer,
                    plan=plan,
                    generators=generators,
                    scheduler=scheduler,
                    scheduler_position=scheduler_position,
                    samplers=samplers,
                    progress=progress,
                )
                _merge_report(report, done)
                for h, net in models.items():
                    if h not in done.diverged:
                        t, v, skipped = measure_copy(net)
                        on_probe[h], on_holdout[h] = t[h], v[h]
                        empty += skipped
                del models
                continue
            copies = make_copies(
                reference,
                source,
                heads[first_index : first_index + group_size],
                heads,
                optimizer,
                seed=plan.seed,
                scheduler=scheduler,
                scheduler_position=scheduler_position,
            )
            with isolated_rng(derive_seed(plan.seed, 2), generators):
                done = train_copies(
                    copies,
                    loss_fn,
                    train,
                    heads,
                    plan,
                    train_step=train_step,
                    samplers=samplers,
                    progress=progress,
                )
            _merge_report(report, done)
            for c in copies:
                if c.head not in done.diverged:
                    t, v, skipped = measure_copy(c.model)
                    on_probe[c.head], on_holdout[c.head] = t[c.head], v[c.head]
                    empty += skipped
            del copies
    return on_probe, on_holdout, report, empty


def _merge_report(report: TrainReport, done: TrainReport) -> None:
    report.steps = max(report.steps, done.steps)
    report.epochs = max(report.epochs, done.epochs)
    report.empty_batches += done.empty_batches
    report.diverged.update(done.diverged)
    report.notes.extend(done.notes)


def _train_group_vmap(
    reference: nn.Module,
    source: nn.Module,
    group: Sequence[str],
    heads: Sequence[str],
    *,
    loss_fn: LossFn,
    train: Iterable[Any],
    optimizer: OptimizerSpec,
    plan: TrainPlan,
    generators: Sequence[torch.Generator],
    scheduler: SchedulerSpec | None,
    scheduler_position: int | None,
    samplers: SamplerEpochs,
    progress: bool,
) -> tuple[TrainReport, dict[str, nn.Module]]:
    """One group's copies trained by the vmap engine, reported like :func:`train_copies`."""
    from blendopt._vmap_copies import train_copies_vmap  # imports this module

    with isolated_rng(derive_seed(plan.seed, 2), generators):
        result = train_copies_vmap(
            reference,
            group,
            loss_fn,
            optimizer,
            train,
            epochs=plan.epochs,
            steps=plan.steps,
            per_epoch=plan.per_epoch,
            seed=derive_seed(plan.seed, 3, heads.index(group[0])),
            source=source,
            all_heads=heads,
            progress=progress,
            scheduler=scheduler,
            scheduler_interval=plan.interval,
            scheduler_position=scheduler_position,
            on_epoch=lambda epoch: samplers.set_epoch(plan.sampler_epoch(epoch)),
        )
    report = TrainReport(
        steps=result.steps,
        epochs=result.epochs,
        empty_batches=result.empty_batches,
        diverged=result.diverged(),
        notes=result.skip_notes(),
    )
    return report, result.models


def blend_measured(
    heads: Sequence[str],
    before: tuple[Mapping[str, float], Mapping[str, float]],
    after: tuple[Mapping[str, float], Mapping[str, float]],
    report: TrainReport,
    *,
    empty_measuring: int = 0,
    higher_is_better: bool = False,
    eps: float = DEFAULT_EPS,
    fallback: Mapping[str, float] | None = None,
    noise_aware: bool = False,
) -> BlendEstimate:
    """The estimate from the measurements (:func:`blendopt.blend_estimate`, or with
    ``noise_aware`` :func:`blendopt.noise_aware_estimate` on paired per-sample values), with the
    copies' divergences and the skipped empty batches recorded.

    Heads whose copy diverged get weight 0 and ``nan`` for what was not measured (after, dG,
    dO); a :class:`blendopt.DivergedCopyWarning` names them. If every copy diverged the
    estimate is rejected and ``fallback`` (uniform by default) is returned.
    """
    diverged = report.diverged
    healthy = [h for h in heads if h not in diverged]
    full_fallback = dict(fallback) if fallback is not None else uniform_weights(heads)
    nan = math.nan
    if healthy:
        sub_fallback = {h: full_fallback[h] for h in healthy}
        measured_healthy = (
            {h: before[0][h] for h in healthy},
            {h: before[1][h] for h in healthy},
            {h: after[0][h] for h in healthy},
            {h: after[1][h] for h in healthy},
        )
        healthy_fallback = sub_fallback if sum(sub_fallback.values()) > 0 else None
        if noise_aware:
            estimate = noise_aware_estimate(
                *measured_healthy,
                higher_is_better=higher_is_better,
                eps=eps,
                fallback=healthy_fallback,
                warn=not estimate_warnings_deferred(),
            )
        else:
            estimate = blend_estimate(
                *measured_healthy,
                higher_is_better=higher_is_better,
                eps=eps,
                fallback=healthy_fallback,
            )
    else:
        estimate = BlendEstimate(
            weights={},
            generalization={},
            overfitting_change={},
            accepted=False,
            notes=(
                "estimate rejected: every head's copy diverged; using the fallback weights "
                + ", ".join(f"{h}={w:.4g}" for h, w in full_fallback.items()),
            ),
            higher_is_better=higher_is_better,
        )
    notes = list(diverged.values()) + list(report.notes) + list(estimate.notes)
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
            "G-Blend estimate: " + "; ".join(diverged.values()) + ". Lower the learning rate, "
            "clip gradients (`train_step=`), or check those heads' inputs.",
            DivergedCopyWarning,
        )
    weights = (
        {h: estimate.weights.get(h, 0.0) for h in heads} if estimate.accepted else full_fallback
    )
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
    epochs: int | None = None,
    steps: int | None = None,
    probe: Iterable[Any] | None = None,
    metric: Literal["loss"] | MetricFn = "loss",
    higher_is_better: bool = False,
    fraction: float = 1.0,
    heads: Sequence[str] | None = None,
    eps: float = DEFAULT_EPS,
    seed: int = 0,
    copies_at_once: int | None = None,
    progress: bool = False,
    fallback: Mapping[str, float] | None = None,
    scheduler: SchedulerSpec | None = None,
    scheduler_interval: Interval | None = None,
    scheduler_position: int | None = None,
    train_step: TrainStep | None = None,
    engine: Engine = "auto",
    noise_aware: bool = False,
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
        epochs: n, the epochs of training between the two checkpoints.
        steps: alternatively, the number of batches between the two checkpoints.
        probe: the train probe T' (a fixed subset of the training data); defaults to ``train``.
        metric: ``"loss"`` (``loss_fn``'s values) or ``metric(model, batch) -> {head: value}``,
            e.g. :func:`blendopt.top1_error`.
        higher_is_better: ``metric`` is a score (accuracy, mAP); it is negated.
        fraction: train each epoch on this fraction of ``train``'s batches (appendix A: 25% of
            the data gives nearly the same weights). With a shuffling loader that is a fresh
            random subset each epoch; for a fixed subset pass a loader over a ``Subset``.
        heads: the heads to blend; defaults to the keys ``loss_fn`` returns on the first batch
            (read in eval mode, without gradients, leaving the loader's random state as is).
        eps: floor of dO² (see :func:`blendopt.blend_estimate`).
        seed: seed of the estimate's own random state (shuffling, dropout, augmentation).
        copies_at_once: train at most this many copies at a time to save memory (each group
            makes its own pass over the data); default all heads in one lockstep pass.
        progress: show a tqdm progress bar (if tqdm is installed). Progress is always logged
            at INFO level to the ``blendopt`` logger.
        fallback: the weights returned if the estimate is rejected (no head generalized);
            uniform by default. ``GradientBlender`` passes the weights in use.
        scheduler: the run's learning-rate scheduler, replayed on each copy's optimizer (its
            state deep-copied, re-bound to the copy's optimizer), or a factory
            ``optimizer -> LRScheduler`` built on each copy's optimizer from the groups'
            ``initial_lr``. ``None``: the copies train at the current rates, held constant.
        scheduler_interval: how the run steps ``scheduler``, and so the copies do: ``"step"``
            (after every optimizer step) or ``"epoch"`` (after every epoch). Required with
            ``scheduler``.
        scheduler_position: how many times the run has stepped (or will have stepped before
            its next optimizer step) its scheduler; the copies' schedulers are fast-forwarded
            there. ``RetrainEstimator`` passes the blender's steps or epochs done.
        train_step: ``train_step(model, optimizer, batch, head) -> loss`` replaces a copy's
            default step (``loss_fn``, backward, ``optimizer.step()``), e.g. to clip gradients
            or accumulate them (a per-step scheduler steps once per ``optimizer.step()``).
        engine: how the copies train. ``"loop"``: one after another on each batch, in
            lockstep. ``"vmap"``: as one ``torch.func.vmap`` ensemble (stacked parameters, one
            forward, backward and optimizer step per batch); exact for element-wise
            ``torch.optim`` optimizers (SGD, Adam, AdamW, ...), but the copies share one
            dropout stream, so with dropout the draws (not their distribution) differ from
            the loop's. It refuses (``ValueError`` naming the reason) ``train_step``,
            ``torch.distributed``, other optimizers, and models whose forward does not run
            under vmap. ``"auto"`` (default): the loop on the CPU (measured faster there); on
            an accelerator a short timed trial of both where vmap is supported, keeping vmap
            if it is clearly faster (``blendopt._vmap_copies.choose_engine``), at every call
            (``RetrainEstimator`` decides once per run; pass the answer to repeated calls).
        noise_aware: measure per sample (``metric`` should return per-sample values, e.g.
            :func:`blendopt.top1_error`; a batch-mean metric pairs whole batches) and shrink
            heads whose dG is within its paired standard error toward uniform weights
            (:func:`blendopt.noise_aware_estimate`).

    Returns:
        A :class:`blendopt.BlendEstimate`: ``.weights`` (head -> weight, sum 1) and
        ``.measurements`` (``train_before``, ``holdout_before``, ``train_after``,
        ``holdout_after``), ``.generalization``, ``.overfitting_change``, ``.notes``.

    Raises:
        ValueError: bad ``epochs``/``steps``/``fraction``/``metric``/``scheduler_interval``/
            ``engine``, empty loaders, ``loss_fn`` returning the wrong heads, or
            ``engine="vmap"`` with an option it does not support.
        TypeError: bad ``model``/``optimizer``/``scheduler``/``train_step``/``engine``.
    """
    _check_arguments(model, epochs, steps, copies_at_once, train_step)
    check_engine(engine)
    check_scheduler(scheduler, scheduler_interval)
    metric_fn = _resolve_metric(metric, loss_fn)
    per_epoch = _batches_per_epoch(train, fraction)
    probe = train if probe is None else probe
    base = unwrap_model(model)
    generators = loader_generators([train, probe, holdout])

    start = time.perf_counter()
    reference = copy.deepcopy(base)
    for p in reference.parameters():
        p.grad = None  # the copies start without the user's gradients
    if heads is None:
        heads = discover_heads(
            reference, loss_fn, train, seed=derive_seed(seed, 0), generators=generators
        )
    heads = list(heads)
    if len(heads) == 0:
        raise ValueError("Parameter `heads` should name at least one head. Found none.")

    engine_used = resolve_engine(
        engine,
        base,
        optimizer,
        loss_fn,
        train,
        heads,
        train_step=train_step,
        seed=derive_seed(seed, 0),
        generators=generators,
    )
    measure_seed = derive_seed(seed, 1)

    def measure_copy(net: nn.Module) -> tuple[dict[str, Any], dict[str, Any], int]:
        # The same seed at every checkpoint: T' and V yield the same batches before and after.
        return measure_pair(
            net,
            metric_fn,
            probe,
            holdout,
            heads,
            seed=measure_seed,
            generators=generators,
            per_sample=noise_aware,
        )

    train_before, holdout_before, empty_measuring = measure_copy(reference)

    train_after, holdout_after, report, empty_after = train_and_measure(
        reference,
        base,
        heads,
        measure_copy,
        loss_fn=loss_fn,
        train=train,
        optimizer=optimizer,
        plan=TrainPlan(epochs, steps, per_epoch, scheduler_interval, seed=seed),
        group_size=copies_at_once or len(heads),
        generators=generators,
        scheduler=scheduler,
        scheduler_position=scheduler_position,
        train_step=train_step,
        progress=progress,
        engine=engine_used,
    )
    empty_measuring += empty_after
    estimate = blend_measured(
        heads,
        (train_before, holdout_before),
        (train_after, holdout_after),
        report,
        empty_measuring=empty_measuring,
        higher_is_better=higher_is_better,
        eps=eps,
        fallback=fallback,
        noise_aware=noise_aware,
    )
    logger.info(
        "G-Blend estimate (%s engine) done in %.1f s: %s",
        engine_used,
        time.perf_counter() - start,
        ", ".join(f"{h}={w:.3f}" for h, w in estimate.weights.items()),
    )
    return estimate
