"""The G-Blend math: overfitting, generalization, OGR and the optimal blend weights.

Pure functions over per-head measurements (head -> float), after Wang, Tran, Feiszli (CVPR
2020): values are lower-is-better (``higher_is_better=True`` negates scores; only differences
enter, so this is exact for any score); ``O = L^V - L^T``; ``dG = L^V(N) - L^V(N+n)``,
``dO = O(N+n) - O(N)``, ``OGR = dO / dG`` (Eq. 3); ``w_k ∝ dG_k / dO_k²``, sum 1 (Algorithm
1; Eq. 6). A head with ``dG_k <= 0`` gets 0; ``dO_k²`` is floored relative to the largest
(:func:`relative_floor`); if every weight is 0 the estimate is *rejected*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from blendopt._estimate import BlendEstimate
from blendopt._estimate import ratios as _ratios
from blendopt._warnings import estimate_warnings_deferred, warn_estimate

#: Default floor of dO² (see :func:`blend_estimate`).
DEFAULT_EPS = 1e-8

Values = Mapping[str, float]


def _check_values(
    name: str, values: Values, heads: Sequence[str] | None = None
) -> dict[str, float]:
    """Validate one measurement mapping and return it as a plain dict of floats."""
    if not isinstance(values, Mapping):
        raise TypeError(
            f"Parameter `{name}` should be a mapping head -> float. Found {type(values).__name__}."
        )
    out: dict[str, float] = {}
    for head, value in values.items():
        try:
            out[head] = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"Parameter `{name}` should map each head to a number. Found {value!r} for head "
                f"{head!r}."
            ) from None
        if not math.isfinite(out[head]):
            raise ValueError(
                f"Parameter `{name}` has the non-finite value {out[head]} for head {head!r}. "
                "Measure a finite loss or error for every head (a diverged head cannot be blended)."
            )
    if heads is not None and set(out) != set(heads):
        raise ValueError(
            f"Parameter `{name}` should hold the same heads as the other measurements "
            f"{list(heads)}. Missing {[h for h in heads if h not in out]}, extra "
            f"{[h for h in out if h not in heads]}."
        )
    return out


def _signed(values: dict[str, float], higher_is_better: bool) -> dict[str, float]:
    return {h: -v for h, v in values.items()} if higher_is_better else values


def overfitting(
    train: Values, holdout: Values, *, higher_is_better: bool = False
) -> dict[str, float]:
    """Overfitting at one checkpoint, ``O_k = L^V_k - L^T_k`` (§2.2, Fig. 3), from per-head
    values on the train probe T' and the holdout V (scores are negated first)."""
    t = _signed(_check_values("train", train), higher_is_better)
    v = _signed(_check_values("holdout", holdout, list(t)), higher_is_better)
    return {h: v[h] - t[h] for h in t}


def generalization(
    holdout_before: Values, holdout_after: Values, *, higher_is_better: bool = False
) -> dict[str, float]:
    """Generalization between two checkpoints, ``dG_k = L^V_k(N) - L^V_k(N+n)`` (Eq. 3)."""
    before = _signed(_check_values("holdout_before", holdout_before), higher_is_better)
    after = _signed(_check_values("holdout_after", holdout_after, list(before)), higher_is_better)
    return {h: before[h] - after[h] for h in before}


def overfitting_change(
    train_before: Values,
    holdout_before: Values,
    train_after: Values,
    holdout_after: Values,
    *,
    higher_is_better: bool = False,
) -> dict[str, float]:
    """Change of overfitting between two checkpoints, ``dO_k = O_k(N+n) - O_k(N)`` (Eq. 3)."""
    before = overfitting(train_before, holdout_before, higher_is_better=higher_is_better)
    after = overfitting(train_after, holdout_after, higher_is_better=higher_is_better)
    if set(before) != set(after):
        raise ValueError(
            f"The measurements before ({list(before)}) and after ({list(after)}) should name "
            "the same heads."
        )
    return {h: after[h] - before[h] for h in before}


