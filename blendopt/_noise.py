"""Noise-aware G-Blend weights: standard errors of dG and dO, and shrinkage toward a prior.

:func:`blendopt.functional.weight_rule` keeps a head whose gain is within noise near the prior:
``w_k ∝ c_k raw_k + (1 - c_k) prior_k``, ``c_k = max(0, 1 - SE(dG_k)² / dG_k²)`` (positive-part
James-Stein). Evidence is counted once: measurements along one run are autocorrelated, so their
SE comes from block means (:func:`mean_and_standard_error`, ``block="auto"``); shrinkage is the
one discount for noise, and ``RollingEstimator`` smooths only by the evidence a new estimate
does not hold (:mod:`blendopt._rolling`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from blendopt._distributed import collective_device, reduced_floats
from blendopt._estimate import BlendEstimate
from blendopt._math import NoiseAwareWeights, weight_rule
from blendopt._warnings import RejectedEstimateWarning

Values = Mapping[str, float]


def mean_and_standard_error(
    samples: Sequence[float] | torch.Tensor,
    *,
    block: int | Literal["auto"] = 1,
    weights: Sequence[float] | torch.Tensor | None = None,
) -> tuple[float, float]:
    """Mean of 1-D ``samples`` and its standard error, from non-overlapping block means.

    ``block=1``: the plain ``std(ddof=1) / sqrt(n)``; ``block=m``: the spread of the means of
    ``b = n // m`` consecutive blocks (the first also takes the ``n mod m`` oldest), for
    autocorrelated samples; ``"auto"``: ``m = ⌊√n⌋``. ``weights`` (>= 0) give ``Σ a x / Σ a``
    and the SE ``sqrt(b/(b-1) Σ_B (S_B - A_B mean)²) / Σ a`` (block sums ``A_B``, ``S_B``).

    Returns:
        ``(mean, se)``; ``se`` is ``inf`` with fewer than 2 blocks.

    Raises:
        ValueError: ``samples`` empty, not 1-D or not finite; bad ``block`` or ``weights``.
    """
    x = torch.as_tensor(samples, dtype=torch.float64).detach().cpu()
    if x.ndim != 1 or x.numel() == 0:
        raise ValueError(
            f"Parameter `samples` should be a non-empty 1-D sequence. Found shape {tuple(x.shape)}."
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("Parameter `samples` holds non-finite values; measure finite values.")
    n = x.numel()
    a = torch.ones_like(x) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
    if a.shape != x.shape or not bool(torch.isfinite(a).all() and (a >= 0).all() and a.sum() > 0):
        raise ValueError(
            f"Parameter `weights` should hold {n} finite values >= 0 with a positive sum."
        )
    m = max(1, math.isqrt(n)) if block == "auto" else block
    if not isinstance(m, int) or isinstance(m, bool) or m < 1:
        raise ValueError(f"Parameter `block` should be an int >= 1 or 'auto'. Found {block!r}.")
    ids = (torch.arange(n) - n % m).clamp(min=0) // m
    big_a = torch.zeros(n // m or 1, dtype=torch.float64).index_add_(0, ids, a)
    big_s = torch.zeros_like(big_a).index_add_(0, ids, a * x)
    mean = float(big_s.sum() / big_a.sum())
    b = n // m
    if b < 2:
        return mean, math.inf
    var = float(((big_s - big_a * mean) ** 2).sum()) * b / (b - 1) / float(big_a.sum()) ** 2
    return mean, math.sqrt(var)


def reduced_moments(columns: Mapping[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
    """Mean and SE per key of 1-D tensors; n, Σx, Σx² are summed over the ranks."""
    device = collective_device()
    keys = list(columns)
    parts: list[torch.Tensor | float] = []
    for key in keys:
        x = columns[key].detach().to(device, torch.float64).reshape(-1)
        parts += [float(x.numel()), x.sum(), (x * x).sum()]
    values = reduced_floats(parts)
    out = {}
    for i, key in enumerate(keys):
        n, total, total_sq = values[3 * i : 3 * i + 3]
        if n == 0:
            raise ValueError(f"No measurements for head {key!r}; pass non-empty loaders.")
        mean = total / n
        var = max(total_sq - n * mean * mean, 0.0) / (n - 1.0) if n >= 2 else math.inf
        out[key] = (mean, math.sqrt(var / n))
    return out


def _per_sample(name: str, values: Mapping[str, torch.Tensor], heads: Sequence[str] | None):
    if not isinstance(values, Mapping):
        raise TypeError(
            f"Parameter `{name}` should map head -> 1-D tensor of per-sample values. Found "
            f"{type(values).__name__}."
        )
    out = {}
    for h, v in values.items():
        if not isinstance(v, torch.Tensor) or v.ndim != 1:
            raise TypeError(
                f"Parameter `{name}` should map head {h!r} to a 1-D tensor of per-sample values. "
                f"Found {type(v).__name__} {getattr(v, 'shape', '')}."
            )
        out[h] = v.detach().to(torch.float64)
    if heads is not None and list(out) != list(heads):
        raise ValueError(
            f"Parameter `{name}` should name the heads {list(heads)} in that order. Found "
            f"{list(out)}."
        )
    return out


def _paired_moments(
    train_before: Mapping[str, torch.Tensor],
    holdout_before: Mapping[str, torch.Tensor],
    train_after: Mapping[str, torch.Tensor],
    holdout_after: Mapping[str, torch.Tensor],
) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """The heads and, in one reduction over the ranks, mean and SE of each side (``tb:h``,
    ``vb:h``, ``ta:h``, ``va:h``) and of the paired differences ``V:h`` and ``T:h``."""
    tb = _per_sample("train_before", train_before, None)
    heads = list(tb)
    vb = _per_sample("holdout_before", holdout_before, heads)
    ta = _per_sample("train_after", train_after, heads)
    va = _per_sample("holdout_after", holdout_after, heads)
    columns = {}
    for h in heads:
        for name, before, after in (("holdout", vb[h], va[h]), ("train", tb[h], ta[h])):
            if before.numel() != after.numel():
                raise ValueError(
                    f"Head {h!r}: {before.numel()} {name} samples before and {after.numel()} "
                    "after; measure the same samples (same loader and seed) at both checkpoints."
                )
        columns.update({f"V:{h}": vb[h] - va[h], f"T:{h}": ta[h] - tb[h]})
        columns.update({f"tb:{h}": tb[h], f"vb:{h}": vb[h], f"ta:{h}": ta[h], f"va:{h}": va[h]})
    return heads, reduced_moments(columns)


def paired_standard_errors(
    train_before: Mapping[str, torch.Tensor],
    holdout_before: Mapping[str, torch.Tensor],
    train_after: Mapping[str, torch.Tensor],
    holdout_after: Mapping[str, torch.Tensor],
) -> tuple[dict[str, float], dict[str, float]]:
    """Standard errors of dG and dO from paired per-sample measurements (Eq. 3).

    ``SE(dG) = std(V_before - V_after) / sqrt(n_V)``; T' is paired the same way and independent
    of V: ``SE(dO)² = SE(dG)² + SE(T_after - T_before)²``. Sums are reduced over the ranks.

    Args:
        train_before, holdout_before, train_after, holdout_after: head -> 1-D tensor of
            per-sample values on T' and V, in the same sample order before and after.

    Returns:
        ``(se_generalization, se_overfitting_change)``, each head -> float.

    Raises:
        TypeError: a value is not a 1-D tensor.
        ValueError: heads or sample counts differ between before and after.
    """
    heads, m = _paired_moments(train_before, holdout_before, train_after, holdout_after)
    se_g = {h: m[f"V:{h}"][1] for h in heads}
    return se_g, {h: math.hypot(se_g[h], m[f"T:{h}"][1]) for h in heads}


def noise_aware_weights(
    gain: Values,
    gain_se: Values,
    variance: Values,
    *,
    prior: Values | None = None,
    raw: Values | None = None,
    eps: float = 1e-12,
    floor: float = 0.0,
    fallback: Values | None = None,
) -> NoiseAwareWeights:
    """Proposition 1 weights shrunk toward ``prior`` where the gain is within noise:
    :func:`blendopt.functional.weight_rule` with standard errors (see it for every argument);
    ``variance`` is σ_k² (dO² + SE(dO)², or the mean of ⟨∇L^T - ∇L^V, v_k⟩²)."""
    rule = {"eps": eps, "prior": prior, "raw": raw, "floor": floor, "fallback": fallback}
    return weight_rule(gain, variance, gain_se=gain_se, **rule)


def noise_aware_estimate(
    train_before: Mapping[str, torch.Tensor],
    holdout_before: Mapping[str, torch.Tensor],
    train_after: Mapping[str, torch.Tensor],
    holdout_after: Mapping[str, torch.Tensor],
    *,
    higher_is_better: bool = False,
    eps: float = 1e-8,
    fallback: Values | None = None,
    warn: bool = True,
    **shrinkage: Any,
) -> BlendEstimate:
    """Algorithm 1's weights from paired per-sample measurements, shrunk where within noise.

    dG and dO are the differences of the means (Eq. 3) with :func:`paired_standard_errors`;
    the weights are :func:`noise_aware_weights` with ``σ_k² = dO_k² + SE(dO_k)²`` (a tiny dO
    cannot give an unbounded weight). Sums are reduced over the ranks.

    Args:
        train_before, holdout_before, train_after, holdout_after: head -> 1-D tensor of
            per-sample values on T' and V (:func:`blendopt.functional.measure_per_sample`), paired.
        higher_is_better: the values are scores; they are negated first.
        eps: relative floor of σ_k² (:func:`blendopt.functional.weight_rule`).
        fallback: weights when rejected (no head with dG > 0); uniform by default.
        warn: emit :class:`RejectedEstimateWarning` when the estimate is rejected.
        **shrinkage: deprecated ``prior`` and ``floor`` (use :func:`noise_aware_weights`).

    Returns:
        A :class:`blendopt.BlendEstimate` with ``generalization_se``, ``overfitting_change_se``,
        ``raw_weights`` and ``prior`` set; ``measurements`` holds the means.
    """
    prior, floor = _deprecated_shrinkage(shrinkage)
    sign = -1.0 if higher_is_better else 1.0
    heads, moments = _paired_moments(train_before, holdout_before, train_after, holdout_after)
    m = {key: value[0] for key, value in moments.items()}
    raw = {
        f"{side}_{when}": {h: m[f"{key}{when[0]}:{h}"] for h in heads}
        for when in ("before", "after")
        for side, key in (("train", "t"), ("holdout", "v"))
    }
    se_g = {h: moments[f"V:{h}"][1] for h in heads}
    se_o = {h: math.hypot(se_g[h], moments[f"T:{h}"][1]) for h in heads}
    d_g = {h: sign * m[f"V:{h}"] for h in heads}
    d_o = {h: -sign * (m[f"V:{h}"] + m[f"T:{h}"]) for h in heads}  # (va - ta) - (vb - tb)
    variance = {h: d_o[h] ** 2 + se_o[h] ** 2 for h in heads}
    p = dict(prior) if prior is not None else {h: 1.0 / len(heads) for h in heads}
    result = noise_aware_weights(
        d_g, se_g, variance, prior=p, eps=eps, floor=floor, fallback=fallback
    )
    if warn and not result.accepted:
        warnings.warn(
            "G-Blend estimate rejected: " + "; ".join(result.notes) + ". Train longer between "
            "the checkpoints, use a larger holdout, or check the learning rate.",
            RejectedEstimateWarning,
            stacklevel=2,
        )
    return BlendEstimate(
        weights=result.weights,
        generalization=d_g,
        overfitting_change=d_o,
        accepted=result.accepted,
        notes=result.notes,
        measurements=raw,
        higher_is_better=higher_is_better,
        generalization_se=se_g,
        overfitting_change_se=se_o,
        raw_weights=result.raw,
        prior={h: p[h] / sum(p.values()) for h in heads},
        floored=result.floored,
        zeroed=result.zeroed,
        rejected=result.rejected,
    )


def _deprecated_shrinkage(options: dict[str, Any]) -> tuple[Values | None, float]:
    """``prior`` and ``floor`` of the older ``noise_aware_estimate`` signature."""
    unknown = [k for k in options if k not in ("prior", "floor")]
    if unknown:
        raise TypeError(f"noise_aware_estimate() got an unexpected keyword argument {unknown[0]!r}")
    if options:
        warnings.warn(
            f"noise_aware_estimate({', '.join(f'{k}=...' for k in options)}) is deprecated: "
            "call paired_standard_errors and noise_aware_weights(prior=..., floor=...) for "
            "shrinkage toward other weights or a floor. It goes in the next release.",
            DeprecationWarning,
            stacklevel=3,
        )
    return options.get("prior"), float(options.get("floor", 0.0))
