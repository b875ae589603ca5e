"""The ``torch.optim.Optimizer`` contract for a wrapping optimizer: hooks fire once per step,
``state_dict`` runs the wrapper's hooks, pickling drops hooks as ``Optimizer`` does."""

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
    """The wrapper's ``__dict__`` without what a plain ``Optimizer`` drops when pickled."""
    dropped = set(HOOK_ATTRIBUTES) | set(_TRANSIENT_ATTRIBUTES)
    return {k: v for k, v in instance_dict.items() if k not in dropped}


def restore_hook_registries(optimizer: Optimizer) -> None:
    """Give an unpickled wrapper empty hook registries, as ``Optimizer.__setstate__`` does."""
    for name in HOOK_ATTRIBUTES:
        if name not in optimizer.__dict__:
            setattr(optimizer, name, OrderedDict())


def _unhooked_step(optimizer: Optimizer) -> Callable[..., Any] | None:
    """The wrapped optimizer's ``step`` below every layer of torch's hooked wrapper, or ``None``
    (``is True``: a ``mock.patch``-ed step answers any attribute)."""
    step = type(optimizer).step
    if getattr(step, "hooked", False) is not True:
        return None
    while step is not None and getattr(step, "hooked", False) is True:
        step = getattr(step, "__wrapped__", None)
    return step


def step_inner(
    optimizer: Optimizer, closure: Callable[[], Any] | None, kwargs: dict[str, Any]
) -> Any:
    """Step ``optimizer`` from inside a wrapper's hooked ``step``: below torch's wrapper, firing
    only ``optimizer``'s own hooks (``optimizer.step()`` would fire the global ones twice)."""
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
    """Run a ``state_dict``/``load_state_dict`` hook registry; return the (replaced) state dict."""
    for hook in hooks.values():
        result = hook(optimizer, *state_dict)
        if state_dict and result is not None:
            state_dict = (result,)
    return state_dict[0] if state_dict else None
