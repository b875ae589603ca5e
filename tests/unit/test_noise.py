"""Noise-aware weights: standard errors, shrinkage toward the prior, floor (hand-computed)."""

import math

import numpy as np
import pytest
import torch

from blendopt import BlendEstimate
from blendopt.functional import (
    mean_and_standard_error,
    noise_aware_weights,
    optimal_blend,
    paired_standard_errors,
    reliability,
    weight_rule,
)


def test_mean_and_standard_error_by_hand():
    mean, se = mean_and_standard_error([1.0, 2.0, 3.0, 4.0])
    # std(ddof=1) = sqrt(((1.5²+0.5²)*2)/3) = sqrt(5/3); se = sqrt(5/3)/2
    assert mean == pytest.approx(2.5)
    assert se == pytest.approx(math.sqrt(5 / 3) / 2)


def test_one_sample_has_infinite_standard_error():
    assert mean_and_standard_error([3.0]) == (3.0, math.inf)


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, math.nan]])
def test_bad_samples_raise(bad):
    with pytest.raises(ValueError, match="samples"):
        mean_and_standard_error(bad)


def test_paired_standard_errors_by_hand():
    t = lambda *x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    se_g, se_o = paired_standard_errors(
        train_before={"a": t(1.0, 1.0)},
        holdout_before={"a": t(1.0, 2.0, 3.0)},
        train_after={"a": t(0.0, 0.5)},
        holdout_after={"a": t(0.5, 1.0, 2.0)},
    )
    # V diffs [0.5, 1, 1]: std = sqrt(1/12), se = std / sqrt(3) = 1/6.
    assert se_g["a"] == pytest.approx(1 / 6)
    # T diffs [-1, -0.5]: std = sqrt(0.125), se = std / sqrt(2) = 0.25; dO's se = hypot.
    assert se_o["a"] == pytest.approx(math.hypot(1 / 6, 0.25))


def test_paired_standard_errors_need_the_same_samples():
    one, two = torch.ones(1), torch.ones(2)
    with pytest.raises(ValueError, match="same samples"):
        paired_standard_errors({"a": two}, {"a": two}, {"a": two}, {"a": one})
    with pytest.raises(TypeError, match="1-D tensor"):
        paired_standard_errors({"a": 1.0}, {"a": two}, {"a": two}, {"a": two})
    with pytest.raises(ValueError, match="heads"):
        paired_standard_errors({"a": two}, {"b": two}, {"a": two}, {"a": two})


def test_reliability_by_hand():
    assert reliability(1.0, 1.0) == 0.0
    assert reliability(-0.5, 1.0) == 0.0
    assert reliability(2.0, 1.0) == pytest.approx(0.75)
    assert reliability(-3.0, 1.0) == pytest.approx(8 / 9)
    assert reliability(0.0, 0.0) == 1.0  # noiseless
    assert reliability(5.0, math.inf) == 0.0
    # with σ²'s own SE: 1 - (1/2)² - (2/4)² = 0.5, unit-free (σ² and its SE scaled by 1e6)
    assert reliability(2.0, 1.0, 4.0, 2.0) == pytest.approx(0.5)
    assert reliability(2.0, 1.0, 4e6, 2e6) == pytest.approx(0.5)
    assert reliability(2.0, 1.0, 4.0, 0.0) == pytest.approx(0.75)  # exact σ²: as before
    assert reliability(2.0, 0.0, 4.0, 4.0) == 0.0  # σ² within one SE of 0
    assert reliability(2.0, 0.0, 4.0, 5.0) == 0.0  # capped at 0, never negative
    assert reliability(1.0, 0.0, 0.0, 1.0) == 0.0  # σ² of 0 with noise: no evidence
    assert reliability(2.0, 1.0, 4.0, math.inf) == 0.0


