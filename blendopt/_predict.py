"""Prediction with a multi-head model: the weighted ensemble of heads, its weights chosen on V."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from blendopt._weighting import check_choice

Activation = Literal["softmax", "sigmoid"]
Metric = Literal["top1", "map"]


def ensemble_probabilities(
    logits: Mapping[str, torch.Tensor],
    weights: Mapping[str, float],
    *,
    activation: Activation = "softmax",
) -> torch.Tensor:
    """``Σ_k w_k act(z_k) / Σ_k w_k`` over the heads with a weight > 0.

    Args:
        logits: head -> logits of shape ``(batch, classes)``.
        weights: head -> weight; heads absent or at weight 0 are ignored.
        activation: ``"softmax"`` (single-label) or ``"sigmoid"`` (multi-label).

    Returns:
        Probabilities of shape ``(batch, classes)``.
    """
    check_choice("activation", activation, ("softmax", "sigmoid"))
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


def average_precision(scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-class average precision of ``scores`` ``(n, C)`` for 0/1 ``target`` (NaN: none)."""
    order = torch.argsort(scores, dim=0, descending=True, stable=True)
    hits = target.to(torch.float64).gather(0, order)
    ranks = torch.arange(1, len(hits) + 1, dtype=torch.float64)[:, None]
    return (hits.cumsum(0) / ranks * hits).sum(0) / hits.sum(0)


def _score(probs: torch.Tensor, target: torch.Tensor, metric: str) -> torch.Tensor:
    """Top-1: per-sample correctness ``(n,)``; mAP: the mean AP over classes with a positive."""
    if metric == "top1":
        return (probs.argmax(1) == target).double()
    ap = average_precision(probs, target)
    return ap[~ap.isnan()].mean()


def paired_gain(
    candidate: torch.Tensor, reference: torch.Tensor, target: torch.Tensor, metric: Metric = "top1"
) -> tuple[float, float]:
    """The candidate's metric minus the reference's on the same samples, and its paired SE
    (top-1: ``std(d) / √n``; mAP: the leave-one-out jackknife; infinite for n < 2)."""
    n, everything = len(target), torch.ones(len(target), dtype=torch.bool)

    def diff(m: torch.Tensor) -> torch.Tensor:
        return _score(candidate[m], target[m], metric) - _score(reference[m], target[m], metric)

    d = diff(everything)
    if n < 2 or metric == "top1":
        return float(d.mean()), float(d.std() / math.sqrt(n)) if n > 1 else math.inf
    loo = torch.stack([diff(k) for k in ~torch.eye(n, dtype=torch.bool)])
    return float(d), float(((n - 1) / n * ((loo - loo.mean()) ** 2).sum()).sqrt())


@dataclass(frozen=True)
class PredictorChoice:
    """The record of a choice on V (:meth:`BlendEnsemble.choose`).

    Attributes:
        chosen: the chosen candidate; ``reference`` unless one beat it significantly.
        weights: the chosen candidate's prediction weights.
        reference: the default predictor.
        scores: candidate -> its metric on V.
        gains: candidate -> its metric minus the reference's (paired mean).
        standard_errors: candidate -> the paired standard error of that gain.
        z: a candidate needs ``gain > z * standard_error``.
        metric: ``"top1"`` or ``"map"``.
        size: |V| in samples.
    """

    chosen: str
    weights: dict[str, float]
    reference: str
    scores: dict[str, float]
    gains: dict[str, float]
    standard_errors: dict[str, float]
    z: float
    metric: str
    size: int

    @property
    def significant(self) -> list[str]:
        """The candidates whose gain exceeded ``z`` standard errors."""
        return [c for c, g in self.gains.items() if g - self.z * self.standard_errors[c] > 1e-9]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _default_predict(model: nn.Module, batch: Any) -> tuple[Mapping[str, torch.Tensor], Any]:
    inputs, target = batch
    return model(inputs), target


