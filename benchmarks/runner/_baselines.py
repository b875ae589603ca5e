"""The mechanics of the baselines that need per-step access, built on the blender's public hooks.

- :class:`OGMGE`: on-the-fly gradient modulation with Gaussian-noise enhancement (Peng et al.,
  CVPR 2022), through ``register_step_pre_hook`` on the blender;
- :class:`UncertaintyWeighting`: learned loss weights by homoscedastic uncertainty (Kendall,
  Gal, Cipolla, CVPR 2018), through ``blend()`` plus its extra term;
- :func:`early_stop_steps` (appendix G.2).

The time-averaged blend weights of the ensemble predictor are ``GradientBlender.average_weights``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def early_stop_steps(batches_per_epoch: int, fraction: float) -> int:
    """Iterations run per epoch when stopping each epoch early (paper appendix G.2).

    The paper trained with 25%, 50% and 75% of the iterations per epoch (same epochs).

    Args:
        batches_per_epoch: the full epoch's iterations.
        fraction: the share run, in (0, 1].

    Returns:
        ``ceil(fraction * batches_per_epoch)``, at least 1.

    Raises:
        ValueError: ``fraction`` outside (0, 1].
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"Parameter `fraction` should be in (0, 1]. Found {fraction!r}.")
    return max(1, math.ceil(fraction * batches_per_epoch - 1e-9))


def ogm_ge_coefficients(scores: Mapping[str, float], alpha: float) -> dict[str, float]:
    """OGM-GE's modulation coefficient per modality (Peng et al. CVPR 2022, Eq. 10).

    ``ρ_u = s_u / mean_{u' ≠ u} s_u'`` (for two modalities the paper's ``s_u / s_u'``);
    ``k_u = 1 - tanh(α ρ_u)`` if ``ρ_u > 1`` (the dominant modality is slowed), else 1.

    Args:
        scores: modality -> confidence score (sum over the batch of the softmax probability of
            the true class from that modality's share of the fused output).
        alpha: the modulation strength α > 0.

    Returns:
        modality -> coefficient in (0, 1].
    """
    if len(scores) < 2:
        raise ValueError(f"OGM-GE needs at least two modalities. Found {list(scores)}.")
    out = {}
    for name, score in scores.items():
        others = [s for n, s in scores.items() if n != name]
        rho = score / max(sum(others) / len(others), 1e-12)
        out[name] = 1.0 - math.tanh(alpha * rho) if rho > 1.0 else 1.0
    return out


class OGMGE:
    """On-the-fly gradient modulation with Gaussian-noise enhancement (OGM-GE).

    Source: Peng, Wei, Deng, Wang, Hu. "Balanced Multimodal Learning via On-the-fly Gradient
    Modulation", CVPR 2022 (reference code: GeWu-Lab/OGM-GE_CVPR2022, ``main.py``).

    Training is naive (the fused head's loss). Each step, :meth:`losses` also scores every
    modality: the softmax probability of the true class from the fused head fed with that
    modality's features only (the others zeroed; for the paper's linear concat head this is
    its ``W_u h_u + b/2`` up to the bias split), summed over the batch. :meth:`hook`,
    registered with ``blender.register_step_pre_hook``, then scales the gradient of every
    encoder weight (tensors of 2 or more dimensions, as the reference modulates conv weights)
    of modality u by ``k_u`` (:func:`ogm_ge_coefficients`) and adds Gaussian noise with the
    standard deviation of that gradient (GE), between epochs ``start`` and ``end``.

    Args:
        model: a multi-head model with ``forward_features``, ``forward_head``, ``fusion``,
            ``fused_classifier``, ``encoders`` and ``modalities`` (``MultiHeadModel``).
        alpha: the modulation strength (reference default 0.1).
        start: first modulated epoch (0-based).
        end: modulation stops at this epoch (reference default 50).
        noise: add the GE noise (False: OGM alone).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        alpha: float = 0.1,
        start: int = 0,
        end: int = 50,
        noise: bool = True,
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"Parameter `alpha` should be > 0. Found {alpha!r}.")
        self.model = model
        self.alpha = alpha
        self.start, self.end = start, end
        self.noise = noise
        self.epoch = 0
        self.coefficients: dict[str, float] = dict.fromkeys(model.modalities, 1.0)

    def __repr__(self) -> str:
        return f"OGMGE(alpha={self.alpha}, start={self.start}, end={self.end}, noise={self.noise})"

    @torch.no_grad()
    def scores(self, features: Mapping[str, Tensor], target: Tensor) -> dict[str, float]:
        """Per-modality confidence: Σ_batch softmax(fused head on that modality alone)[y]."""
        model = self.model
        out = {}
        for name in model.modalities:
            alone = {m: f if m == name else torch.zeros_like(f) for m, f in features.items()}
            logits = model.fused_classifier(model.fusion(alone))
            out[name] = float(F.softmax(logits, dim=1).gather(1, target[:, None]).sum())
        return out

    def losses(self, batch: tuple[Mapping[str, Tensor], Tensor]) -> dict[str, Tensor]:
        """Cross-entropy of every head; also updates :attr:`coefficients` for this step."""
        inputs, target = batch
        features = self.model.forward_features(inputs)
        logits = self.model.forward_head(features)
        self.coefficients = ogm_ge_coefficients(self.scores(features, target), self.alpha)
        return {head: F.cross_entropy(z, target) for head, z in logits.items()}

    @torch.no_grad()
    def hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        """Step pre-hook: modulate the encoders' gradients (and add the GE noise)."""
        if not self.start <= self.epoch < self.end:
            return
        for name, coefficient in self.coefficients.items():
            for p in self.model.encoders[name].parameters():
                if p.grad is None or p.grad.dim() < 2:
                    continue
                p.grad.mul_(coefficient)
                if self.noise:
                    p.grad.add_(torch.randn_like(p.grad) * (p.grad.std() + 1e-8))


class UncertaintyWeighting(nn.Module):
    """Learned loss weights by homoscedastic uncertainty (Kendall, Gal, Cipolla, CVPR 2018).

    One learned log-variance ``s_k = log σ_k²`` per head; the loss is their classification form
    (Eq. 10 of that paper, ``L/σ² + log σ``): ``Σ_k exp(-s_k) L_k + s_k / 2``. With a blender
    at fixed weights 1, ``blender.blend(module.scale(losses)) + module.regularizer()`` is that
    loss. The effective weights are ``exp(-s_k)``.

    Args:
        heads: the head names.
    """

    def __init__(self, heads: Sequence[str]) -> None:
        super().__init__()
        self.heads = list(heads)
        self.log_vars = nn.Parameter(torch.zeros(len(self.heads)))

    def scale(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{k: exp(-s_k) L_k}``."""
        return {h: torch.exp(-self.log_vars[i]) * losses[h] for i, h in enumerate(self.heads)}

    def regularizer(self) -> Tensor:
        """``Σ_k s_k / 2``."""
        return self.log_vars.sum() / 2

    def forward(self, losses: Mapping[str, Tensor]) -> Tensor:
        """The whole loss ``Σ_k exp(-s_k) L_k + s_k / 2``."""
        return torch.stack(list(self.scale(losses).values())).sum() + self.regularizer()

    def weights(self) -> dict[str, float]:
        """The effective weights ``exp(-s_k)``, normalized to sum to 1."""
        w = torch.exp(-self.log_vars.detach())
        w = w / w.sum()
        return {h: float(w[i]) for i, h in enumerate(self.heads)}

    def extra_repr(self) -> str:
        return f"heads={self.heads}"