def ogr(
    train_before: Values,
    holdout_before: Values,
    train_after: Values,
    holdout_after: Values,
    *,
    higher_is_better: bool = False,
) -> dict[str, float]:
    """Overfitting-to-generalization ratio per head, ``OGR_k = dO_k / dG_k`` (Eq. 3).

    ``dG_k = 0`` gives ``inf`` (with the sign of dO), or ``nan`` when dO is 0 too.
    """
    d_o = overfitting_change(
        train_before, holdout_before, train_after, holdout_after, higher_is_better=higher_is_better
    )
    d_g = generalization(holdout_before, holdout_after, higher_is_better=higher_is_better)
    return _ratios(d_o, d_g)


def uniform_weights(heads: Sequence[str]) -> dict[str, float]:
    """Equal weights 1/k over ``heads``."""
    if len(heads) == 0:
        raise ValueError("Parameter `heads` should name at least one head. Found none.")
    return {h: 1.0 / len(heads) for h in heads}


def blend_estimate(  # noqa: PLR0913  the four measurements, then eps and resolution: two floors
    train_before: Values,
    holdout_before: Values,
    train_after: Values,
    holdout_after: Values,
    *,
    higher_is_better: bool = False,
    eps: float = DEFAULT_EPS,
    resolution: float | None = None,
    fallback: Values | None = None,
    warn: bool = True,
) -> BlendEstimate:
    """G-Blend weights with the full record (Algorithm 1's last line; Eq. 6).

    ``w_k ∝ dG_k / max(dO_k², eps · max_j dO_j²)`` for heads with ``dG_k > 0``, else 0, summing
    to 1 (:func:`weight_rule` without standard errors).

    Args:
        train_before, holdout_before: per-head values at checkpoint N on T' and V.
        train_after, holdout_after: per-head values at checkpoint N+n on T' and V.
        higher_is_better: the values are scores (accuracy, mAP); they are negated first.
        eps: relative floor of dO² (> 0): ``eps`` times the largest dO² of a head with dG > 0,
            so the weights do not depend on the loss's units.
        resolution: the metric's smallest step (e.g. 1/|V| for an error on V): dO² is also
            floored at resolution², those heads recorded in ``floored``; ``None``: no such floor.
        fallback: the weights when the estimate is rejected (every weight 0); uniform by default.
        warn: one warning per edge rule that applies (:class:`ZeroedHeadWarning`,
            :class:`FlooredOverfittingWarning`, or only :class:`RejectedEstimateWarning`); the
            estimate's fields record them always. Inside ``GradientBlender`` the blender warns.

    Returns:
        A :class:`BlendEstimate`; ``estimate.weights`` is the dict head -> weight.
    """
    for name, value in (("eps", eps), ("resolution", resolution)):
        if (value is not None or name == "eps") and not (
            isinstance(value, (int, float)) and math.isfinite(value) and value > 0
        ):
            raise ValueError(f"Parameter `{name}` should be a finite number > 0. Found {value!r}.")
    raw: dict[str, dict[str, float]] = {}
    for name, values in zip(
        ("train_before", "holdout_before", "train_after", "holdout_after"),
        (train_before, holdout_before, train_after, holdout_after),
        strict=True,
    ):
        raw[name] = _check_values(name, values, list(raw["train_before"]) if raw else None)
    heads = list(raw["train_before"])
    if not heads:
        raise ValueError("The measurements should name at least one head. Found none.")
    d_g = generalization(
        raw["holdout_before"], raw["holdout_after"], higher_is_better=higher_is_better
    )
    d_o = overfitting_change(*raw.values(), higher_is_better=higher_is_better)
    least = 0.0 if resolution is None else resolution**2
    coarse = [h for h in heads if d_g[h] > 0 and d_o[h] ** 2 < least]  # below the resolution
    variance = {h: max(d_o[h] ** 2, least) for h in heads}
    rule = weight_rule(d_g, variance, eps=eps, fallback=fallback)
    notes = [
        f"head {h!r}: |dO| = {abs(d_o[h]):.3g} is below the metric's resolution "
        f"{resolution:.3g}; dO² floored to {least:.3g}"
        for h in coarse
    ]
    estimate = BlendEstimate(
        weights=rule.weights,
        generalization=d_g,
        overfitting_change=d_o,
        accepted=rule.accepted,
        notes=(*notes, *rule.notes),
        measurements=raw,
        higher_is_better=higher_is_better,
        floored=tuple(dict.fromkeys([*coarse, *rule.floored])),
        zeroed=rule.zeroed,
        rejected=rule.rejected,
    )
    if warn and not estimate_warnings_deferred():
        warn_estimate(estimate, "G-Blend estimate")
    return estimate


