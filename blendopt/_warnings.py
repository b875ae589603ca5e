"""Emit blendopt's warnings once per event, pointing at the user's own call."""

from __future__ import annotations

import contextlib
import contextvars
import sys
import warnings
from collections.abc import Iterator

from blendopt._estimate import BlendEstimate
from blendopt.warnings import (  # RejectedEstimateWarning, DivergedCopyWarning: also read here
    BlendWarning,
    DivergedCopyWarning,
    FlooredOverfittingWarning,
    RejectedEstimateWarning,
    ZeroedHeadWarning,
)

# Frames skipped to find the user's call (torch.optim: the step's profiling wrapper).
_LIBRARY_MODULES = ("blendopt.", "torch.optim.")


def user_stacklevel() -> int:
    """The ``stacklevel`` for the caller's ``warnings.warn`` that points at the user's call."""
    frame = sys._getframe(1)  # the function that will call warnings.warn: stacklevel 1
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
        _LIBRARY_MODULES
    ):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[BlendWarning]) -> None:
    warnings.warn(message, category, stacklevel=user_stacklevel())


_DEFERRED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "blendopt_deferred_estimate_warnings", default=False
)


@contextlib.contextmanager
def deferred_estimate_warnings() -> Iterator[None]:
    """In this block estimates leave warning to the blender."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def estimate_warnings_deferred() -> bool:
    return _DEFERRED.get()


def warn_estimate(estimate: BlendEstimate, label: str) -> None:
    """One warning per event of ``estimate`` (``label`` names it): rejected, diverged, zeroed,
    floored."""
    if not estimate.accepted:
        detail = "; ".join(estimate.notes) or (estimate.rejected or "every weight was 0")
        warn(
            f"{label} rejected: {detail}. Train longer between the checkpoints (a larger "
            "horizon), use a larger holdout, or check the learning rate.",
            RejectedEstimateWarning,
        )
        return
    if estimate.diverged:
        copies = "; ".join(
            f"head {h!r}: its copy diverged ({reason}); weight 0"
            for h, reason in estimate.diverged.items()
        )
        warn(
            f"{label}: {copies}. Lower the learning rate, clip gradients (`train_step=`), or "
            "check those heads' inputs.",
            DivergedCopyWarning,
        )
    zeroed = [h for h in estimate.zeroed if h not in estimate.diverged]
    if zeroed:
        heads = "; ".join(
            f"head {h!r}: dG = {estimate.generalization.get(h, float('nan')):.6g} <= 0 (did "
            "not generalize), weight 0"
            for h in zeroed
        )
        warn(f"{label}: {heads}. Such a head is left out of the blend.", ZeroedHeadWarning)
    if estimate.floored:
        heads = ", ".join(repr(h) for h in estimate.floored)
        warn(
            f"{label}: dO² floored (to eps × the largest dO², or to `resolution`²) for head(s) "
            f"{heads}, so their weight is large; if dO is below the metric's resolution (an "
            "error on a small holdout), pass resolution=1/|V|, noise_aware=True or a larger "
            "holdout.",
            FlooredOverfittingWarning,
        )
