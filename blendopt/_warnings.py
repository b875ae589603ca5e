"""Warning categories, so users can filter blendopt's warnings precisely, and how they are emitted.

Every warning points at the user's own call (the first frame outside the ``blendopt`` package),
not at a library line, and is emitted once per event.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

# Frames skipped to find the user's call: blendopt's own, and torch.optim's step wrappers
# (``Optimizer.step`` is wrapped by a profiling hook).
_LIBRARY_MODULES = ("blendopt.", "torch.optim.")


class BlendWarning(UserWarning):
    """Base class of every warning blendopt emits."""


class RejectedEstimateWarning(BlendWarning):
    """A weight estimate was rejected (every weight was 0); the weights in use were kept."""


class ZeroedHeadWarning(BlendWarning):
    """An estimate gave a head weight 0 (it did not generalize: dG <= 0)."""


class DivergedCopyWarning(ZeroedHeadWarning):
    """A head's model copy diverged (non-finite loss) during an estimate; it got weight 0."""


class FlooredOverfittingWarning(BlendWarning):
    """An estimate floored a head's dO² at ``eps`` (it generalized without measurable
    overfitting); its weight is dG / eps."""


class WeightSumWarning(BlendWarning):
    """Weights given by the user do not sum to 1, which scales the effective learning rate."""


class UnblendedStepWarning(BlendWarning):
    """``step()`` ran with no ``blend``/``backward`` since the previous step: the gradient did
    not come from the G-Blend loss."""


class NonFiniteLossWarning(BlendWarning):
    """A head at weight 0 had a non-finite loss; it was left out of the blend (and recorded)."""


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn``, called by the caller of this function,
    point at the first frame outside blendopt and torch.optim (the user's call)."""
    frame = sys._getframe(1)  # the function that will call warnings.warn: stacklevel 1
    level = 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
        _LIBRARY_MODULES
    ):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[BlendWarning]) -> None:
    """Emit ``message`` as ``category``, attributed to the user's call."""
    warnings.warn(message, category, stacklevel=user_stacklevel())


_DEFERRED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "blendopt_deferred_estimate_warnings", default=False
)


@contextlib.contextmanager
def deferred_estimate_warnings() -> Iterator[None]:
    """Within this block :func:`blendopt.blend_estimate` leaves warning to its caller (the
    blender warns once per estimate, naming its index and epoch)."""
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def estimate_warnings_deferred() -> bool:
    """Whether an enclosing :func:`deferred_estimate_warnings` block is active."""
    return _DEFERRED.get()


class _EstimateLike(Protocol):
    weights: Mapping[str, float]
    accepted: bool
    notes: Sequence[str]


FLOOR_MARK = "floored to eps"  # how blend_estimate's notes mark a floored dO²
DIVERGED_MARK = "copy diverged"  # how Algorithm 1's notes mark a head whose copy diverged


def warn_estimate(estimate: _EstimateLike, label: str) -> None:
    """One warning per event of ``estimate``: a rejection, zeroed heads, floored dO².

    Args:
        estimate: a :class:`blendopt.BlendEstimate`.
        label: names the estimate, e.g. ``"G-Blend estimate 2 (epoch 5)"``.
    """
    notes = list(estimate.notes)
    if not estimate.accepted:
        warn(
            f"{label} rejected: "
            + "; ".join(notes)
            + ". Train longer between the checkpoints (a larger horizon), use a larger holdout, "
            "or check the learning rate.",
            RejectedEstimateWarning,
        )
        return
    zeroed = [h for h, w in estimate.weights.items() if w == 0.0]
    zeroed_notes = [
        n for n in notes if FLOOR_MARK not in n and any(n.startswith(f"head {h!r}") for h in zeroed)
    ]
    diverged = [n for n in zeroed_notes if DIVERGED_MARK in n]
    zeroed_notes = [n for n in zeroed_notes if DIVERGED_MARK not in n]
    if diverged:
        warn(
            f"{label}: " + "; ".join(diverged) + ". Lower the learning rate, clip gradients "
            "(`train_step=`), or check those heads' inputs.",
            DivergedCopyWarning,
        )
    if zeroed_notes:
        warn(
            f"{label}: " + "; ".join(zeroed_notes) + ". Such a head is left out of the blend.",
            ZeroedHeadWarning,
        )
    floored = [n for n in notes if FLOOR_MARK in n]
    if floored:
        warn(
            f"{label}: "
            + "; ".join(floored)
            + ". Its weight is dG / eps; if dO is below the measurement's resolution, raise eps "
            "to about (1/|V|)² for an error metric.",
            FlooredOverfittingWarning,
        )
