"""Algorithm 1 (GB-Estimate): :func:`estimate_weights` once, :class:`RetrainEstimator` on a
``GradientBlender``'s schedule, both set by :class:`RetrainConfig`; the engine-level names
(loop and opt-in vmap engines) serve benchmarks and tests."""

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
