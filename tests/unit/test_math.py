"""The G-Blend formulas against hand-computed values from the paper's definitions."""

import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

import blendopt
from blendopt import BlendEstimate
from blendopt.functional import (
    blend_estimate,
    correlated_blend,
    gblend_weights,
    generalization,
    ogr,
    optimal_blend,
    overfitting,
    overfitting_change,
)
from blendopt.warnings import (
    FlooredOverfittingWarning,
    RejectedEstimateWarning,
    ZeroedHeadWarning,
)

# Checkpoint N and N+n for three heads (losses: lower is better).
T0 = {"rgb": 2.0, "audio": 2.0, "fused": 2.0}
V0 = {"rgb": 2.1, "audio": 2.1, "fused": 2.1}
T1 = {"rgb": 1.0, "audio": 0.5, "fused": 0.8}
V1 = {"rgb": 1.5, "audio": 2.0, "fused": 1.6}


def test_overfitting_is_holdout_minus_train():
    assert overfitting(T1, V1) == pytest.approx({"rgb": 0.5, "audio": 1.5, "fused": 0.8})


def test_generalization_is_holdout_drop():
    assert generalization(V0, V1) == pytest.approx({"rgb": 0.6, "audio": 0.1, "fused": 0.5})


def test_overfitting_change_and_ogr():
    # O(N) = 0.1 for every head; O(N+n) = 0.5, 1.5, 0.8.
    d_o = overfitting_change(T0, V0, T1, V1)
    assert d_o == pytest.approx({"rgb": 0.4, "audio": 1.4, "fused": 0.7})
    assert ogr(T0, V0, T1, V1) == pytest.approx({"rgb": 0.4 / 0.6, "audio": 14.0, "fused": 1.4})


def test_weights_hand_computed():
    # w ∝ dG / dO²: rgb 0.6/0.16 = 3.75, audio 0.1/1.96, fused 0.5/0.49.
    raw = {"rgb": 3.75, "audio": 0.1 / 1.96, "fused": 0.5 / 0.49}
    z = sum(raw.values())
    w = gblend_weights(T0, V0, T1, V1)
    assert list(w) == ["rgb", "audio", "fused"]
    assert w == pytest.approx({h: v / z for h, v in raw.items()}, rel=1e-12)
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-15)


def test_only_one_head_generalizes():
    v1 = {"rgb": 1.5, "audio": 2.3, "fused": 2.1}  # audio got worse, fused did not move
    with pytest.warns(ZeroedHeadWarning, match="'audio'.*dG = -0.2"):
        est = blend_estimate(T0, V0, T1, v1)
    assert est.weights == {"rgb": 1.0, "audio": 0.0, "fused": 0.0}
    assert est.accepted
    assert any("'fused'" in n and "weight 0" in n for n in est.notes)


def test_negative_generalization_gets_zero_weight():
    v1 = dict(V1, audio=2.5)
    with pytest.warns(ZeroedHeadWarning):
        w = gblend_weights(T0, V0, T1, v1)
    assert w["audio"] == 0.0
    z = 3.75 + 0.5 / 0.49
    assert w["rgb"] == pytest.approx(3.75 / z)


def test_zero_overfitting_change_is_floored():
    # rgb: train and holdout drop by the same 0.5 -> dO = 0, dG = 0.5 -> 0.5 / (eps · 1.96):
    # the floor is relative to the largest dO² of a head with dG > 0 (audio's 1.4²).
    t1 = dict(T1, rgb=1.5)
    v1 = dict(V1, rgb=1.6)
    eps = 1e-4
    # A floor is its own event: not a zeroed head (no head got weight 0 here).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = blend_estimate(T0, V0, t1, v1, eps=eps)
    assert [w.category for w in caught] == [FlooredOverfittingWarning]
    assert "'rgb'" in str(caught[0].message)
    assert "floored" in str(caught[0].message)
    assert caught[0].filename == __file__  # points at the caller's line
    raw = {"rgb": 0.5 / (eps * 1.96), "audio": 0.1 / 1.96, "fused": 0.5 / 0.49}
    z = sum(raw.values())
    assert est.weights == pytest.approx({h: v / z for h, v in raw.items()})
    assert any("'rgb'" in n and "floored" in n for n in est.notes)


def test_all_zero_is_rejected_with_warning_record_and_uniform_fallback():
    v1 = {"rgb": 2.2, "audio": 2.1, "fused": 3.0}
    with pytest.warns(RejectedEstimateWarning, match="rejected"):
        est = blend_estimate(T0, V0, T1, v1)
    assert not est.accepted
    assert est.weights == pytest.approx({"rgb": 1 / 3, "audio": 1 / 3, "fused": 1 / 3})
    assert "estimate rejected" in est.notes[-1]
    with pytest.warns(RejectedEstimateWarning):
        assert gblend_weights(T0, V0, T1, v1) == est.weights


