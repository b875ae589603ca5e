"""Algorithm 1 (GB-Estimate): exact G-Blend weights from per-head copies retrained n epochs.

:func:`estimate_weights` estimates once; :class:`RetrainEstimator` lets a
``GradientBlender`` estimate on its schedule; :class:`RetrainConfig` holds the settings of
both. The copies train in lockstep with the loop engine (default) or as one vmapped ensemble
(``engine="vmap"``); the engine-level names below serve benchmarks and tests.
"""

from blendopt.retrain._clone import HeadCopy, clone_optimizer, make_copies, remap_param_groups
from blendopt.retrain._config import CopyTraining, RetrainConfig, TrainPlan
from blendopt.retrain._estimate import RetrainEstimator, blend_measured, estimate_weights
from blendopt.retrain._loop import TrainReport, train_copies
from blendopt.retrain._vmap import VmapCopies, supports_vmap, train_copies_vmap

__all__ = [
    "CopyTraining",
    "HeadCopy",
    "RetrainConfig",
    "RetrainEstimator",
    "TrainPlan",
    "TrainReport",
    "VmapCopies",
    "blend_measured",
    "clone_optimizer",
    "estimate_weights",
    "make_copies",
    "remap_param_groups",
    "supports_vmap",
    "train_copies",
    "train_copies_vmap",
]
