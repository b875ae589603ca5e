"""blendopt: Gradient-Blending for multi-modal PyTorch training."""

__all__: list[str] = []
