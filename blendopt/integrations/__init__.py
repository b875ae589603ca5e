"""Glue for training frameworks that call backward themselves.

Each submodule imports its framework and is imported only on request, so ``import blendopt``
never imports one:

- :mod:`blendopt.integrations.lightning`: ``GradientBlendCallback`` for PyTorch Lightning.

Hugging Face Accelerate and plain ``torch.amp`` loops need no glue: see docs/integrations.md.
"""
