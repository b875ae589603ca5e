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
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer

from blendopt._distributed import average_gradients_
from blendopt._math import DEFAULT_EPS, BlendEstimate, blend_estimate
from blendopt._measure import MetricFn, check_heads, measure, measure_per_sample
from blendopt._noise import noise_aware_estimate
from blendopt._rng import RngStream, derive_seed, isolated_rng

logger = logging.getLogger("blendopt")

#: ``loss_fn(model, batch) -> {head: scalar loss}``.
LossFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]
#: ``optimizer`` for the copies: an optimizer instance whose class and hyper-parameters are
#: reused, or a factory ``params -> Optimizer``.
OptimizerSpec = Optimizer | Callable[[list[nn.Parameter]], Optimizer]


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
    inner = _inner_optimizer(optimizer)
    mapping = {id(p): q for p, q in zip(source.parameters(), target.parameters(), strict=True)}
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
        hyper = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
        groups.append({"params": params, **hyper})
    return type(inner)(groups)


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


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional; logging still reports progress
        return None
    return tqdm(total=total, desc=desc, leave=False)


def _train_copies(
    copies: dict[str, nn.Module],
    optimizers: dict[str, Optimizer],
    streams: dict[str, RngStream],
    loss_fn: LossFn,
    train: Iterable[Any],
    heads: Sequence[str],
    *,
    epochs: int | None,
    steps: int | None,
    per_epoch: int | None,
    progress: bool,
) -> None:
    """Train each copy on its own head's loss, all fed in lockstep from one pass over ``train``."""
    for model in copies.values():
        model.train()
    if steps is not None:
        total = steps
    elif per_epoch is not None and epochs is not None:
        total = epochs * per_epoch
    else:
        total = 0
    bar = _progress(total, f"G-Blend estimate {list(copies)}", progress)
    done = 0
    epoch = 0
    start = time.perf_counter()
    while True:
        if epochs is not None and epoch >= epochs:
            break
        seen = 0
        for batch in train:
            if per_epoch is not None and seen >= per_epoch:
                break
            if steps is not None and done >= steps:
                break
            for head, model in copies.items():
                with streams[head].active():
                    losses = loss_fn(model, batch)
                check_heads("loss_fn", losses, heads)
                loss = losses[head]
                if not bool(torch.isfinite(loss.detach()).all()):
                    raise FloatingPointError(
                        f"Head {head!r} got the non-finite loss {float(loss.detach())} while "
                        f"training its copy for the G-Blend estimate (epoch {epoch}, step "
                        f"{seen}). Lower the learning rate, or check the head's inputs."
                    )
                optimizers[head].zero_grad(set_to_none=True)
                with streams[head].active():
                    loss.backward()
                average_gradients_([p for p in model.parameters() if p.requires_grad])
                optimizers[head].step()
            seen += 1
            done += 1
            if bar is not None:
                bar.update(1)
        if seen == 0:
            raise ValueError("Parameter `train` yielded no batch. Pass a non-empty loader.")
        epoch += 1
        logger.info(
            "G-Blend estimate: heads %s, epoch %d done (%d steps, %.1f s)",
            list(copies),
            epoch,
            done,
            time.perf_counter() - start,
        )
        if steps is not None and done >= steps:
            break
    if bar is not None:
        bar.close()


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
    noise_aware: bool = False,
) -> BlendEstimate:
    """Estimate G-Blend weights from the current checkpoint (Algorithm 1, GB-Estimate).

    For each head, a deep copy of ``model`` is trained on that head's loss alone for ``epochs``
    epochs (or ``steps`` batches) on ``train`` with a fresh optimizer of ``optimizer``'s class
    and hyper-parameters; the copies are fed in lockstep from one pass over the data. Each
    head's ``metric`` is measured in eval mode on the train probe T' (``probe``) and on the
    holdout V (``holdout``) before and after, and the weights are ``w_k ∝ dG_k / dO_k²``.

    ``model``, its buffers and train/eval mode, and ``optimizer``'s state are left untouched;
    the caller's random state is restored afterwards (the estimate draws from its own seeded
    generators, so the same checkpoint and ``seed`` give the same weights).

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
        heads: the heads to blend; defaults to the keys ``loss_fn`` returns on the first batch.
        eps: floor of dO² (see :func:`blendopt.blend_estimate`).
        seed: seed of the estimate's own random state (shuffling, dropout, augmentation).
        copies_at_once: train at most this many copies at a time to save memory (each group
            makes its own pass over the data); default all heads in one lockstep pass.
        progress: show a tqdm progress bar (if tqdm is installed). Progress is always logged
            at INFO level to the ``blendopt`` logger.
        fallback: the weights returned if the estimate is rejected (no head generalized);
            uniform by default. ``GradientBlender`` passes the weights in use.
        noise_aware: measure per sample (``metric`` should return per-sample values, e.g.
            :func:`blendopt.top1_error`; a batch-mean metric pairs whole batches) and shrink
            heads whose dG is within its paired standard error toward uniform weights
            (:func:`blendopt.noise_aware_estimate`).

    Returns:
        A :class:`blendopt.BlendEstimate`: ``.weights`` (head -> weight, sum 1) and
        ``.measurements`` (``train_before``, ``holdout_before``, ``train_after``,
        ``holdout_after``), ``.generalization``, ``.overfitting_change``, ``.notes``.

    Raises:
        ValueError: bad ``epochs``/``steps``/``fraction``/``metric``, empty loaders, or
            ``loss_fn`` returning the wrong heads.
        FloatingPointError: a copy's loss became non-finite.
    """
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
    metric_fn = _resolve_metric(metric, loss_fn)
    per_epoch = _batches_per_epoch(train, fraction)
    probe = train if probe is None else probe
    base = unwrap_model(model)

    start = time.perf_counter()
    reference = copy.deepcopy(base)
    for p in reference.parameters():
        p.grad = None  # the copies start without the user's gradients
    if heads is None:
        with isolated_rng(derive_seed(seed, 0)):
            first = next(iter(train), None)
            if first is None:
                raise ValueError("Parameter `train` is an empty loader. Pass a non-empty loader.")
            heads = list(loss_fn(reference, first))
    heads = list(heads)
    if len(heads) == 0:
        raise ValueError("Parameter `heads` should name at least one head. Found none.")

    def measure_both(net: nn.Module, names: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        # The same seed for every measurement, so T' and V yield the same batches (and the same
        # augmentations) before and after training.
        measure_fn = measure_per_sample if noise_aware else measure
        with isolated_rng(derive_seed(seed, 1)):
            t = measure_fn(net, metric_fn, probe, heads, name="metric")
        with isolated_rng(derive_seed(seed, 1)):
            v = measure_fn(net, metric_fn, holdout, heads, name="metric")
        return {h: t[h] for h in names}, {h: v[h] for h in names}

    train_before, holdout_before = measure_both(reference, heads)
    train_after: dict[str, Any] = {}
    holdout_after: dict[str, Any] = {}
    group_size = copies_at_once or len(heads)
    for first_index in range(0, len(heads), group_size):
        group = heads[first_index : first_index + group_size]
        copies = {h: copy.deepcopy(reference) for h in group}
        optimizers = {h: _make_optimizer(optimizer, base, net) for h, net in copies.items()}
        # The data order comes from one seeded stream shared by every group; each copy's own
        # randomness (dropout) from a stream of its own, so grouping does not change results.
        streams = {h: RngStream(derive_seed(seed, 3, heads.index(h))) for h in group}
        with isolated_rng(derive_seed(seed, 2)):
            _train_copies(
                copies,
                optimizers,
                streams,
                loss_fn,
                train,
                heads,
                epochs=epochs,
                steps=steps,
                per_epoch=per_epoch,
                progress=progress,
            )
        for h, net in copies.items():
            t, v = measure_both(net, [h])
            train_after.update(t)
            holdout_after.update(v)
        del copies, optimizers

    estimate = (noise_aware_estimate if noise_aware else blend_estimate)(
        train_before,
        holdout_before,
        {h: train_after[h] for h in heads},
        {h: holdout_after[h] for h in heads},
        higher_is_better=higher_is_better,
        eps=eps,
        fallback=fallback,
    )
    logger.info(
        "G-Blend estimate done in %.1f s: %s",
        time.perf_counter() - start,
        ", ".join(f"{h}={w:.3f}" for h, w in estimate.weights.items()),
    )
    return estimate
