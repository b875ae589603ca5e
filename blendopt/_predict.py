"""Prediction with a G-Blend-trained multi-head model: the weight-averaged ensemble of heads.

G-Blend may give a head weight 0 (even the fused head), and such a head goes untrained. The
ensemble ``p(x) = Σ_k w_k softmax(z_k(x)) / Σ_k w_k`` uses the heads with a weight > 0, in
proportion to the weights passed. Which weights say "how much each head was trained" depends
on what you pass:

- ``optimizer.average_weights`` (the default in the docs): the time-average of the weights over
  the optimizer steps, so a head counts in proportion to how long it was trained and at what
  weight. Under online G-Blend the last weights may be one-hot on a head trained for a few
  epochs only; the average is not.
- ``optimizer.weights``: the weights in use at the end of training (the last estimate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

Activation = Literal["softmax", "sigmoid"]


def ensemble_probabilities(
    logits: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    *,
    activation: Activation = "softmax",
) -> torch.Tensor:
    """``Σ_k w_k act(z_k) / Σ_k w_k`` over the heads with a weight > 0.

    Args:
        logits: head -> logits of shape ``(batch, classes)``.
        weights: head -> weight: ``optimizer.average_weights`` (each head in proportion to how
            much it was trained) or ``optimizer.weights`` (the last weights); heads absent from
            ``weights`` or with weight 0 are ignored.
        activation: ``"softmax"`` (single-label) or ``"sigmoid"`` (multi-label).

    Returns:
        Probabilities of shape ``(batch, classes)``.
    """
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(
            f"Parameter `activation` should be 'softmax' or 'sigmoid'. Found {activation!r}."
        )
    used = {h: float(w) for h, w in weights.items() if float(w) > 0}
    if not used:
        raise ValueError(
            f"Parameter `weights` should give some head a weight > 0. Found {dict(weights)}."
        )
    missing = [h for h in used if h not in logits]
    if missing:
        raise ValueError(
            f"`logits` has no output for head {missing[0]!r}, which has weight {used[missing[0]]}. "
            f"Pass the outputs of every weighted head (found {list(logits)})."
        )
    shapes = {tuple(logits[h].shape) for h in used}
    if len(shapes) != 1:
        raise ValueError(
            f"The weighted heads' logits should share one shape. Found {sorted(shapes)}."
        )
    total = sum(used.values())
    act = torch.softmax if activation == "softmax" else (lambda z, dim: torch.sigmoid(z))
    return sum(act(logits[h], dim=-1) * (w / total) for h, w in used.items())  # type: ignore[return-value]


class BlendEnsemble(nn.Module):
    """Wrap a multi-head model so ``forward`` returns the weight-averaged ensemble probabilities.

    Args:
        model: a model whose ``forward`` returns a dict head -> logits.
        weights: head -> weight: ``optimizer.average_weights`` (recommended: the time-average of
            the weights over training) or ``optimizer.weights`` (the last weights). See also
            :meth:`from_optimizer`.
        activation: ``"softmax"`` or ``"sigmoid"``.
    """

    def __init__(
        self, model: nn.Module, weights: Mapping[str, float], *, activation: Activation = "softmax"
    ) -> None:
        super().__init__()
        self.model = model
        self.weights = dict(weights)
        self.activation = activation

    @classmethod
    def from_optimizer(
        cls,
        model: nn.Module,
        optimizer: Any,
        *,
        weights: Literal["average", "last"] = "average",
        activation: Activation = "softmax",
    ) -> BlendEnsemble:
        """The ensemble with a ``GradientBlender``'s weights.

        Args:
            model: a model whose ``forward`` returns a dict head -> logits.
            optimizer: the :class:`blendopt.GradientBlender` that trained ``model``.
            weights: ``"average"`` (``optimizer.average_weights``, the default) or ``"last"``
                (``optimizer.weights``).
            activation: ``"softmax"`` or ``"sigmoid"``.

        Raises:
            ValueError: ``weights`` is neither ``"average"`` nor ``"last"``.
            TypeError: ``optimizer`` has no G-Blend weights.
        """
        if weights not in ("average", "last"):
            raise ValueError(
                f"Parameter `weights` should be 'average' or 'last'. Found {weights!r}."
            )
        if not hasattr(optimizer, "average_weights"):
            raise TypeError(
                "Parameter `optimizer` should be the blendopt.GradientBlender that trained the "
                f"model. Found {type(optimizer).__name__}."
            )
        chosen = optimizer.average_weights if weights == "average" else optimizer.weights
        return cls(model, chosen, activation=activation)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        outputs = self.model(*args, **kwargs)
        if not isinstance(outputs, Mapping):
            raise TypeError(
                "BlendEnsemble needs a model returning a dict head -> logits. Found "
                f"{type(outputs).__name__}."
            )
        return ensemble_probabilities(outputs, self.weights, activation=self.activation)

    def extra_repr(self) -> str:
        return f"weights={self.weights}, activation={self.activation!r}"
