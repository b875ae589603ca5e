"""The ``torch.optim.Optimizer`` contract for a wrapping optimizer.

A wrapper such as :class:`~blendopt.GradientBlender` must behave, seen from outside, like the
optimizer it wraps: one step fires the global step hooks once and shows once in the profiler;
``state_dict()`` has the standard ``{"state", "param_groups"}`` layout and runs the hooks
registered on the wrapper; pickling drops hooks as ``Optimizer.__getstate__`` does. The helpers
here implement the parts that do not depend on what the wrapper adds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from torch.optim import Optimizer

#: The instance attributes ``torch.optim.Optimizer`` keeps for hooks. A plain optimizer drops
#: them when pickled or deep-copied (its ``__getstate__`` keeps defaults, state, param_groups).
HOOK_ATTRIBUTES = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)

#: Other per-instance attributes a plain optimizer drops when pickled: the learning-rate
#: scheduler's per-instance ``step`` wrapper (a closure) and its "step was called" flag.
_TRANSIENT_ATTRIBUTES = ("step", "_opt_called")


def forwarded(name: str, doc: str) -> property:
    """A property that gets, sets and deletes ``name`` on the wrapper's ``optimizer``."""
    return property(
        lambda self: getattr(self.optimizer, name),
        lambda self, value: setattr(self.optimizer, name, value),
        lambda self: delattr(self.optimizer, name),
        doc,
    )


def picklable_state(instance_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The wrapper's ``__dict__`` without what a plain ``Optimizer`` drops when pickled.

    Args:
        instance_dict: the wrapper's ``__dict__``.

    Returns:
        A shallow copy without the hook registries and the scheduler's step wrapper.
    """
    dropped = set(HOOK_ATTRIBUTES) | set(_TRANSIENT_ATTRIBUTES)
    return {k: v for k, v in instance_dict.items() if k not in dropped}


def restore_hook_registries(optimizer: Optimizer) -> None:
    """Give an unpickled wrapper empty hook registries, as ``Optimizer.__setstate__`` does."""
    for name in HOOK_ATTRIBUTES:
        if name not in optimizer.__dict__:
            setattr(optimizer, name, OrderedDict())


def _unhooked_step(optimizer: Optimizer) -> Callable[..., Any] | None:
    """The wrapped optimizer's ``step`` function below torch's profiling/hook wrapper, or None.

    ``Optimizer.__init__`` replaces ``type(opt).step`` by ``Optimizer.profile_hook_step(step)``
    (marked ``hooked = True``); ``functools.wraps`` keeps the original as ``__wrapped__``. The
    marks are compared with ``is True``: a ``mock.patch``-ed step answers any attribute, and its
    truth test would show in the mock's calls.
    """
    step = type(optimizer).step
    if getattr(step, "hooked", False) is not True:
        return None
    # A class whose step was patched twice (seen intermittently with LBFGS in long test
    # sessions) nests two hooked wrappers: unwrap every one of them.
    while step is not None and getattr(step, "hooked", False) is True:
        step = getattr(step, "__wrapped__", None)
    return step


def step_inner(
    optimizer: Optimizer, closure: Callable[[], Any] | None, kwargs: dict[str, Any]
) -> Any:
    """Step ``optimizer`` from inside a wrapper's (already hooked) ``step``.

    The wrapper's own ``step`` is wrapped by ``Optimizer.profile_hook_step``, which fires the
    global step hooks and the wrapper's hooks inside one ``Optimizer.step#<Wrapper>.step``
    profiler range. Calling ``optimizer.step()`` would fire the global hooks a second time and
    open a nested range. This calls the wrapped optimizer's step below that wrapper and fires only
    the hooks registered on the wrapped optimizer itself (with it as the ``optimizer`` argument),
    in torch's order. A learning-rate scheduler built on the wrapped optimizer still sees the
    step (its ``_opt_called`` flag is set).

    Falls back to ``optimizer.step(...)`` when the class's step is not torch's hooked wrapper or
    the instance's ``step`` was replaced by something other than a scheduler's tracker.

    Args:
        optimizer: the wrapped optimizer.
        closure: the closure to pass, or ``None`` (then ``step()`` gets no argument).
        kwargs: more keyword arguments for its ``step`` (torch's step wrappers pass them on).

    Returns:
        What the wrapped optimizer's step returns.
    """
    args: tuple[Any, ...] = (optimizer,) if closure is None else (optimizer, closure)
    raw = _unhooked_step(optimizer)
    own = optimizer.__dict__.get("step")
    if raw is None or (own is not None and getattr(own, "_wrapped_by_lr_sched", False) is not True):
        return optimizer.step(*args[1:], **kwargs)
    if own is not None:  # a scheduler built on the wrapped optimizer tracks its steps
        optimizer._opt_called = True  # type: ignore[attr-defined]
    for pre_hook in optimizer._optimizer_step_pre_hooks.values():
        result = pre_hook(optimizer, args, kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                args, kwargs = result
            else:
                raise RuntimeError(
                    f"A step pre-hook of the wrapped {type(optimizer).__name__} must return None "
                    f"or a tuple (new_args, new_kwargs). Found {result!r}."
                )
    out = raw(*args, **kwargs)
    optimizer._optimizer_step_code()
    for post_hook in optimizer._optimizer_step_post_hooks.values():
        post_hook(optimizer, args, kwargs)
    return out


def run_state_dict_pre_hooks(optimizer: Optimizer) -> None:
    """Run the ``register_state_dict_pre_hook`` hooks of ``optimizer`` (a wrapper)."""
    for pre_hook in optimizer._optimizer_state_dict_pre_hooks.values():
        pre_hook(optimizer)


def run_state_dict_post_hooks(optimizer: Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Run the ``register_state_dict_post_hook`` hooks; a hook may return a new state dict."""
    for post_hook in optimizer._optimizer_state_dict_post_hooks.values():
        result = post_hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    return state_dict


def run_load_state_dict_pre_hooks(
    optimizer: Optimizer, state_dict: dict[str, Any]
) -> dict[str, Any]:
    """Run the ``register_load_state_dict_pre_hook`` hooks; a hook may return a new state dict."""
    for pre_hook in optimizer._optimizer_load_state_dict_pre_hooks.values():
        result = pre_hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    return state_dict


def run_load_state_dict_post_hooks(optimizer: Optimizer) -> None:
    """Run the ``register_load_state_dict_post_hook`` hooks of ``optimizer`` (a wrapper)."""
    for post_hook in optimizer._optimizer_load_state_dict_post_hooks.values():
        post_hook(optimizer)