@dataclass(frozen=True)
class NoiseAwareWeights:
    """The result of :func:`weight_rule`: final ``weights`` (the fallback when not
    ``accepted``), ``raw`` OGR weights (all 0 when rejected), ``reliability`` per head
    (``max(0, 1 - SE²/dG²)``), the ``notes``, ``floored`` and ``zeroed`` heads, why ``rejected``."""

    weights: dict[str, float]
    raw: dict[str, float]
    reliability: dict[str, float]
    accepted: bool
    notes: tuple[str, ...]
    floored: tuple[str, ...] = ()
    zeroed: tuple[str, ...] = ()
    rejected: str | None = None


# The notes: the plain rule speaks of dG and dO², the noise-aware one of gain and variance.
_PLAIN_WORDS = {
    "zeroed": "head {h!r}: dG = {g:.6g} <= 0 (did not generalize), weight 0",
    "floored": "head {h!r}: dO² = {v:.3g} floored to {eps:.3g} (eps × the largest dO²)",
    "rejected": "no head generalized (every dG <= 0)",
}
_NOISE_WORDS = {
    "zeroed": "head {h!r}: gain {g:.4g} <= 0, raw weight 0",
    "floored": "head {h!r}: variance {v:.3g} floored to {eps:.3g} (eps × the largest)",
    "rejected": "no head has a positive gain",
}


def weight_rule(  # noqa: PLR0913  the rule's two inputs, their two SEs, prior, floors, fallback
    gain: Values,
    variance: Values,
    *,
    eps: float = DEFAULT_EPS,
    gain_se: Values | None = None,
    variance_se: Values | None = None,
    prior: Values | None = None,
    raw: Values | None = None,
    floor: float = 0.0,
    fallback: Values | None = None,
) -> NoiseAwareWeights:
    """The one weight rule for dG / σ² (Eq. 6; Algorithm 1's last line), with optional shrinkage.

    1. ``raw_k ∝ gain_k / max(variance_k, relative_floor(...))`` for ``gain_k > 0``, else 0
       (``raw`` replaces it, e.g. :func:`correlated_blend`'s); no positive raw weight: rejected,
       ``fallback`` returned.
    2. With ``gain_se``: ``w_k ∝ c_k raw_k + (1 - c_k) prior_k``, ``c_k = max(0, 1 - se_k² /
       gain_k² - vse_k² / variance_k²)`` (:func:`reliability`; ``vse`` from ``variance_se``,
       0 without it); ``gain_se=None``: the plain rule (``c_k = 1``).
    3. ``w ← floor + (1 - K·floor) w`` when ``floor > 0``.

    Args:
        gain: head -> dG (or ⟨∇L^V, v_k⟩), higher is better.
        variance: head -> σ_k² (dO² for the plain rule).
        eps: relative floor of ``variance`` (:func:`relative_floor`).
        gain_se: head -> SE of ``gain`` (``inf``: full shrinkage); ``None``: no shrinkage.
        variance_se: head -> SE of ``variance`` (with ``gain_se`` only): the weight's noise
            includes σ²'s, e.g. a rolling window's mean of o².
        prior: weights to shrink toward (normalized); uniform by default.
        raw: precomputed raw weights replacing step 1's formula; normalized here.
        floor: minimum weight of every head, in [0, 1/K).
        fallback: weights when rejected: as given for the plain rule (uniform by default),
            else normalized (``prior`` by default).

    Raises:
        ValueError: heads differ between arguments, non-finite gains, bad ``eps``/``floor``.
    """
    heads = list(gain)
    plain = gain_se is None
    _check_rule_inputs(heads, gain, variance, gain_se, variance_se, eps, floor)
    words = _PLAIN_WORDS if plain else _NOISE_WORDS
    p = _normalized(dict(prior) if prior is not None else dict.fromkeys(heads, 1.0), heads)
    notes: list[str] = []
    floored: list[str] = []
    unnormalized: dict[str, float] = {}
    if raw is None:
        least = relative_floor(variance, gain, eps)
        for h in heads:
            if gain[h] <= 0.0:
                unnormalized[h] = 0.0
                notes.append(words["zeroed"].format(h=h, g=gain[h]))
                continue
            var = variance[h]
            if var < least:
                notes.append(words["floored"].format(h=h, v=var, eps=least))
                floored.append(h)
                var = least
            unnormalized[h] = gain[h] / var
    else:
        unnormalized = {h: max(float(raw[h]), 0.0) for h in heads}
    vse = variance_se or dict.fromkeys(heads, 0.0)
    rel = {
        h: 1.0 if plain else reliability(gain[h], gain_se[h], variance[h], vse[h])  # type: ignore[index]
        for h in heads
    }
    total = sum(unnormalized.values())
    if total <= 0.0 or not math.isfinite(total):
        if fallback is None:
            weights = uniform_weights(heads) if plain else p
        elif plain:
            weights = _check_values("fallback", fallback, heads)
        else:
            weights = _normalized(dict(fallback), heads)
        notes.append(
            f"estimate rejected: {words['rejected']}; using the fallback weights "
            + ", ".join(f"{h}={w:.4g}" for h, w in weights.items())
        )
        zero = dict.fromkeys(heads, 0.0)
        return NoiseAwareWeights(
            weights, zero, rel, False, tuple(notes), tuple(floored), (), words["rejected"]
        )
    r = {h: unnormalized[h] / total for h in heads}
    weights = r if plain else _shrunk(r, rel, p, notes)
    if floor > 0.0:
        weights = {h: floor + (1.0 - len(heads) * floor) * weights[h] for h in heads}
        notes.append(f"floor {floor:g}: every weight >= {floor:g}")
    zeroed = tuple(h for h in heads if raw is None and gain[h] <= 0.0 and weights[h] == 0.0)
    return NoiseAwareWeights(weights, r, rel, True, tuple(notes), tuple(floored), zeroed)


