"""The G-Blend formulas as pure functions over per-head measurements.

Values are lower-is-better (``higher_is_better=True`` negates scores), ``O = L^V - L^T``,
``dG = L^V(N) - L^V(N+n)``, ``dO = O(N+n) - O(N)``, weights ``w_k ∝ dG_k / dO_k²`` (Eq. 6).

Example:
    >>> from blendopt import functional as F
    >>> F.overfitting({"rgb": 1.0, "audio": 0.5}, {"rgb": 1.5, "audio": 2.0})
    {'rgb': 0.5, 'audio': 1.5}
"""

from blendopt._math import (
    DEFAULT_EPS,
    NoiseAwareWeights,
    blend_estimate,
    correlated_blend,
    gblend_weights,
    generalization,
    ogr,
    optimal_blend,
    overfitting,
    overfitting_change,
    reliability,
    uniform_weights,
    weight_rule,
)
from blendopt._measure import batch_size_of, measure_per_sample
from blendopt._noise import (
    mean_and_standard_error,
    noise_aware_estimate,
    noise_aware_weights,
    paired_standard_errors,
)
from blendopt._predict import ensemble_probabilities

__all__ = [
    "DEFAULT_EPS",
    "NoiseAwareWeights",
    "batch_size_of",
    "blend_estimate",
    "correlated_blend",
    "ensemble_probabilities",
    "gblend_weights",
    "generalization",
    "mean_and_standard_error",
    "measure_per_sample",
    "noise_aware_estimate",
    "noise_aware_weights",
    "ogr",
    "optimal_blend",
    "overfitting",
    "overfitting_change",
    "paired_standard_errors",
    "reliability",
    "uniform_weights",
    "weight_rule",
]
