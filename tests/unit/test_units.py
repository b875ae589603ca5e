"""The weights do not depend on the loss's units (issue 14): every floor is relative."""

import warnings

import numpy as np
import pytest
import torch

import blendopt
from blendopt import EstimateRequest, RollingEstimator
from tests.helpers import HEADS, loss_fn, make_batches, make_model


def _estimate(rows):
    est = RollingEstimator(make_model(), loss_fn, make_batches(1), smoothing=0.0)
    est._heads = list(HEADS)
    est.strategy._rows = [list(map(float, r)) for r in rows]
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    request = EstimateRequest(
        heads=tuple(HEADS),
        optimizer=sgd,
        horizon=None,
        unit="step",
        index=1,
        weights=blendopt.functional.uniform_weights(HEADS),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        return est.estimate(request)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_rolling_weights_do_not_depend_on_the_loss_scale(scale):
    # Rows [g_a, g_b, g_fused, o_a, o_b, o_fused] of per-head gradient inner products. Scaling
    # every loss by c scales every gradient by c and every inner product by c²; a loss × 1e-3
    # (with the learning rate × 1e3: the same trajectory) put 2·mean(o²) near 1e-17, under the
    # absolute eps = 1e-12 that floored it before.
    rng = np.random.default_rng(0)
    g = rng.uniform(0.005, 0.05, size=(12, 3)) * [1.0, 0.3, 2.0]
    o = rng.normal(0.0, 0.003, size=(12, 3)) * [1.0, 4.0, 0.5]
    rows = np.concatenate([g, o], axis=1)
    base = _estimate(rows)
    scaled = _estimate(rows * scale**2)
    assert base.accepted
    assert scaled.accepted
    assert scaled.floored == base.floored == ()
    assert scaled.weights == pytest.approx(base.weights, rel=1e-9)
