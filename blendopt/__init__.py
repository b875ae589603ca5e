"""blendopt: Gradient-Blending for multi-modal PyTorch training."""

from blendopt._warnings import BlendWarning, RejectedEstimateWarning, ZeroedHeadWarning

__all__ = ["BlendWarning", "RejectedEstimateWarning", "ZeroedHeadWarning"]
