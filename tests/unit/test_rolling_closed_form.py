"""What GradientMode's g and o estimate, on heads whose population gradients are known.

Linear-Gaussian heads with squared loss, ``x ~ N(0, I)``, training targets
``y = a·x + ε`` and holdout targets ``y = a_V·x + ε`` (``ε ~ N(0, s²)``; ``a_V ≠ a`` stands in
for the gap between the training and the holdout distribution). Head k predicts ``w_k·x_k``
from its features ``x_k``. Its per-sample gradient is ``x_k (x_k·δ_k − n_k)`` with
``δ_k = w_k − a_k`` and ``n_k = a_{−k}·x_{−k} + ε ~ N(0, τ_k²)`` independent of ``x_k``, so

- population gradients: ``μ^T_k = w_k − a_k``, ``μ^V_k = w_k − a_{V,k}``;
- per-sample covariance: ``C_k = (|δ_k|² + τ_k²) I + δ_k δ_kᵀ`` (Isserlis), and a batch of B
  has ``Cov(v_k) = C_k / B``.

docs/estimators.md derives ``E[g_k] = ⟨μ^V_k, μ^T_k⟩`` and ``E[o_k] = ⟨μ^T_k − μ^V_k, μ^T_k⟩``
(+ ``tr C_k / B`` without a probe). The tests hold the parameters fixed and average many
seeded measurements (the estimate's own window mean, 500 batches of 8): each mean lies within
4 of its own standard errors of the derived value (the measurements are independent at fixed
parameters, so that SE is honest), and without a probe o lies > 6 SE from the population term.
"""

import pytest
import torch
from torch import nn

from blendopt import EstimateRequest, GradientMode, RollingEstimator
from blendopt.functional import uniform_weights

D_A, D_B, BATCH, STEPS, NOISE = 2, 8, 8, 500, 0.5
HEADS = ("a", "b", "fused")
TRAIN_A = torch.tensor([1.0, -0.5, 0.4, 0.3, -0.2, 0.2, 0.1, -0.3, 0.2, 0.1], dtype=torch.float64)
HOLDOUT_A = TRAIN_A + torch.tensor([0.3, 0.0, 0.1, 0.0, 0.0, -0.1, 0.0, 0.1, 0.0, 0.0])
FEATURES = {"a": slice(0, D_A), "b": slice(D_A, D_A + D_B), "fused": slice(0, D_A + D_B)}


class _LinearHeads(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.heads = nn.ParameterDict(
            {
                h: nn.Parameter(TRAIN_A[f] + 0.5 * torch.randn(len(TRAIN_A[f]), generator=g))
                for h, f in FEATURES.items()
            }
        )

    def forward(self, x):
        return {h: x[:, FEATURES[h]] @ self.heads[h] for h in HEADS}


def _loss_fn(model, batch):
    x, y = batch
    return {h: 0.5 * ((z - y) ** 2).mean() for h, z in model(x).items()}


def _batches(coef, n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(BATCH, len(coef), generator=g, dtype=torch.float64)
        out.append((x, x @ coef + NOISE * torch.randn(BATCH, generator=g, dtype=torch.float64)))
    return out


def _derived(model, probe):
    """Per head: (E[g], E[o]) from the closed form above."""
    out = {}
    for h, f in FEATURES.items():
        w = model.heads[h].detach()
        mu_t, mu_v = w - TRAIN_A[f], w - HOLDOUT_A[f]
        tau2 = float(TRAIN_A.square().sum() - TRAIN_A[f].square().sum()) + NOISE**2
        delta2 = float(mu_t @ mu_t)
        trace_c = len(w) * (delta2 + tau2) + delta2
        noise = 0.0 if probe else trace_c / BATCH
        out[h] = (float(mu_v @ mu_t), float((mu_t - mu_v) @ mu_t) + noise)
    return out


def _measured(model, probe):
    est = RollingEstimator(
        model,
        _loss_fn,
        _batches(HOLDOUT_A, STEPS, seed=2),
        probe=_batches(TRAIN_A, STEPS, seed=3) if probe else None,
        mode=GradientMode(interval=1, window=STEPS, min_measurements=2),
    )
    for step, batch in enumerate(_batches(TRAIN_A, STEPS, seed=1)):
        est.observe(_loss_fn(model, batch), step=step)
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    request = EstimateRequest(HEADS, sgd, None, "step", 1, uniform_weights(HEADS))
    return est.estimate(request)


@pytest.mark.parametrize("probe", [False, True])
def test_g_and_o_converge_to_the_population_terms_plus_the_batch_noise(probe):
    model = _LinearHeads()
    estimate = _measured(model, probe)
    derived = _derived(model, probe)
    population = _derived(model, probe=True)
    for h in HEADS:
        g, g_se = estimate.generalization[h], estimate.generalization_se[h]
        o, o_se = estimate.overfitting_change[h], estimate.overfitting_change_se[h]
        assert abs(g - derived[h][0]) <= 4 * g_se, (h, g, derived[h][0], g_se)
        assert abs(o - derived[h][1]) <= 4 * o_se, (h, o, derived[h][1], o_se)
        if not probe:  # the noise term is resolved: o is not the population term
            assert abs(o - population[h][1]) > 6 * o_se, (h, o, population[h][1], o_se)