def test_variance_se_shrinks_the_weight_by_its_own_noise():
    # raw (2/3, 1/3); reliability a: 1 - 0 - (0.5/1)² = 0.75, b: 1; uniform prior 0.5:
    # a: 0.75*2/3 + 0.25*0.5 = 0.625, b: 1/3; normalized by 0.95833.
    gain, var, zero = {"a": 2.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, {"a": 0.0, "b": 0.0}
    res = weight_rule(gain, var, gain_se=zero, variance_se={"a": 0.5, "b": 0.0})
    assert res.reliability == pytest.approx({"a": 0.75, "b": 1.0})
    assert res.weights == pytest.approx(
        {"a": 0.625 / (0.625 + 1 / 3), "b": (1 / 3) / (0.625 + 1 / 3)}
    )
    assert weight_rule(gain, var, gain_se=zero).weights == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    with pytest.raises(ValueError, match="`variance_se` needs `gain_se`"):
        weight_rule(gain, var, variance_se=zero)
    with pytest.raises(ValueError, match="`variance_se` should name the heads"):
        weight_rule(gain, var, gain_se=zero, variance_se={"a": 0.0})
    with pytest.raises(ValueError, match="'a'"):
        weight_rule(gain, var, gain_se=zero, variance_se={"a": math.nan, "b": 0.0})


def test_noiseless_gains_give_proposition_1():
    gain, var = {"a": 1.0, "b": 3.0, "c": 0.5}, {"a": 1.0, "b": 2.0, "c": 0.25}
    res = noise_aware_weights(gain, dict.fromkeys(gain, 0.0), var)
    expected = optimal_blend([1.0, 3.0, 0.5], [1.0, 2.0, 0.25])
    assert list(res.weights.values()) == pytest.approx(expected.tolist())
    # by hand: 1, 1.5, 2 -> /4.5
    assert res.weights == pytest.approx({"a": 1 / 4.5, "b": 1.5 / 4.5, "c": 2 / 4.5})
    assert res.accepted


def test_shrinkage_by_hand():
    # raw (0.25, 0.75); reliability a: 1 - 0.25 = 0.75, b: 1 - 1/9 = 8/9; uniform prior 0.5:
    # a: 0.75*0.25 + 0.25*0.5 = 0.3125, b: 8/9*0.75 + 1/9*0.5 = 0.72222; normalized.
    res = noise_aware_weights({"a": 1.0, "b": 3.0}, {"a": 0.5, "b": 1.0}, {"a": 1.0, "b": 1.0})
    assert res.raw == pytest.approx({"a": 0.25, "b": 0.75})
    total = 0.3125 + 6.5 / 9
    assert res.weights == pytest.approx({"a": 0.3125 / total, "b": (6.5 / 9) / total})
    assert res.reliability == pytest.approx({"a": 0.75, "b": 8 / 9})
    assert any("shrunk" in n for n in res.notes)


def test_floor_by_hand():
    res = noise_aware_weights(
        {"a": 1.0, "b": -1.0, "c": -1.0},
        dict.fromkeys("abc", 0.0),
        dict.fromkeys("abc", 1.0),
        floor=0.05,
    )
    assert res.weights == pytest.approx({"a": 0.9, "b": 0.05, "c": 0.05})


def test_no_positive_gain_is_rejected_with_the_fallback():
    fallback = {"a": 0.7, "b": 0.3}
    res = noise_aware_weights(
        {"a": -1.0, "b": 0.0}, {"a": 0.1, "b": 0.1}, {"a": 1.0, "b": 1.0}, fallback=fallback
    )
    assert not res.accepted
    assert res.weights == pytest.approx(fallback)


def test_pure_noise_stays_near_the_prior_and_is_never_one_hot():
    rng = np.random.default_rng(0)
    heads = ["visual", "audio", "fused"]
    weights, raw_max = [], []
    for _ in range(300):
        # Window means of pure noise: mean 0, standard error 1; dO² also noise.
        gain = dict(zip(heads, rng.normal(0.0, 1.0, 3).tolist(), strict=True))
        var = dict(zip(heads, (rng.normal(0.0, 1.0, 3) ** 2 + 1e-3).tolist(), strict=True))
        res = noise_aware_weights(gain, dict.fromkeys(heads, 1.0), var)
        if res.accepted:
            weights.append([res.weights[h] for h in heads])
            raw_max.append(max(res.raw.values()))
    w = np.array(weights)
    assert w.max() < 0.95, "never (nearly) one-hot"
    assert np.abs(w.mean(0) - 1 / 3).max() < 0.05, "on average the prior"
    assert np.median(np.abs(w - 1 / 3).max(1)) < 0.1
    # the raw OGR weights on the same noise are often nearly one-hot
    assert np.mean(np.array(raw_max) > 0.9) > 0.3


def test_a_clear_signal_still_wins():
    gain = {"visual": 1.0, "audio": -0.5, "fused": 0.1}
    se = dict.fromkeys(gain, 0.05)  # visual 20 SE, audio -10 SE, fused 2 SE
    res = noise_aware_weights(gain, se, {"visual": 0.1, "audio": 1.0, "fused": 1.0})
    assert res.weights["visual"] > 0.85
    assert res.weights["audio"] < 0.01


def test_bad_arguments():
    g = {"a": 1.0, "b": 1.0}
    with pytest.raises(ValueError, match="floor"):
        noise_aware_weights(g, g, g, floor=0.5)
    with pytest.raises(ValueError, match="gain_se"):
        noise_aware_weights(g, {"a": 1.0}, g)
    with pytest.raises(ValueError, match="eps"):
        noise_aware_weights(g, g, g, eps=0.0)
    with pytest.raises(ValueError, match="finite"):
        noise_aware_weights({"a": math.inf, "b": 1.0}, g, g)


def test_blend_estimate_serializes_the_noise_fields():
    est = BlendEstimate(
        weights={"a": 1.0},
        generalization={"a": 0.1},
        overfitting_change={"a": 0.2},
        accepted=True,
        generalization_se={"a": 0.01},
        overfitting_change_se={"a": 0.02},
        raw_weights={"a": 1.0},
        prior={"a": 1.0},
    )
    data = est.to_dict()
    assert data["generalization_se"] == {"a": 0.01}
    assert BlendEstimate.from_dict(data) == est
    old = {k: v for k, v in data.items() if k not in ("generalization_se", "prior")}
    assert BlendEstimate.from_dict(old).generalization_se is None


# -- honest standard errors: block means (issue 14) -------------------------------------------


def _ar1(phi, n, seed):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n)
    x = np.empty(n)
    x[0] = e[0] / math.sqrt(1 - phi**2)  # stationary start
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


