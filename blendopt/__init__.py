"""blendopt: Gradient-Blending (G-Blend; Wang, Tran, Feiszli, CVPR 2020) for PyTorch.

Wrap any ``torch.optim`` optimizer in :class:`GradientBlender`, pass it the per-head losses,
and it trains on the blend ``Σ_k w_k L_k`` whose weights minimize the overfitting-to-
generalization ratio, estimated offline (Algorithm 2) or online (Algorithm 3).
"""

from blendopt._blender import GradientBlender
from blendopt._estimators import EstimateRequest, Estimator, FixedWeights
from blendopt._math import (
    DEFAULT_EPS,
    BlendEstimate,
    blend_estimate,
    correlated_blend,
    gblend_weights,
    generalization,
    ogr,
    optimal_blend,
    overfitting,
    overfitting_change,
    uniform_weights,
)
from blendopt._measure import batch_size_of, measure, measure_per_sample, top1_error
from blendopt._noise import (
    NoiseAwareWeights,
    mean_and_standard_error,
    noise_aware_estimate,
    noise_aware_weights,
    paired_standard_errors,
)
from blendopt._predict import BlendEnsemble, ensemble_probabilities
from blendopt._rolling import RollingEstimator
from blendopt._schedule import Offline, Online, Schedule
from blendopt._split import HoldoutSplit, holdout_split
from blendopt._statistics import TrainStatistics
from blendopt._warnings import (
    BlendWarning,
    DivergedCopyWarning,
    FlooredOverfittingWarning,
    NonFiniteLossWarning,
    RejectedEstimateWarning,
    UnblendedStepWarning,
    WeightSumWarning,
    ZeroedHeadWarning,
)
from blendopt.retrain import RetrainEstimator, clone_optimizer, estimate_weights

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_EPS",
    "BlendEnsemble",
    "BlendEstimate",
    "BlendWarning",
    "DivergedCopyWarning",
    "EstimateRequest",
    "Estimator",
    "FixedWeights",
    "FlooredOverfittingWarning",
    "GradientBlender",
    "HoldoutSplit",
    "NoiseAwareWeights",
    "NonFiniteLossWarning",
    "Offline",
    "Online",
    "RejectedEstimateWarning",
    "RetrainEstimator",
    "RollingEstimator",
    "Schedule",
    "TrainStatistics",
    "UnblendedStepWarning",
    "WeightSumWarning",
    "ZeroedHeadWarning",
    "batch_size_of",
    "blend_estimate",
    "clone_optimizer",
    "correlated_blend",
    "ensemble_probabilities",
    "estimate_weights",
    "gblend_weights",
    "generalization",
    "holdout_split",
    "mean_and_standard_error",
    "measure",
    "measure_per_sample",
    "noise_aware_estimate",
    "noise_aware_weights",
    "ogr",
    "optimal_blend",
    "overfitting",
    "overfitting_change",
    "paired_standard_errors",
    "top1_error",
    "uniform_weights",
]
