"""Warning categories, so users can filter blendopt's warnings precisely."""


class BlendWarning(UserWarning):
    """Base class of every warning blendopt emits."""


class RejectedEstimateWarning(BlendWarning):
    """A weight estimate was rejected (every weight was 0); the weights in use were kept."""


class ZeroedHeadWarning(BlendWarning):
    """A head did not generalize (dG <= 0) and got weight 0, or its dO² was floored."""


class DivergedCopyWarning(ZeroedHeadWarning):
    """A head's model copy diverged (non-finite loss) during an estimate; it got weight 0."""