def _check_rule_inputs(
    heads: list[str],
    gain: Values,
    variance: Values,
    gain_se: Values | None,
    variance_se: Values | None,
    eps: float,
    floor: float,
) -> None:
    if not heads:
        raise ValueError("Parameter `gain` should name at least one head. Found none.")
    if variance_se is not None and gain_se is None:
        raise ValueError(
            "Parameter `variance_se` needs `gain_se` (the shrinkage uses both); pass `gain_se`, "
            "or drop `variance_se` for the plain rule."
        )
    se = dict.fromkeys(heads, 0.0) if gain_se is None else gain_se
    vse = dict.fromkeys(heads, 0.0) if variance_se is None else variance_se
    for name, values in (("gain_se", se), ("variance_se", vse), ("variance", variance)):
        if set(values) != set(heads):
            raise ValueError(
                f"Parameter `{name}` should name the heads {heads}. Found {list(values)}."
            )
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"Parameter `eps` should be a finite number > 0. Found {eps!r}.")
    check_floor(floor, len(heads))
    for h in heads:
        if (
            not math.isfinite(gain[h])
            or math.isnan(variance[h])
            or math.isnan(se[h])
            or math.isnan(vse[h])
        ):
            raise ValueError(
                f"Head {h!r} has gain {gain[h]}, SE {se[h]}, variance {variance[h]} (SE "
                f"{vse[h]}); they should be finite numbers (the SEs may be inf)."
            )


def relative_floor(variance: Values, gain: Values, eps: float) -> float:
    """The floor of σ_k²: ``eps`` times the largest finite σ_j² of a head with ``gain_j > 0``
    (unit-free), or ``eps`` when those are all 0 (any value then gives the same weights)."""
    scale = max((v for h, v in variance.items() if gain[h] > 0 and math.isfinite(v)), default=0.0)
    return eps * scale if scale > 0 else eps


def check_floor(floor: object, heads: int) -> float:
    """``floor`` as a float after checking it is in ``[0, 1/K)`` for K = ``heads`` (else
    ``ValueError``: K·floor >= 1 leaves no weight to distribute)."""
    if not (isinstance(floor, (int, float)) and 0.0 <= floor < 1.0 / heads):
        raise ValueError(
            f"Parameter `floor` should be in [0, 1/{heads}) for {heads} heads. Found {floor!r}; "
            f"lower it below {1.0 / heads:.4g}."
        )
    return float(floor)


