"""The run's learning-rate schedule replayed on Algorithm 1's copies (issue 7 item 3): the copies
train the horizon along the run's rates, not at the current rate held constant."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

#: A scheduler to replay (its state is copied onto each copy's optimizer) or a factory
#: ``optimizer -> LRScheduler`` (built on each copy's optimizer and fast-forwarded).
SchedulerSpec = LRScheduler | Callable[[Optimizer], LRScheduler]
#: How often the run steps its scheduler: after every optimizer step, or once per epoch.
Interval = Literal["step", "epoch"]


def check_scheduler(spec: SchedulerSpec | None, interval: Interval | None) -> None:
    """Validate ``scheduler``/``scheduler_interval`` (both or neither)."""
    if spec is None:
        if interval is not None:
            raise ValueError(
                f"Parameter `scheduler_interval` is {interval!r} but no `scheduler` was given. "
                "Pass the run's scheduler (or a factory `optimizer -> LRScheduler`), or drop "
                "`scheduler_interval`."
            )
        return
    if isinstance(spec, ReduceLROnPlateau):
        raise ValueError(
            "Parameter `scheduler` is a ReduceLROnPlateau: it steps on the run's validation "
            "metric, which the copies do not have. Pass a factory `optimizer -> LRScheduler` "
            "giving the rates the copies should follow, or no scheduler (constant rate)."
        )
    if not isinstance(spec, LRScheduler) and not callable(spec):
        raise TypeError(
            "Parameter `scheduler` should be an LRScheduler (replayed on each copy) or a factory "
            f"`optimizer -> LRScheduler`. Found {type(spec).__name__}."
        )
    if interval not in ("step", "epoch"):
        raise ValueError(
            f"Parameter `scheduler_interval` should be 'step' (the run calls scheduler.step() "
            f"after every optimizer step) or 'epoch' (once per epoch). Found {interval!r}."
        )


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
