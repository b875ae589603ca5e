"""Learning-rate schedules for the copies of Algorithm 1: the run's own schedule, replayed.

Algorithm 1 trains each head's copy "from the checkpoint" for the horizon n. A run under a
learning-rate schedule (warm-up, OneCycleLR, step decay) trains those n epochs along the
schedule, not at the current rate held constant, so the copies must follow the same rates for
their measurement of dG and dO to describe the run (issue 7 item 3).
"""

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
    """Validate ``scheduler``/``scheduler_interval`` (both or neither).

    Raises:
        TypeError: ``spec`` is neither an ``LRScheduler`` nor callable.
        ValueError: a ``ReduceLROnPlateau`` (it needs the run's metric), a missing or unknown
            ``interval``, or an ``interval`` without a scheduler.
    """
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
    # A GradientBlender (or any wrapper exposing `.optimizer`) and everything it wraps.
    chain = [optimizer]
    while isinstance(getattr(chain[-1], "optimizer", None), Optimizer):
        chain.append(chain[-1].optimizer)
    return chain


def _allow_scheduler_steps(optimizer: Optimizer) -> None:
    # LRScheduler warns on its first step() unless the optimizer's step was patched by a
    # scheduler and already called; the copy's optimizer is stepped before its scheduler, as
    # in the run, but a replayed or fast-forwarded scheduler may step first.
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
    """A scheduler driving ``optimizer`` (a copy's) along the run's learning-rate schedule.

    - An ``LRScheduler`` is deep-copied with its optimizer (a ``GradientBlender`` or the
      optimizer it wraps) re-bound to ``optimizer``: the copy continues from the run's current
      point. ``optimizer``'s groups must hold the run's current rates
      (:func:`blendopt.clone_optimizer` copies them).
    - A factory is called on ``optimizer`` after each group's ``lr`` is reset to its
      ``initial_lr`` (the rate the run's own scheduler started from), so the new scheduler
      starts where the run's did.

    Then, if ``position`` (the number of ``scheduler.step()`` calls the run has made, or will
    have made before its next optimizer step) is ahead of the scheduler, the scheduler is
    stepped until it is there: the same computation the run made, so the rates are equal.

    Args:
        spec: the run's scheduler, or a factory ``optimizer -> LRScheduler``.
        optimizer: the copy's optimizer.
        position: scheduler steps the run has made; ``None`` replays as is.

    Returns:
        The copy's scheduler (the caller steps it like the run does).

    Raises:
        TypeError: the factory does not return an ``LRScheduler`` on ``optimizer``.
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
