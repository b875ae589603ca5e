"""Noise-aware exact estimation: paired per-sample measurements through Algorithm 1."""

import math
import warnings

import pytest
import torch

import blendopt
from blendopt import RetrainEstimator, estimate_weights, top1_error
from blendopt.functional import (
    blend_estimate,
    measure_per_sample,
    noise_aware_estimate,
    noise_aware_weights,
)
from tests.helpers import HEADS, loss_fn, make_batches, make_model, predict


def _t(*x):
    return torch.tensor(x, dtype=torch.float64)


def test_noise_aware_estimate_by_hand():
    tb = {"a": _t(1.0, 1.0), "b": _t(1.0, 1.0)}
    vb = {"a": _t(1.0, 1.0, 1.0), "b": _t(1.0, 1.0, 1.0)}
    ta = {"a": _t(0.0, 0.0), "b": _t(0.0, 0.0)}
    va = {"a": _t(0.0, 0.0, 0.0), "b": _t(1.0, 0.0, 1.0)}  # b: noisy, small gain
    est = noise_aware_estimate(tb, vb, ta, va)
    # a: dG 1 (SE 0), dO = (0-0) - (1-1) = 0 -> σ² = 0 + 0 -> eps; b: dG 1/3, SE 1/3 -> shrunk.
    assert est.generalization == pytest.approx({"a": 1.0, "b": 1 / 3})
    assert est.overfitting_change == pytest.approx({"a": 0.0, "b": 2 / 3})
    assert est.generalization_se["a"] == 0.0
    assert est.generalization_se["b"] == pytest.approx(math.sqrt(1 / 3) / math.sqrt(3))
    assert est.raw_weights["a"] > 0.999
    # b's gain is exactly one SE: reliability 0, so b keeps its prior share before normalizing
    # a: 1·raw_a + 0 ; b: 0·raw_b + 1·0.5 -> normalized.
    raw_a = est.raw_weights["a"]
    assert est.weights["b"] == pytest.approx(0.5 / (raw_a + 0.5))
    same = blend_estimate(
        {h: float(v.mean()) for h, v in tb.items()},
        {h: float(v.mean()) for h, v in vb.items()},
        {h: float(v.mean()) for h, v in ta.items()},
        {h: float(v.mean()) for h, v in va.items()},
        warn=False,
    )
    assert est.generalization == pytest.approx(same.generalization)
    assert est.overfitting_change == pytest.approx(same.overfitting_change)


def test_higher_is_better_negates_the_gain():
    est = noise_aware_estimate(
        {"a": _t(0.5, 0.5)},
        {"a": _t(0.5, 0.5)},
        {"a": _t(0.9, 0.9)},
        {"a": _t(0.7, 0.8)},
        higher_is_better=True,
    )
    assert est.generalization["a"] == pytest.approx(0.25)


def test_rejected_when_no_head_generalizes():
    with pytest.warns(blendopt.warnings.RejectedEstimateWarning):
        est = noise_aware_estimate(
            {"a": _t(1.0, 1.0)},
            {"a": _t(1.0, 1.0)},
            {"a": _t(1.0, 1.0)},
            {"a": _t(2.0, 2.0)},
            fallback={"a": 1.0},
        )
    assert not est.accepted


def test_measure_per_sample_pairs_samples():
    model = make_model(seed=0)
    batches = make_batches(2, batch=5)
    values = measure_per_sample(model, top1_error(predict), batches, HEADS)
    assert all(v.shape == (10,) for v in values.values())
    mean = blendopt.measure(model, top1_error(predict), batches, HEADS)
    assert {h: float(v.mean()) for h, v in values.items()} == pytest.approx(mean)
    per_batch = measure_per_sample(model, loss_fn, batches, HEADS)
    assert all(v.shape == (2,) for v in per_batch.values())  # batch means: one value a batch


def test_exact_estimator_noise_aware_matches_its_own_fields():
    model = make_model(seed=0)
    train, holdout = make_batches(4, seed=1), make_batches(3, seed=2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    metric = top1_error(predict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        plain = estimate_weights(
            model, loss_fn, train, holdout, optimizer=sgd, epochs=2, metric=metric
        )
        noisy = estimate_weights(
            model, loss_fn, train, holdout, optimizer=sgd, epochs=2, metric=metric, noise_aware=True
        )
    for key, values in plain.measurements.items():
        assert noisy.measurements[key] == pytest.approx(values)
    assert noisy.generalization == pytest.approx(plain.generalization)
    assert set(noisy.generalization_se) == set(HEADS)
    recomputed = noise_aware_weights(
        noisy.generalization,
        noisy.generalization_se,
        {h: noisy.overfitting_change[h] ** 2 + noisy.overfitting_change_se[h] ** 2 for h in HEADS},
        eps=blendopt.functional.DEFAULT_EPS,
    )
    assert noisy.accepted
    assert noisy.weights == pytest.approx(recomputed.weights)


def test_retrain_estimator_passes_noise_aware():
    model = make_model(seed=0)
    est = RetrainEstimator(
        model,
        loss_fn,
        make_batches(3, seed=1),
        make_batches(2, seed=2),
        epochs=1,
        metric=top1_error(predict),
        noise_aware=True,
    )
    assert "noise_aware=True" in repr(est)
    opt = blendopt.GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.2), HEADS, est, schedule=blendopt.Offline()
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        opt.start_epoch()
    assert opt.history[0]["estimate"]["generalization_se"] is not None


def test_prior_and_floor_are_deprecated_keywords_that_still_work():
    values = ({"a": _t(1.0, 1.2), "b": _t(1.0, 1.1)}, {"a": _t(1.0, 1.3), "b": _t(1.0, 1.0)})
    after = ({"a": _t(0.5, 0.6), "b": _t(0.9, 0.7)}, {"a": _t(0.7, 0.9), "b": _t(0.8, 0.9)})
    with pytest.warns(DeprecationWarning, match=r"noise_aware_estimate\(prior=..., floor=...\)"):
        est = noise_aware_estimate(
            *values, *after, prior={"a": 0.8, "b": 0.2}, floor=0.1, warn=False
        )
    assert est.prior == pytest.approx({"a": 0.8, "b": 0.2})
    assert min(est.weights.values()) >= 0.1
    with pytest.raises(TypeError, match="unexpected keyword argument 'flor'"):
        noise_aware_estimate(*values, *after, flor=0.1)