def reliability(gain: float, se: float, variance: float = 1.0, variance_se: float = 0.0) -> float:
    """Positive-part James-Stein factor of the weight ratio ``gain / variance``:
    ``max(0, 1 - se² / gain² - variance_se² / variance²)``, the ratio's squared relative
    standard error by the delta method (independent errors). With ``variance_se = 0``: 1
    without noise (``se = 0``), 0 for a gain within one standard error, 0.75 at two, 0.89 at
    three."""
    if variance_se == 0.0:
        rel_variance = 0.0
    elif math.isfinite(variance_se) and math.isfinite(variance) and variance > 0.0:
        rel_variance = (variance_se * variance_se) / (variance * variance)
    else:
        return 0.0
    if se == 0.0:
        rel_gain = 0.0  # a noiseless gain is fully reliable, whatever its value
    elif not math.isfinite(se) or abs(gain) <= se:
        return 0.0
    else:
        rel_gain = (se * se) / (gain * gain)
    return max(0.0, 1.0 - rel_gain - rel_variance)


def _shrunk(
    r: dict[str, float], rel: dict[str, float], prior: dict[str, float], notes: list[str]
) -> dict[str, float]:
    """``c_k r_k + (1 - c_k) prior_k``, normalized; the shrunk heads are noted."""
    heads = list(r)
    mixed = {h: rel[h] * r[h] + (1.0 - rel[h]) * prior[h] for h in heads}
    shrunk = [h for h in heads if rel[h] < 0.9]
    if shrunk:
        notes.append(
            "shrunk toward the prior (weight within noise): "
            + ", ".join(f"{h} (reliability {rel[h]:.2f})" for h in shrunk)
        )
    return _normalized(mixed, heads) if sum(mixed.values()) > 0 else prior


def _normalized(values: dict[str, float], heads: Sequence[str]) -> dict[str, float]:
    if set(values) != set(heads):
        raise ValueError(f"The prior/fallback weights should name the heads {list(heads)}.")
    total = sum(float(values[h]) for h in heads)
    if not math.isfinite(total) or total <= 0 or any(float(values[h]) < 0 for h in heads):
        raise ValueError(f"The prior/fallback weights {values} should be >= 0 with a positive sum.")
    return {h: float(values[h]) / total for h in heads}


def gblend_weights(
    train_before: Values,
    holdout_before: Values,
    train_after: Values,
    holdout_after: Values,
    *,
    higher_is_better: bool = False,
    eps: float = DEFAULT_EPS,
) -> dict[str, float]:
    """G-Blend weights ``w_k ∝ dG_k / dO_k²``, summing to 1 (Algorithm 1; Eq. 6).

    Each argument maps head -> value (lower is better, unless ``higher_is_better``). Heads with
    ``dG_k <= 0`` get 0; dO² is floored (:func:`relative_floor`); if no head generalized, a
    :class:`RejectedEstimateWarning` and uniform weights. :func:`blend_estimate` gives the record.

    Example:
        >>> w = gblend_weights(
        ...     train_before={"rgb": 2.0, "audio": 2.0, "fused": 2.0},
        ...     holdout_before={"rgb": 2.1, "audio": 2.1, "fused": 2.1},
        ...     train_after={"rgb": 1.0, "audio": 0.5, "fused": 0.8},
        ...     holdout_after={"rgb": 1.5, "audio": 2.0, "fused": 1.6},
        ... )
        >>> {h: round(v, 3) for h, v in w.items()}
        {'rgb': 0.778, 'audio': 0.011, 'fused': 0.212}
    """
    return blend_estimate(
        train_before,
        holdout_before,
        train_after,
        holdout_after,
        higher_is_better=higher_is_better,
        eps=eps,
        warn=True,
    ).weights


def optimal_blend(alignment: Sequence[float], variance: Sequence[float]) -> np.ndarray:
    """Proposition 1, uncorrelated case (Eq. 6), sign-safe: ``w_k ∝ max(g_k, 0) / σ_k²``, sum 1.

    Eq. 17's ``w_k = λ g_k / (2σ_k²)`` has ``λ > 0`` (Eq. 19); rescaling by a negative
    ``Σ_k g_k/σ_k²`` would flip every sign, so with weights >= 0 the KKT conditions of Eq. 13
    give 0 to every head with ``g_k <= 0`` (:func:`correlated_blend` with a diagonal Σ).

    Args:
        alignment: ``g_k = <∇L*, v_k>`` per estimate (the first-order dG_k).
        variance: ``σ_k² = E[<∇L^T - ∇L*, v_k>²]`` per estimate (> 0).

    Raises:
        ValueError: bad shapes or values, or every ``g_k <= 0`` (rejected).
    """
    g, s = _blend_inputs(alignment, variance, "variance")
    if s.shape != g.shape or not np.all(s > 0):
        raise ValueError(
            f"Parameter `variance` should be > 0 with one entry per alignment. Found "
            f"alignment={g.tolist()}, variance={s.tolist()}."
        )
    return _positive_normalized(np.where(g > 0, g / s, 0.0))


