"""Cloning the run for Algorithm 1: optimizers and learning-rate schedules (the run's, replayed:
issue 7 item 3) over the copies, and the per-head copies; below both engines."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from blendopt._rng import RngStream, derive_seed
from blendopt.retrain._config import CopyTraining, OptimizerSpec, SchedulerSpec

T = TypeVar("T")


def optimizer_chain(optimizer: Optimizer) -> list[Optimizer]:
    """``optimizer`` and every optimizer it wraps (``.optimizer``, as a ``GradientBlender``)."""
    chain = [optimizer]
    while isinstance(getattr(chain[-1], "optimizer", None), Optimizer):
        chain.append(chain[-1].optimizer)
    return chain


def _allow_scheduler_steps(optimizer: Optimizer) -> None:
    # LRScheduler warns on a step() before the optimizer's; a replayed or fast-forwarded
    # scheduler may step first, so mark the step as patched and called.
    step = optimizer.step
    if not hasattr(step, "_wrapped_by_lr_sched"):

        def wrapper(*args: object, **kwargs: object) -> object:
            return step(*args, **kwargs)

        wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
        optimizer.step = wrapper  # type: ignore[method-assign]
    optimizer._opt_called = True  # type: ignore[attr-defined]


def scheduler_for_copy(
    spec: SchedulerSpec, optimizer: Optimizer, *, position: int | None = None
) -> LRScheduler:
    """A scheduler driving a copy's ``optimizer`` along the run's schedule.

    An ``LRScheduler`` is deep-copied onto ``optimizer`` (which holds the run's current rates);
    a factory is called on ``optimizer`` with each ``lr`` reset to its ``initial_lr``. Then the
    scheduler is stepped up to ``position`` (the run's ``scheduler.step()`` calls so far).
    """
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


def replay_schedule(training: CopyTraining, optimizer: Optimizer) -> LRScheduler | None:
    """The run's schedule replayed on a copy's ``optimizer`` (``None`` without a schedule)."""
    if training.scheduler is None:
        return None
    return scheduler_for_copy(training.scheduler, optimizer, position=training.scheduler_position)


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


def call_factory(factory: Callable[[list[Any]], Optimizer], params: list[Any]) -> Optimizer:
    """``factory(params)``, checked to be an optimizer (else ``TypeError``)."""
    made = factory(params)
    if not isinstance(made, Optimizer):
        raise TypeError(
            f"The optimizer factory should return a torch.optim.Optimizer. Found "
            f"{type(made).__name__}."
        )
    return made


def _make_optimizer(spec: OptimizerSpec, source: nn.Module, target: nn.Module) -> Optimizer:
    if isinstance(spec, Optimizer):
        return clone_optimizer(spec, source, target)
    if callable(spec):
        return call_factory(spec, [p for p in target.parameters() if p.requires_grad])
    raise TypeError(
        "Parameter `optimizer` should be a torch.optim.Optimizer (its class and hyper-parameters "
        f"are reused) or a factory `params -> Optimizer`. Found {type(spec).__name__}."
    )


@dataclass
class HeadCopy:
    """One head's copy of the model, with what trains it.

    Attributes:
        head: the head whose loss trains the copy.
        model: the copy (starts at the run's checkpoint).
        optimizer: a fresh optimizer over ``model``'s parameters.
        stream: the copy's own random stream (dropout), so grouping copies changes nothing.
        scheduler: the copy's learning-rate scheduler (the run's, replayed), or ``None``.
        optimizer_steps: the optimizer steps the copy took.
    """

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
    """One copy of ``reference`` per head of ``group``, with its optimizer, scheduler, stream.

    Each copy's dropout draws from a stream seeded by ``(training.plan.seed, head index)``, so
    a copy's training does not depend on which other copies share its pass.

    Raises:
        TypeError: ``training.optimizer`` is neither an optimizer nor a factory of one.
    """
    source = reference if training.source is None else training.source
    out = []
    for h in group:
        net = copy.deepcopy(reference)
        opt = _make_optimizer(training.optimizer, source, net)  # type: ignore[arg-type]
        seed = copy_seed(training.plan.seed, training.heads, h)
        out.append(HeadCopy(h, net, opt, RngStream(seed), replay_schedule(training, opt)))
    return out