@pytest.mark.parametrize("phi", [0.5, 0.8])
def test_block_standard_error_converges_to_the_long_run_standard_error_of_ar1(phi):
    # x_t = φ x_{t-1} + ε_t, Var ε = 1: long-run variance 1/(1-φ)², so SE(mean) = 1/((1-φ)√n).
    n = 2**14
    truth = 1.0 / ((1.0 - phi) * math.sqrt(n))
    ratios = [mean_and_standard_error(_ar1(phi, n, s), block="auto")[1] / truth for s in range(8)]
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.06)
    # The plain SE counts correlated measurements as independent: √((1-φ)/(1+φ)) of the truth.
    plain = mean_and_standard_error(_ar1(phi, n, 0))[1] / truth
    assert plain == pytest.approx(math.sqrt((1 - phi) / (1 + phi)), rel=0.1)


def test_block_standard_error_matches_the_plain_one_on_independent_data():
    x = np.random.default_rng(3).normal(size=2**14)
    mean, plain = mean_and_standard_error(x)
    same_mean, blocked = mean_and_standard_error(x, block="auto")
    assert same_mean == pytest.approx(mean, rel=1e-12)
    assert blocked == pytest.approx(plain, rel=0.15)
    assert mean_and_standard_error(x, block=1) == (mean, plain)


def test_block_means_by_hand():
    # n = 7, block 3: blocks [1, 2, 3, 4] (the oldest remainder joins the first), [5, 6, 7].
    # A = (4, 3), S = (10, 18), mean 4; S - A·mean = (-6, 6); se² = 2/1 · 72 / 7² .
    mean, se = mean_and_standard_error([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], block=3)
    assert mean == pytest.approx(4.0)
    assert se == pytest.approx(math.sqrt(2 * 72) / 7)
    assert mean_and_standard_error([1.0, 2.0, 3.0], block=2)[1] == math.inf  # one block


def test_weighted_mean_and_its_standard_error():
    # Equal weights change nothing; exponential weights give Σa x / Σa and, on independent
    # data, σ √(Σa²) / Σa.
    x = np.random.default_rng(4).normal(size=4096)
    assert mean_and_standard_error(x, weights=np.full(x.size, 3.0)) == pytest.approx(
        mean_and_standard_error(x)
    )
    a = 0.999 ** np.arange(x.size)[::-1]
    mean, se = mean_and_standard_error(x, weights=a)
    assert mean == pytest.approx(float(a @ x / a.sum()))
    assert se == pytest.approx(math.sqrt((a**2).sum()) / a.sum(), rel=0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"block": 0}, "block"), ({"block": "big"}, "block"), ({"weights": [1.0, -1.0]}, "weights")],
)
def test_bad_block_or_weights_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mean_and_standard_error([1.0, 2.0], **kwargs)
