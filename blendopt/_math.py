"""The G-Blend math: overfitting, generalization, OGR and the optimal blend weights.

Pure functions over per-head measurements (mappings head -> float). No modules, no data.

Conventions (Wang, Tran, Feiszli, CVPR 2020, §2.2 Eq. 3, Algorithm 1, Proposition 1):

- values are *lower is better* (a loss, or an error such as 1 - top-1); a higher-is-better
  metric is negated first (``higher_is_better=True``). Only differences of values enter the
  formulas, so negation is exact for any score (accuracy, mAP, ...), not only for ones in [0, 1];
- overfitting at a checkpoint ``O = L^V - L^T`` (holdout minus train probe);
- between checkpoints N and N+n: generalization ``dG = L^V(N) - L^V(N+n)`` and overfitting
  change ``dO = O(N+n) - O(N)``; ``OGR = dO / dG`` (Eq. 3);
- weights ``w_k ∝ dG_k / dO_k²`` normalized to sum to 1 (Algorithm 1's last line; Eq. 6,
  Proposition 1 in the uncorrelated case);
- a head with ``dG_k <= 0`` did not generalize and gets ``w_k = 0``; ``dO_k²`` is floored at
  ``eps``; if every weight is 0 the estimate is *rejected*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from blendopt._estimate import BlendEstimate
from blendopt._estimate import ratios as _ratios
from blendopt._warnings import FLOOR_MARK, estimate_warnings_deferred, warn_estimate

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
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"Parameter `{name}` should map each head to a number. Found {value!r} for head "
                f"{head!r}."
            ) from None
        if not math.isfinite(number):
            raise ValueError(
                f"Parameter `{name}` has the non-finite value {number} for head {head!r}. Measure "
                "a finite loss or error for every head (a diverged head cannot be blended)."
            )
        out[head] = number
    if heads is not None and set(out) != set(heads):
        missing = [h for h in heads if h not in out]
        extra = [h for h in out if h not in heads]
        raise ValueError(
            f"Parameter `{name}` should hold the same heads as the other measurements "
            f"{list(heads)}. Missing {missing}, extra {extra}."
        )
    return out


def _signed(values: dict[str, float], higher_is_better: bool) -> dict[str, float]:
    return {h: -v for h, v in values.items()} if higher_is_better else values


def overfitting(
    train: Values, holdout: Values, *, higher_is_better: bool = False
) -> dict[str, float]:
    """Overfitting at one checkpoint, ``O_k = L^V_k - L^T_k`` (§2.2, Fig. 3).

    Args:
        train: per-head value on the train probe T'.
        holdout: per-head value on the holdout V.
        higher_is_better: the values are scores (accuracy, mAP); they are negated first.
    """
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


def blend_estimate(
    train_before: Values,
    holdout_before: Values,
    train_after: Values,
    holdout_after: Values,
    *,
    higher_is_better: bool = False,
    eps: float = DEFAULT_EPS,
    fallback: Values | None = None,
    warn: bool = True,
) -> BlendEstimate:
    """G-Blend weights with the full record (Algorithm 1's last line; Eq. 6).

    ``w_k = (dG_k / max(dO_k², eps)) / Z`` for heads with ``dG_k > 0``, else 0, where Z makes
    the weights sum to 1.

    Args:
        train_before, holdout_before: per-head values at checkpoint N on T' and V.
        train_after, holdout_after: per-head values at checkpoint N+n on T' and V.
        higher_is_better: the values are scores (accuracy, mAP); they are negated first.
        eps: floor of dO² (a head that generalizes without overfitting would otherwise get an
            infinite weight). Must be > 0.
        fallback: the weights to return when the estimate is rejected (every weight 0); uniform
            by default.
        warn: emit one warning per edge rule that applies, at the caller's line:
            :class:`ZeroedHeadWarning` (heads with dG <= 0), :class:`FlooredOverfittingWarning`
            (dO² floored at eps) or :class:`RejectedEstimateWarning` (no head generalized; then
            only this one). The same facts are always recorded in ``notes``. Estimates run by
            ``GradientBlender`` warn once from the blender instead, naming the estimate.

    Returns:
        A :class:`BlendEstimate`; ``estimate.weights`` is the dict head -> weight.
    """
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"Parameter `eps` should be a finite number > 0. Found {eps!r}.")
    raw = {
        "train_before": _check_values("train_before", train_before),
    }
    heads = list(raw["train_before"])
    if not heads:
        raise ValueError("The measurements should name at least one head. Found none.")
    raw["holdout_before"] = _check_values("holdout_before", holdout_before, heads)
    raw["train_after"] = _check_values("train_after", train_after, heads)
    raw["holdout_after"] = _check_values("holdout_after", holdout_after, heads)

    d_g = generalization(
        raw["holdout_before"], raw["holdout_after"], higher_is_better=higher_is_better
    )
    d_o = overfitting_change(
        raw["train_before"],
        raw["holdout_before"],
        raw["train_after"],
        raw["holdout_after"],
        higher_is_better=higher_is_better,
    )
    notes: list[str] = []
    floored: list[str] = []
    zeroed: list[str] = []
    unnormalized: dict[str, float] = {}
    for h in heads:
        if d_g[h] <= 0.0:
            unnormalized[h] = 0.0
            zeroed.append(h)
            notes.append(f"head {h!r}: dG = {d_g[h]:.6g} <= 0 (did not generalize), weight 0")
            continue
        d_o_sq = d_o[h] ** 2
        if d_o_sq < eps:
            notes.append(f"head {h!r}: dO² = {d_o_sq:.3g} {FLOOR_MARK} = {eps:.3g}")
            d_o_sq = eps
            floored.append(h)
        unnormalized[h] = d_g[h] / d_o_sq

    total = sum(unnormalized.values())
    rejected = None
    if total > 0.0:
        weights = {h: unnormalized[h] / total for h in heads}
        accepted = True
    else:
        rejected = "no head generalized (every dG <= 0)"
        accepted = False
        weights = (
            _check_values("fallback", fallback, heads)
            if fallback is not None
            else uniform_weights(heads)
        )
        notes.append(
            "estimate rejected: no head generalized (every dG <= 0); using the fallback weights "
            + ", ".join(f"{h}={w:.4g}" for h, w in weights.items())
        )
    estimate = BlendEstimate(
        weights=weights,
        generalization=d_g,
        overfitting_change=d_o,
        accepted=accepted,
        notes=tuple(notes),
        measurements=raw,
        higher_is_better=higher_is_better,
        floored=tuple(floored),
        zeroed=tuple(zeroed),
        rejected=rejected,
    )
    # One warning per event, at the caller's line; inside GradientBlender's estimates the
    # blender warns instead, naming the estimate's index and epoch.
    if warn and not estimate_warnings_deferred():
        warn_estimate(estimate, "G-Blend estimate")
    return estimate


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

    Each argument maps head -> value (a loss or an error: lower is better, unless
    ``higher_is_better``). Heads with ``dG_k <= 0`` get weight 0; dO² is floored at ``eps``;
    if no head generalized, a :class:`RejectedEstimateWarning` is emitted and uniform weights
    are returned. :func:`blend_estimate` returns the same weights with the full record.

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
    """Proposition 1, uncorrelated case (Eq. 6): ``w_k ∝ <∇L*, v_k> / (2 σ_k²)``, sum 1.

    Args:
        alignment: ``<∇L*, v_k>`` per estimate (the first-order generalization dG_k).
        variance: ``σ_k² = E[<∇L^T - ∇L*, v_k>²]`` per estimate (> 0).

    Returns:
        The weights as a numpy array summing to 1.
    """
    g = np.asarray(alignment, dtype=np.float64)
    s = np.asarray(variance, dtype=np.float64)
    if g.ndim != 1 or s.shape != g.shape:
        raise ValueError(
            f"Parameters `alignment` and `variance` should be 1-D of equal length. Found shapes "
            f"{g.shape} and {s.shape}."
        )
    if not np.all(np.isfinite(g)) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(
            f"Parameter `variance` should be finite and > 0, `alignment` finite. Found "
            f"alignment={g.tolist()}, variance={s.tolist()}."
        )
    w = g / (2.0 * s)
    return _normalize_sum(w)


def correlated_blend(alignment: Sequence[float], covariance: Any) -> np.ndarray:
    """Proposition 1, correlated case (appendix C): ``w ∝ Σ⁻¹ <∇L*, v>``, sum 1.

    ``Σ_kj = E[<∇L^T - ∇L*, v_k><∇L^T - ∇L*, v_j>]``. Unlike the uncorrelated form, the
    weights may be negative (one estimate's overfitting cancels another's).

    Args:
        alignment: ``<∇L*, v_k>`` per estimate.
        covariance: the k × k matrix Σ, symmetric positive definite.

    Returns:
        The weights as a numpy array summing to 1.
    """
    g = np.asarray(alignment, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    if g.ndim != 1 or cov.shape != (g.size, g.size):
        raise ValueError(
            f"Parameter `covariance` should be a {g.size}×{g.size} matrix matching `alignment`. "
            f"Found shape {cov.shape}."
        )
    if not np.all(np.isfinite(cov)) or not np.all(np.isfinite(g)):
        raise ValueError("Parameters `alignment` and `covariance` should be finite.")
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12 * max(1.0, float(np.abs(cov).max()))):
        raise ValueError("Parameter `covariance` should be symmetric. Found an asymmetric matrix.")
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(
            "Parameter `covariance` should be positive definite. Found a singular or indefinite "
            "matrix; add a small ridge (covariance + 1e-8 * I) or drop a duplicated estimate."
        ) from None
    w = np.linalg.solve(cov, g)
    return _normalize_sum(w)


def _normalize_sum(w: np.ndarray) -> np.ndarray:
    total = float(w.sum())
    if not math.isfinite(total) or abs(total) < 1e-300:
        raise ValueError(
            f"The unnormalized weights {w.tolist()} sum to {total}; they cannot be normalized to "
            "sum to 1 (no estimate is aligned with the true gradient)."
        )
    return w / total