def test_rejected_estimate_uses_given_fallback():
    v1 = {"rgb": 2.2, "audio": 2.1, "fused": 3.0}
    fallback = {"rgb": 0.63, "audio": 0.014, "fused": 0.356}
    with pytest.warns(RejectedEstimateWarning):
        est = blend_estimate(T0, V0, T1, v1, fallback=fallback)
    assert est.weights == fallback


def test_accuracy_metric_gives_the_same_weights_as_error():
    acc = [{h: 1.0 - v / 4 for h, v in m.items()} for m in (T0, V0, T1, V1)]
    err = [{h: 1.0 - a for h, a in m.items()} for m in acc]
    w_acc = gblend_weights(*acc, higher_is_better=True)
    w_err = gblend_weights(*err)
    assert w_acc == pytest.approx(w_err, rel=1e-12)
    # Negation, not 1 - x: exact for unbounded scores too (e.g. a mAP in percent).
    scores = [{h: 100 * a for h, a in m.items()} for m in acc]
    neg = [{h: -s for h, s in m.items()} for m in scores]
    assert gblend_weights(*scores, higher_is_better=True) == pytest.approx(gblend_weights(*neg))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"holdout_before": {"rgb": 1.0}}, ValueError, "Missing"),
        ({"train_after": {"rgb": 1.0, "audio": float("nan"), "fused": 1.0}}, ValueError, "'audio'"),
        ({"train_after": [1.0, 2.0, 3.0]}, TypeError, "mapping"),
        ({"holdout_after": {"rgb": "x", "audio": 1.0, "fused": 1.0}}, TypeError, "'rgb'"),
        ({"eps": 0.0}, ValueError, "eps"),
        (
            {"train_before": {}, "holdout_before": {}, "train_after": {}, "holdout_after": {}},
            ValueError,
            "at least one",
        ),
    ],
)
def test_bad_measurements_raise(kwargs, error, match):
    args = {"train_before": T0, "holdout_before": V0, "train_after": T1, "holdout_after": V1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        blend_estimate(**args)


def test_estimate_round_trips_and_ogr():
    est = blend_estimate(T0, V0, T1, V1)
    again = BlendEstimate.from_dict(est.to_dict())
    assert again == est
    assert est.ogr == pytest.approx(ogr(T0, V0, T1, V1))
    assert est.measurements["holdout_after"] == V1


def test_ogr_with_zero_generalization():
    v1 = dict(V1, rgb=2.1)  # dG = 0, dO = 0.1 - 1.1 ... -> sign of dO
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroedHeadWarning)
        r = ogr(T0, V0, T1, v1)
    assert r["rgb"] == math.inf


def test_gblend_weights_is_proposition_1_with_first_order_estimates():
    # dG_k ≈ <∇L*, v_k>, dO_k² ≈ σ_k²: Algorithm 1's weights are Eq. 6's.
    w = gblend_weights(T0, V0, T1, V1)
    d_g = generalization(V0, V1)
    d_o = overfitting_change(T0, V0, T1, V1)
    expected = optimal_blend([d_g[h] for h in w], [d_o[h] ** 2 for h in w])
    np.testing.assert_allclose(list(w.values()), expected, rtol=1e-12)


