"""The training methods compared by the main job (paper §3.3, Table 5) and optimizers (Table 3)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Kind = Literal["single", "naive", "dropout", "auxiliary", "offline", "online"]
OPTIMIZERS = ("sgd", "adam", "adagrad")


@dataclass(frozen=True)
class Method:
    """One way of training the multi-head model.

    Attributes:
        name: the row name in reports (``"single:audio"``, ``"naive"``, ``"gblend_offline"``...).
        kind: ``single`` (one modality's head alone), ``naive`` (the fused head alone: naive
            late fusion), ``dropout`` (naive with dropout 0.5 at the concatenation),
            ``auxiliary`` (every head, equal weights summing to 1), ``offline`` / ``online``
            (G-Blend, Algorithms 2 and 3).
        modality: the modality of a ``single`` method.
    """

    name: str
    kind: Kind
    modality: str | None = None

    @property
    def evaluated_head(self) -> str | None:
        """The head whose test accuracy is the method's result (``None``: the fused head)."""
        return self.modality if self.kind == "single" else None

    @property
    def is_blend(self) -> bool:
        """Whether several heads are trained, so the ensemble is meaningful."""
        return self.kind in ("auxiliary", "offline", "online")


def all_methods(modalities: Sequence[str]) -> list[Method]:
    """Every single modality, then naive, dropout, auxiliary, G-Blend offline and online."""
    return [
        *(Method(f"single:{m}", "single", m) for m in modalities),
        Method("naive", "naive"),
        Method("dropout", "dropout"),
        Method("auxiliary", "auxiliary"),
        Method("gblend_offline", "offline"),
        Method("gblend_online", "online"),
    ]


def select_methods(modalities: Sequence[str], names: Iterable[str] | None) -> list[Method]:
    """The methods named in ``names`` (``"single"`` selects every single modality)."""
    methods = all_methods(modalities)
    if names is None:
        return methods
    names = list(names)
    known = {m.name for m in methods} | {"single"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"Unknown method {unknown[0]!r}; choose from {sorted(known)}.")
    return [m for m in methods if m.name in names or (m.kind == "single" and "single" in names)]


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], sgd_lr: float
) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 at ``sgd_lr``, Adam at 1e-3, AdaGrad at 0.05 (paper Table 3)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=sgd_lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=0.05)
    raise ValueError(f"Unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}.")
