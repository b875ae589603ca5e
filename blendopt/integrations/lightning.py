"""PyTorch Lightning: ``training_step`` returns ``blender.blend(losses)``, ``configure_optimizers``
the blender, and :class:`GradientBlendCallback` calls ``start_epoch()``. Importing this module
(before ``trainer.fit``) makes ``LightningOptimizer`` call the blender and ``LearningRateMonitor``
name a blender's scheduler after the wrapped optimizer.
"""

from __future__ import annotations

import copy
import functools
import types
from collections.abc import Callable
from typing import Any

from blendopt._blender import GradientBlender

try:
    import pytorch_lightning as _pl
    from pytorch_lightning.core.optimizer import LightningOptimizer
except ImportError:  # the unified `lightning` package ships the same API as lightning.pytorch
    try:
        import lightning.pytorch as _pl  # type: ignore[no-redef]
        from lightning.pytorch.core.optimizer import LightningOptimizer  # type: ignore[no-redef]
    except ImportError as error:
        raise ImportError(
            "blendopt.integrations.lightning needs PyTorch Lightning: "
            "`pip install 'blendopt[integrations]'` (or `pip install pytorch-lightning`)."
        ) from error

__all__ = ["GradientBlendCallback"]

#: The blender methods a ``LightningOptimizer`` around a blender passes on to it.
FORWARDED = ("blend", "backward", "set_weights", "start_epoch", "estimate_now", "estimate_due")
FORWARDED += ("state_dict", "load_state_dict")


def _forwarding(name: str) -> Callable[..., Any]:
    @functools.wraps(getattr(GradientBlender, name))
    def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._optimizer, name)(*args, **kwargs)

    return forward


def _forward_from_lightning_optimizers(cls: type, **kwargs: Any) -> None:
    """``GradientBlender.__init_subclass__``: a ``LightningOptimizer`` calls the blender."""
    super(GradientBlender, cls).__init_subclass__(**kwargs)
    if issubclass(cls, LightningOptimizer):
        for name in FORWARDED:
            setattr(cls, name, _forwarding(name))


def _name_blender_schedulers_after_the_wrapped_optimizer() -> None:
    """Show ``LearningRateMonitor``'s scheduler pass the wrapped optimizer too."""
    monitor = _pl.callbacks.LearningRateMonitor
    original = monitor._find_names_from_schedulers

    @functools.wraps(original)
    def find_names_from_schedulers(self: Any, lr_scheduler_configs: list[Any]) -> Any:
        return original(self, [_seen_as_wrapped(config) for config in lr_scheduler_configs])

    monitor._find_names_from_schedulers = find_names_from_schedulers  # type: ignore[method-assign]


def _seen_as_wrapped(config: Any) -> Any:
    blender = _unwrap(config.scheduler.optimizer)
    if not isinstance(blender, GradientBlender):
        return config
    view = copy.copy(config)
    view.scheduler = types.SimpleNamespace(optimizer=blender.optimizer)  # all the naming reads
    return view


GradientBlender.__init_subclass__ = classmethod(_forward_from_lightning_optimizers)  # type: ignore[assignment,method-assign]
_name_blender_schedulers_after_the_wrapped_optimizer()


def _unwrap(optimizer: Any) -> Any:
    """The blender under Lightning's ``LightningOptimizer`` or Accelerate's wrapper."""
    inner = getattr(optimizer, "__dict__", {}).get("_optimizer")  # LightningOptimizer
    if isinstance(inner, GradientBlender):
        return inner
    inner = getattr(optimizer, "optimizer", None)  # accelerate's AcceleratedOptimizer
    if isinstance(inner, GradientBlender) and not isinstance(optimizer, GradientBlender):
        return inner
    return optimizer


class GradientBlendCallback(_pl.Callback):
    """Call ``start_epoch()`` on the blender when each training epoch starts (on every rank).

    Args:
        blender: the blender; default: every ``GradientBlender`` in ``trainer.optimizers``.

    Raises:
        TypeError: ``blender`` is not a ``GradientBlender``.
        ValueError: (at the first epoch) no blender was given or configured.
    """

    def __init__(self, blender: GradientBlender | None = None) -> None:
        super().__init__()
        if blender is not None and not isinstance(blender, GradientBlender):
            raise TypeError(
                "Parameter `blender` should be a blendopt.GradientBlender (or None to use the "
                f"ones configure_optimizers returns). Found {type(blender).__name__}."
            )
        self.blender = None if blender is None else _unwrap(blender)

    def _blenders(self, trainer: Any) -> list[GradientBlender]:
        if self.blender is not None:
            return [self.blender]
        optimizers = getattr(trainer, "optimizers", [])
        found = [b for b in map(_unwrap, optimizers) if isinstance(b, GradientBlender)]
        if not found:
            names = [type(opt).__name__ for opt in optimizers]
            raise ValueError(
                f"GradientBlendCallback found no GradientBlender among the optimizers {names}: "
                "return the blender from `configure_optimizers` (alone or as "
                "{'optimizer': blender, 'lr_scheduler': ...}), or pass it as "
                "GradientBlendCallback(blender)."
            )
        return found

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        for blender in self._blenders(trainer):
            # A checkpoint taken inside epoch e restores epochs_started = e + 1, and Lightning
            # then re-enters epoch e: starting it again would shift the schedule by one.
            if blender._controller.epochs_started <= trainer.current_epoch:
                blender.start_epoch()

    def __repr__(self) -> str:
        return f"GradientBlendCallback(blender={self.blender!r})"