def _numerical_minimizer(g, cov):
    """argmin wᵀ Σ w s.t. <w, g> = 1 and w >= 0, w = 0 where g <= 0 (appendix C, Eq. 12-14,
    with loss weights kept >= 0), by SLSQP."""
    bounds = [(0.0, None) if gk > 0 else (0.0, 0.0) for gk in g]
    result = minimize(
        lambda w: w @ cov @ w,
        x0=np.where(g > 0, 1.0 / g[g > 0].sum(), 0.0),
        jac=lambda w: 2 * cov @ w,
        bounds=bounds,
        constraints=[{"type": "eq", "fun": lambda w: w @ g - 1.0, "jac": lambda w: g}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    assert result.success, result.message
    return np.clip(result.x, 0.0, None)


def _random_problem(rng, mixed):
    k = int(rng.integers(2, 7))
    g = rng.normal(size=k) if mixed else rng.uniform(0.1, 2.0, size=k)
    g[0] = abs(g[0]) + 0.1  # at least one positive alignment
    a = rng.normal(size=(k, k))
    return g, a @ a.T + 0.5 * np.eye(k)


@pytest.mark.parametrize("seed", range(8))
def test_proposition_1_uncorrelated_matches_numerical_minimizer(seed):
    rng = np.random.default_rng(seed)
    g, _ = _random_problem(rng, mixed=seed % 2 == 1)
    sigma2 = rng.uniform(0.05, 3.0, size=g.size)
    w_num = _numerical_minimizer(g, np.diag(sigma2))
    np.testing.assert_allclose(optimal_blend(g, sigma2), w_num / w_num.sum(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(("seed", "mixed"), [(s, m) for s in range(8) for m in (False, True)])
def test_proposition_1_correlated_matches_numerical_minimizer(seed, mixed):
    rng = np.random.default_rng(100 + seed)
    g, cov = _random_problem(rng, mixed)
    w_num = _numerical_minimizer(g, cov)
    w = correlated_blend(g, cov)
    np.testing.assert_allclose(w, w_num / w_num.sum(), rtol=1e-5, atol=1e-6)
    assert np.all(w >= 0)
    assert np.all(w[g <= 0] == 0)
    assert w @ g > 0  # the blend's holdout loss falls
    # The solve beats (or ties) random feasible points: w >= 0, 0 where g <= 0.
    scaled = w / (w @ g)
    for _ in range(20):
        other = np.where(g > 0, rng.uniform(size=g.size), 0.0)
        other = other / (other @ g)
        assert scaled @ cov @ scaled <= other @ cov @ other + 1e-12


def test_correlated_with_diagonal_covariance_is_uncorrelated():
    g = np.array([0.6, 0.1, 0.5])
    s = np.array([0.16, 1.96, 0.49])
    np.testing.assert_allclose(correlated_blend(g, np.diag(s)), optimal_blend(g, s), rtol=1e-12)


@pytest.mark.parametrize(
    ("cov", "match"),
    [
        (np.array([[1.0, 2.0], [2.0, 1.0]]), "positive definite"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (np.eye(3), "2×2"),
    ],
)
def test_correlated_rejects_bad_covariance(cov, match):
    with pytest.raises(ValueError, match=match):
        correlated_blend([1.0, 1.0], cov)


def test_optimal_blend_rejects_nonpositive_variance():
    with pytest.raises(ValueError, match="variance"):
        optimal_blend([1.0, 1.0], [1.0, 0.0])


def test_uniform_weights():
    assert blendopt.functional.uniform_weights(["a", "b", "c", "d"]) == dict.fromkeys("abcd", 0.25)
    with pytest.raises(ValueError, match="at least one"):
        blendopt.functional.uniform_weights([])


def test_one_weight_rule_plain_is_shrinkage_with_standard_error_zero():
    from blendopt.functional import noise_aware_weights, weight_rule

    gain = {"a": 0.4, "b": -0.1, "c": 0.2}
    variance = {"a": 0.3, "b": 0.5, "c": 1e-12}
    plain = weight_rule(gain, variance, eps=1e-8)
    assert plain.zeroed == ("b",)
    assert plain.floored == ("c",)
    assert plain.weights["b"] == 0.0
    floor = 1e-8 * 0.3  # eps times the largest variance of a head with a positive gain
    assert plain.weights["c"] == pytest.approx(0.2 / floor / (0.4 / 0.3 + 0.2 / floor))
    shrunk = noise_aware_weights(gain, dict.fromkeys(gain, 0.0), variance, eps=1e-8)
    assert shrunk.weights == pytest.approx(plain.weights, rel=1e-15)
    assert shrunk.zeroed == plain.zeroed
    assert shrunk.floored == plain.floored
    rejected = weight_rule({"a": -1.0, "b": 0.0}, {"a": 1.0, "b": 1.0})
    assert not rejected.accepted
    assert rejected.rejected == "no head generalized (every dG <= 0)"
    assert rejected.weights == {"a": 0.5, "b": 0.5}


# -- sign-safe Proposition 1 (issue 14) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("g", "cov", "expected"),
    [
        # Prop. 1 unnormalized: Σ⁻¹g = (1, -3) sums to -2; dividing by it gave (-0.5, 1.5).
        ([1.0, -3.0], np.eye(2), [1.0, 0.0]),
        # the gains: (-0.25, 1.5, -0.25) after the division, {0, 1, 0} after clipping.
        ([0.5, -3.0, 0.5], np.eye(3), [0.5, 0.0, 0.5]),
        # a zero gain: no weight; the other head takes all.
        ([0.0, 2.0], np.diag([1.0, 4.0]), [0.0, 1.0]),
        # positive gains, but Σ⁻¹g = (0.55, -0.4)/0.19: the constrained optimum is (1, 0), since
        # head 2's KKT multiplier g_2 - (Σu)_2 = 0.5 - 0.9 < 0 at u = (1, 0).
        ([1.0, 0.5], np.array([[1.0, 0.9], [0.9, 1.0]]), [1.0, 0.0]),
        # support {1, 2}: Σ_SS = I gives (1, 1); head 3: 0.2 - (0.5 + 0.5) < 0 stays out.
        (
            [1.0, 1.0, 0.2],
            np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.5, 0.5, 1.0]]),
            [0.5, 0.5, 0.0],
        ),
    ],
)
def test_proposition_1_is_sign_safe_by_hand(g, cov, expected):
    np.testing.assert_allclose(correlated_blend(g, cov), expected, atol=1e-12)
    if np.count_nonzero(cov - np.diag(np.diag(cov))) == 0:
        np.testing.assert_allclose(optimal_blend(g, np.diag(cov)), expected, atol=1e-12)


@pytest.mark.parametrize("g", [[-1.0, -3.0], [0.0, -0.5], [0.0, 0.0]])
def test_all_nonpositive_alignment_is_rejected_in_both_forms(g):
    with pytest.raises(ValueError, match="rejected"):
        optimal_blend(g, [1.0, 2.0])
    with pytest.raises(ValueError, match="rejected"):
        correlated_blend(g, np.array([[1.0, -0.5], [-0.5, 1.0]]))


@pytest.mark.parametrize("seed", range(12))
def test_diagonal_and_correlated_forms_agree_for_mixed_signs(seed):
    rng = np.random.default_rng(200 + seed)
    g, _ = _random_problem(rng, mixed=True)
    s = rng.uniform(0.05, 3.0, size=g.size)
    w = optimal_blend(g, s)
    np.testing.assert_allclose(correlated_blend(g, np.diag(s)), w, rtol=1e-12, atol=1e-15)
    expected = np.where(g > 0, g / s, 0.0)
    np.testing.assert_allclose(w, expected / expected.sum(), rtol=1e-12)


@pytest.mark.parametrize(("a", "b"), [(1e-3, 1e-6), (7.0, 0.01), (1e4, 1e8)])
def test_proposition_1_is_unit_free(a, b):
    rng = np.random.default_rng(5)
    g, cov = _random_problem(rng, mixed=True)
    np.testing.assert_allclose(
        correlated_blend(a * g, b * cov), correlated_blend(g, cov), rtol=1e-9
    )
    s = np.diag(cov)
    np.testing.assert_allclose(optimal_blend(a * g, b * s), optimal_blend(g, s), rtol=1e-12)


# -- the relative floor and the floor check (issue 14) ----------------------------------------


def test_scaling_every_loss_leaves_the_weights_unchanged():
    # rgb's dO is 0 (floored); scale every measurement by 1e-3: dG by 1e-3, dO² by 1e-6. An
    # absolute floor (eps = 1e-8 on dO²) gave rgb 0.5/1e-8 in one unit and 5e-4/1e-8 in the other.
    t1, v1 = dict(T1, rgb=1.5), dict(V1, rgb=1.6)
    scaled = [{h: 1e-3 * v for h, v in m.items()} for m in (T0, V0, t1, v1)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FlooredOverfittingWarning)
        base = blend_estimate(T0, V0, t1, v1)
        small = blend_estimate(*scaled)
    assert small.floored == base.floored == ("rgb",)
    assert small.weights == pytest.approx(base.weights, rel=1e-9)
    # The same for the noise-aware rule: gains × 1e-3, their SEs × 1e-3, variances × 1e-6.
    from blendopt.functional import noise_aware_weights

    gain, se = {"a": 0.4, "b": 0.1, "c": 0.2}, {"a": 0.1, "b": 0.05, "c": 0.02}
    var = {"a": 0.3, "b": 0.0, "c": 0.5}
    one = noise_aware_weights(gain, se, var, eps=1e-12)
    milli = noise_aware_weights(
        {h: 1e-3 * v for h, v in gain.items()},
        {h: 1e-3 * v for h, v in se.items()},
        {h: 1e-6 * v for h, v in var.items()},
        eps=1e-12,
    )
    assert one.floored == milli.floored == ("b",)
    assert milli.weights == pytest.approx(one.weights, rel=1e-9)


def test_floor_of_zero_variances_everywhere_gives_weights_by_gain():
    from blendopt.functional import weight_rule

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rule = weight_rule({"a": 3.0, "b": 1.0, "c": -1.0}, {"a": 0.0, "b": 0.0, "c": 5.0})
    assert rule.weights == pytest.approx({"a": 0.75, "b": 0.25, "c": 0.0})
    assert rule.floored == ("a", "b")


@pytest.mark.parametrize(
    ("floor", "heads", "ok"), [(0.3, 3, True), (0.34, 3, False), (0.49, 2, True)]
)
def test_check_floor_against_one_over_k(floor, heads, ok):
    from blendopt._math import check_floor

    if ok:
        assert check_floor(floor, heads) == floor
    else:
        with pytest.raises(ValueError, match=r"\[0, 1/3\).*0\.34.*lower it below 0\.3333"):
            check_floor(floor, heads)
