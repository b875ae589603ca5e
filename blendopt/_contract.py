"""The ``torch.optim.Optimizer`` contract for a wrapping optimizer (:class:`GradientBlender`).

Seen from outside, a wrapper behaves like the optimizer it wraps: one step fires the global step
hooks once and shows once in the profiler, ``state_dict()`` runs the hooks registered on the
wrapper, pickling drops hooks as ``Optimizer.__getstate__`` does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from torch.optim import Optimizer

#: The hook registries of ``torch.optim.Optimizer``: a plain optimizer does not pickle them.
HOOK_ATTRIBUTES = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)

#: Also not pickled: an LR scheduler's per-instance ``step`` wrapper and its "called" flag.
_TRANSIENT_ATTRIBUTES = ("step", "_opt_called")


def forwarded(name: str, doc: str = "") -> property:
    """A property that gets, sets and deletes ``name`` on the wrapper's ``optimizer``."""
    return property(
        lambda self: getattr(self.optimizer, name),
        lambda self, value: setattr(self.optimizer, name, value),
        lambda self: delattr(self.optimizer, name),
        doc or f"The wrapped optimizer's ``{name}`` (the same object).",
    )


def picklable_state(instance_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A shallow copy of the wrapper's ``__dict__`` without the hook registries and the
    scheduler's step wrapper (what a plain ``Optimizer`` drops when pickled)."""
    dropped = set(HOOK_ATTRIBUTES) | set(_TRANSIENT_ATTRIBUTES)
    return {k: v for k, v in instance_dict.items() if k not in dropped}


def restore_hook_registries(optimizer: Optimizer) -> None:
    """Give an unpickled wrapper empty hook registries, as ``Optimizer.__setstate__`` does."""
    for name in HOOK_ATTRIBUTES:
        if name not in optimizer.__dict__:
            setattr(optimizer, name, OrderedDict())


def _unhooked_step(optimizer: Optimizer) -> Callable[..., Any] | None:
    """The wrapped optimizer's ``step`` below torch's profiling/hook wrapper, or ``None``.

    ``Optimizer.__init__`` wraps ``type(opt).step`` (marked ``hooked = True``, the original as
    ``__wrapped__``), possibly twice (seen with LBFGS in long sessions): unwrap every layer. The
    marks are compared with ``is True``, as a ``mock.patch``-ed step answers any attribute.
    """
    step = type(optimizer).step
    if getattr(step, "hooked", False) is not True:
        return None
    while step is not None and getattr(step, "hooked", False) is True:
        step = getattr(step, "__wrapped__", None)
    return step


def step_inner(
    optimizer: Optimizer, closure: Callable[[], Any] | None, kwargs: dict[str, Any]
) -> Any:
    """Step ``optimizer`` from inside a wrapper's (already hooked) ``step``.

    ``optimizer.step()`` would fire the global hooks a second time and nest a profiler range:
    this calls the step below torch's wrapper and fires only the hooks registered on
    ``optimizer`` itself, in torch's order, and marks the step for a scheduler built on it. It
    falls back to ``optimizer.step(...)`` when the class's step is not torch's hooked wrapper or
    the instance's ``step`` was replaced by something other than a scheduler's tracker.

    Args:
        optimizer: the wrapped optimizer.
        closure: the closure to pass, or ``None`` (then ``step()`` gets no argument).
        kwargs: more keyword arguments for its ``step``.

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
            if not (isinstance(result, tuple) and len(result) == 2):
                raise RuntimeError(
                    f"A step pre-hook of the wrapped {type(optimizer).__name__} must return None "
                    f"or a tuple (new_args, new_kwargs). Found {result!r}."
                )
            args, kwargs = result
    out = raw(*args, **kwargs)
    optimizer._optimizer_step_code()
    for post_hook in optimizer._optimizer_step_post_hooks.values():
        post_hook(optimizer, args, kwargs)
    return out


def run_hooks(
    hooks: Mapping[Any, Callable[..., Any]], optimizer: Optimizer, *state_dict: Any
) -> Any:
    """Run a ``state_dict``/``load_state_dict`` hook registry of ``optimizer`` (a wrapper).

    Hooks that get the state dict (pass it) may return a replacement; the last one is returned.
    """
    for hook in hooks.values():
        result = hook(optimizer, *state_dict)
        if state_dict and result is not None:
            state_dict = (result,)
    return state_dict[0] if state_dict else None
