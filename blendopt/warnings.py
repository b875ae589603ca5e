"""Warning categories, all derived from :class:`BlendWarning`, to filter blendopt's warnings."""

from __future__ import annotations

__all__ = [
    "BlendWarning",
    "DivergedCopyWarning",
    "FlooredOverfittingWarning",
    "NoEstimateWarning",
    "NonFiniteLossWarning",
    "RejectedEstimateWarning",
    "UnblendedStepWarning",
    "WeightSumWarning",
    "ZeroedHeadWarning",
]


class BlendWarning(UserWarning):
    """Base class of every warning blendopt emits."""


class RejectedEstimateWarning(BlendWarning):
    """A weight estimate was rejected (every weight was 0); the weights in use were kept."""


class ZeroedHeadWarning(BlendWarning):
    """An estimate gave a head weight 0 (it did not generalize: dG <= 0)."""


class DivergedCopyWarning(ZeroedHeadWarning):
    """A head's model copy diverged (non-finite loss) during an estimate; it got weight 0."""


class FlooredOverfittingWarning(BlendWarning):
    """An estimate floored a head's dO² at ``eps`` × the largest dO², giving it a large weight."""


class NoEstimateWarning(BlendWarning):
    """A run checkpointed (``state_dict()``) with no G-Blend estimate made yet; says why."""


class WeightSumWarning(BlendWarning):
    """Weights given by the user do not sum to 1, which scales the effective learning rate."""


class UnblendedStepWarning(BlendWarning):
    """``step()`` ran with no ``blend``/``backward`` since the previous step."""


class NonFiniteLossWarning(BlendWarning):
    """A head at weight 0 had a non-finite loss; it was left out of the blend (and recorded)."""
