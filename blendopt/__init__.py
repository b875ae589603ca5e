"""blendopt: Gradient-Blending (G-Blend; Wang, Tran, Feiszli, CVPR 2020) for PyTorch.

Wrap any ``torch.optim`` optimizer in :class:`GradientBlender` to train on ``Σ_k w_k L_k``, with
weights estimated offline (Algorithm 2) or online (Algorithm 3).
"""

from __future__ import annotations

import importlib
import warnings as _stdlib_warnings
from typing import Any

from blendopt import functional, retrain, warnings
from blendopt._blender import GradientBlender
from blendopt._estimate import BlendEstimate
from blendopt._estimators import EstimateRequest, Estimator, FixedWeights
from blendopt._measure import measure, top1_error
from blendopt._predict import BlendEnsemble, PredictorChoice
from blendopt._rolling import GradientMode, LossMode, RollingEstimator
from blendopt._schedule import Offline, Online, Schedule
from blendopt._split import HoldoutSplit, holdout_split
from blendopt._statistics import TrainStatistics
from blendopt.retrain import RetrainConfig, RetrainEstimator, estimate_weights
from blendopt.warnings import BlendWarning

__version__ = "0.1.0.dev0"

__all__ = [
    "BlendEnsemble",
    "BlendEstimate",
    "BlendWarning",
    "EstimateRequest",
    "Estimator",
    "FixedWeights",
    "GradientBlender",
    "GradientMode",
    "HoldoutSplit",
    "LossMode",
    "Offline",
    "Online",
    "PredictorChoice",
    "RetrainConfig",
    "RetrainEstimator",
    "RollingEstimator",
    "Schedule",
    "TrainStatistics",
    "estimate_weights",
    "functional",
    "holdout_split",
    "measure",
    "retrain",
    "top1_error",
    "warnings",
]

# Names that left the top level: name -> (public module, module read from), deprecated.
_MOVED: dict[str, tuple[str, str]] = {
    **dict.fromkeys(functional.__all__, ("blendopt.functional", "blendopt.functional")),
    **dict.fromkeys(warnings.__all__, ("blendopt.warnings", "blendopt.warnings")),
    "clone_optimizer": ("blendopt.retrain", "blendopt.retrain"),
}
del _MOVED["BlendWarning"]  # still top level


def __getattr__(name: str) -> Any:
    moved = _MOVED.get(name)
    if moved is None:
        raise AttributeError(f"module 'blendopt' has no attribute {name!r}")
    new, source = moved
    _stdlib_warnings.warn(
        f"blendopt.{name} moved to {new}.{name}; the old path goes in the next release.",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(source), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MOVED))
