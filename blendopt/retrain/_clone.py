"""Cloning the run for Algorithm 1 below both engines: the per-head copies, their optimizers
and the run's learning-rate schedule replayed on them."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from blendopt._rng import RngStream, derive_seed
from blendopt.retrain._config import CopyTraining, OptimizerSpec

T = TypeVar("T")


def optimizer_chain(optimizer: Optimizer) -> list[Optimizer]:
    """``optimizer`` and every optimizer it wraps (``.optimizer``, as a ``GradientBlender``)."""
    chain = [optimizer]
    while isinstance(getattr(chain[-1], "optimizer", None), Optimizer):
        chain.append(chain[-1].optimizer)
    return chain


def _allow_scheduler_steps(optimizer: Optimizer) -> None:
    # LRScheduler warns on a step() before the optimizer's: mark the step patched and called.
    step = optimizer.step
    if not hasattr(step, "_wrapped_by_lr_sched"):

        def wrapper(*args: object, **kwargs: object) -> object:
            return step(*args, **kwargs)

        wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
        optimizer.step = wrapper  # type: ignore[method-assign]
    optimizer._opt_called = True  # type: ignore[attr-defined]


def replay_schedule(training: CopyTraining, optimizer: Optimizer) -> LRScheduler | None:
    """The run's schedule on a copy's ``optimizer`` (``None`` without one): the scheduler
    deep-copied onto it, or the factory called on it with each ``lr`` reset to ``initial_lr``;
    then stepped up to ``training.scheduler_position`` (the run's steps so far)."""
    spec, position = training.scheduler, training.scheduler_position
    if spec is None:
        return None
    if isinstance(spec, LRScheduler):
        memo = {id(o): optimizer for o in optimizer_chain(spec.optimizer)}
        scheduler = copy.deepcopy(spec, memo)
    else:
        for group in optimizer.param_groups:
            if "initial_lr" in group:
                group["lr"] = group["initial_lr"]
        _allow_scheduler_steps(optimizer)
        scheduler = spec(optimizer)
        if not isinstance(scheduler, LRScheduler) or scheduler.optimizer is not optimizer:
            raise TypeError(
                "The `scheduler` factory should return an LRScheduler built on the optimizer it "
                f"is given. Found {type(scheduler).__name__}."
            )
    _allow_scheduler_steps(optimizer)
    if position is not None:
        for _ in range(position - scheduler.last_epoch):
            scheduler.step()
    return scheduler


def clone_optimizer(
    optimizer: OptimizerSpec, source: nn.Module, target: nn.Module | Sequence[torch.Tensor]
) -> Optimizer:
    """A fresh optimizer of ``optimizer``'s class and per-group hyper-parameters (current
    rate included; no state, as in Algorithm 1) over ``target``'s parameters (or tensors),
    mapped from ``source``'s by position; a factory gets those that require grad.

    Raises:
        TypeError: ``optimizer`` is neither an optimizer nor a factory of one.
        ValueError: a group holds a parameter that is not in ``source``.
    """
    targets = list(target.parameters() if isinstance(target, nn.Module) else target)
    if isinstance(optimizer, Optimizer):
        inner, groups = remap_param_groups(optimizer, source, targets)
        return type(inner)([{"params": params, **hyper} for params, hyper in groups])
    if not callable(optimizer):
        raise TypeError(
            "Parameter `optimizer` should be a torch.optim.Optimizer (its class and "
            "hyper-parameters are reused) or a factory `params -> Optimizer`. Found "
            f"{type(optimizer).__name__}."
        )
    made = optimizer([t for t in targets if t.requires_grad])
    if not isinstance(made, Optimizer):
        raise TypeError(
            f"The optimizer factory should return a torch.optim.Optimizer. Found "
            f"{type(made).__name__}."
        )
    return made


def remap_param_groups(
    optimizer: Optimizer, source: nn.Module, targets: Iterable[T]
) -> tuple[Optimizer, list[tuple[list[T], dict[str, Any]]]]:
    """The innermost optimizer (a ``GradientBlender`` is unwrapped) and per group the targets
    at its parameters' positions in ``source.parameters()`` and its hyper-parameters (copied).

    Raises:
        ValueError: a group holds a parameter that is not in ``source``.
    """
    inner = optimizer_chain(optimizer)[-1]
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


@dataclass
class HeadCopy:
    """One head's copy of the model (from the checkpoint), its fresh optimizer, own random
    stream (dropout; grouping copies changes nothing), replayed scheduler and steps taken."""

    head: str
    model: nn.Module
    optimizer: Optimizer
    stream: RngStream
    scheduler: LRScheduler | None = None
    optimizer_steps: int = 0


def copy_seed(seed: int, heads: Sequence[str], head: str) -> int:
    """The seed of ``head``'s copy's random stream (dropout) in an estimate seeded ``seed``."""
    return derive_seed(seed, 3, list(heads).index(head))


def make_copies(
    reference: nn.Module, group: Sequence[str], training: CopyTraining
) -> list[HeadCopy]:
    """One :class:`HeadCopy` of ``reference`` per head of ``group`` (its stream seeded by
    ``(training.plan.seed, head index)``).

    Raises:
        TypeError: ``training.optimizer`` is neither an optimizer nor a factory of one.
    """
    source = reference if training.source is None else training.source
    out = []
    for h in group:
        net = copy.deepcopy(reference)
        opt = clone_optimizer(training.optimizer, source, net)  # type: ignore[arg-type]
        seed = copy_seed(training.plan.seed, training.heads, h)
        out.append(HeadCopy(h, net, opt, RngStream(seed), replay_schedule(training, opt)))
    return out