def correlated_blend(alignment: Sequence[float], covariance: Any) -> np.ndarray:
    """Proposition 1, correlated case (appendix C), sign-safe: ``w ∝ Σ_SS⁻¹ g_S`` on a support S.

    ``Σ_kj = E[<∇L^T - ∇L*, v_k><∇L^T - ∇L*, v_j>]``. Appendix C's ``w ∝ Σ⁻¹g`` may have
    negative entries (a negative sum flips them all); here ``w`` minimizes Eq. 13's ``wᵀΣw``
    s.t. ``gᵀw = 1``, ``w >= 0``, over the heads with ``g_k > 0`` (a head whose holdout loss
    rises gets 0, as in the diagonal form): ``w_S ∝ Σ_SS⁻¹ g_S > 0`` on its support S (KKT,
    an active-set solve). A diagonal Σ gives :func:`optimal_blend`.

    Args:
        alignment: ``g_k = <∇L*, v_k>`` per estimate.
        covariance: the k × k matrix Σ, symmetric positive definite.

    Raises:
        ValueError: a bad Σ, or every ``g_k <= 0`` (rejected).
    """
    g, cov = _blend_inputs(alignment, covariance, "covariance")
    if cov.shape != (g.size, g.size):
        raise ValueError(
            f"Parameter `covariance` should be a {g.size}×{g.size} matrix matching `alignment`. "
            f"Found shape {cov.shape}."
        )
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12 * max(1.0, float(np.abs(cov).max()))):
        raise ValueError("Parameter `covariance` should be symmetric. Found an asymmetric matrix.")
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(
            "Parameter `covariance` should be positive definite. Found a singular or indefinite "
            "matrix; add a small ridge (covariance + 1e-8 * trace/k * I) or drop a duplicated "
            "estimate."
        ) from None
    w = np.zeros_like(g)
    rising = g > 0
    if rising.any():
        w[rising] = _nonnegative_solve(cov[np.ix_(rising, rising)], g[rising])
    return _positive_normalized(w)


def _blend_inputs(alignment: Any, second: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    g = np.asarray(alignment, dtype=np.float64)
    other = np.asarray(second, dtype=np.float64)
    if g.ndim != 1 or not np.all(np.isfinite(g)) or not np.all(np.isfinite(other)):
        raise ValueError(
            f"Parameters `alignment` (1-D) and `{name}` should be finite. Found alignment shape "
            f"{g.shape}."
        )
    return g, other


def _nonnegative_solve(cov: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``argmin_{u >= 0} ½uᵀΣu - gᵀu`` (Lawson-Hanson): Eq. 13's minimizer times a factor > 0."""
    u = np.zeros_like(g)
    free = np.zeros(g.size, dtype=bool)
    tol = 1e-12 * float(np.abs(g).max())
    for _ in range(3 * g.size):
        push = np.where(free, -np.inf, g - cov @ u)
        j = int(np.argmax(push))
        if push[j] <= tol:
            break
        free[j] = True
        while True:
            s = np.zeros_like(g)
            s[free] = np.linalg.solve(cov[np.ix_(free, free)], g[free])
            if np.all(s[free] > 0):
                u = s
                break
            bad = np.flatnonzero(free & (s <= 0))
            ratio = u[bad] / np.maximum(u[bad] - s[bad], np.finfo(float).tiny)
            u = u + ratio.min() * (s - u)
            u[bad[ratio == ratio.min()]] = 0.0  # the blocking heads leave the support
            free &= u > 0
            u[~free] = 0.0
    return u


def _positive_normalized(w: np.ndarray) -> np.ndarray:
    total = float(w.sum())
    if not total > 0:
        raise ValueError(
            f"Estimate rejected: no estimate has a positive alignment (unnormalized weights "
            f"{w.tolist()}); no blend with weights >= 0 lowers the holdout loss. Keep the "
            "weights in use."
        )
    return w / total