class BlendEnsemble(nn.Module):
    """Wrap a multi-head model so ``forward`` returns the weighted ensemble probabilities.

    Args:
        model: a model whose ``forward`` returns a dict head -> logits.
        weights: head -> prediction weight (:meth:`from_optimizer`, :meth:`from_holdout`).
        activation: ``"softmax"`` or ``"sigmoid"``.

    Attributes:
        choice: the :class:`PredictorChoice` when built by :meth:`from_holdout`, else ``None``.
    """

    def __init__(
        self, model: nn.Module, weights: Mapping[str, float], *, activation: Activation = "softmax"
    ) -> None:
        super().__init__()
        self.model = model
        self.weights = dict(weights)
        self.activation = activation
        self.choice: PredictorChoice | None = None

    @classmethod
    def from_optimizer(
        cls,
        model: nn.Module,
        optimizer: Any,
        *,
        weights: Literal["average", "last"] = "average",
        activation: Activation = "softmax",
    ) -> BlendEnsemble:
        """The ensemble with a ``GradientBlender``'s ``"average"`` or ``"last"`` weights.

        Raises:
            ValueError: another ``weights``. TypeError: ``optimizer`` has no G-Blend weights.
        """
        check_choice("weights", weights, ("average", "last"))
        if not hasattr(optimizer, "average_weights"):
            raise TypeError(
                "Parameter `optimizer` should be the blendopt.GradientBlender that trained the "
                f"model. Found {type(optimizer).__name__}."
            )
        chosen = optimizer.average_weights if weights == "average" else optimizer.weights
        return cls(model, chosen, activation=activation)

    @staticmethod
    def choose(
        logits: Mapping[str, torch.Tensor],
        target: torch.Tensor,
        candidates: Mapping[str, Mapping[str, float]],
        *,
        reference: str = "uniform",
        metric: Metric = "top1",
        z: float = 1.0,
    ) -> PredictorChoice:
        """Choose prediction weights on V: ``reference`` unless a candidate's paired gain
        exceeds ``z`` standard errors (of several, the largest gain).

        Args:
            logits: head -> logits on V, ``(n, classes)``.
            target: class indices ``(n,)`` (top-1) or 0/1 labels ``(n, classes)`` (mAP).
            candidates: name -> prediction weights; ``{"fused": 1.0}`` is the fused head alone.
            reference: the default; ``"uniform"`` (every head at 1/K) is added when absent.
            metric: ``"top1"`` (softmax ensembles) or ``"map"`` (sigmoid ensembles).
            z: the significance threshold in standard errors.

        Raises:
            ValueError: unknown ``metric``, ``reference`` not a candidate, or ``z < 0``.
        """
        pool = {name: dict(w) for name, w in candidates.items()}
        if reference == "uniform" and "uniform" not in pool:
            pool = {"uniform": dict.fromkeys(logits, 1.0 / len(logits)), **pool}
        check_choice("metric", metric, ("top1", "map"))
        if reference not in pool:
            raise ValueError(
                f"Parameter `reference` should name a candidate ({list(pool)}) or be 'uniform'. "
                f"Found {reference!r}."
            )
        if not z >= 0:
            raise ValueError(f"Parameter `z` should be >= 0. Found {z!r}.")
        act: Activation = "softmax" if metric == "top1" else "sigmoid"
        probs = {c: ensemble_probabilities(logits, w, activation=act) for c, w in pool.items()}
        ref = probs[reference]
        stats = {c: paired_gain(p, ref, target, metric) for c, p in probs.items()}
        scores = {c: float(_score(p, target, metric).mean()) for c, p in probs.items()}
        # A margin of 1e-9: one sample's win has gain = SE = 1/n exactly, up to rounding.
        accepted = [c for c, (g, se) in stats.items() if c != reference and g - z * se > 1e-9]
        chosen = max(accepted, key=lambda c: stats[c][0], default=reference)
        return PredictorChoice(
            chosen,
            pool[chosen],
            reference,
            scores,
            {c: s[0] for c, s in stats.items()},
            {c: s[1] for c, s in stats.items()},
            z,
            metric,
            len(target),
        )

    @classmethod
    @torch.no_grad()
    def from_holdout(
        cls,
        model: nn.Module,
        holdout: Iterable[Any],
        candidates: Mapping[str, Mapping[str, float]],
        *,
        predict: Callable[[nn.Module, Any], tuple[Mapping[str, torch.Tensor], Any]] | None = None,
        optimizer: Any = None,
        **choose: Any,
    ) -> BlendEnsemble:
        """The ensemble with the prediction weights chosen on ``holdout`` (:meth:`choose`).

        Args:
            model: a model whose ``forward`` returns a dict head -> logits (run in eval mode).
            holdout: batches of V, ``(inputs, target)`` unless ``predict`` is given.
            candidates: name -> prediction weights.
            predict: ``predict(model, batch) -> ({head: logits}, target)``.
            optimizer: a ``GradientBlender`` whose ``history`` gets the choice.
            **choose: ``reference``, ``metric``, ``z`` of :meth:`choose`.

        Returns:
            The ensemble; its :attr:`choice` is the record.
        """
        predict = _default_predict if predict is None else predict
        was_training = model.training
        model.eval()
        outputs = [predict(model, batch) for batch in holdout]
        model.train(was_training)
        heads = dict.fromkeys(h for out, _ in outputs for h in out)
        logits = {h: torch.cat([out[h] for out, _ in outputs if h in out]) for h in heads}
        choice = cls.choose(logits, torch.cat([t for _, t in outputs]), candidates, **choose)
        act: Activation = "softmax" if choice.metric == "top1" else "sigmoid"
        ensemble = cls(model, choice.weights, activation=act)
        ensemble.choice = choice
        if optimizer is not None:
            optimizer.history.append(
                {
                    "kind": "prediction",
                    "epoch": None,
                    "step": None,
                    "horizon": None,
                    "weights_before": dict(optimizer.weights),
                    "weights": dict(choice.weights),
                    "estimate": None,
                    "seconds": 0.0,
                    "choice": choice.to_dict(),
                }
            )
        return ensemble

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
