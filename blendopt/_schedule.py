"""When to estimate G-Blend weights: offline (Algorithm 2) or online (Algorithm 3)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from blendopt._weighting import check_choice, check_count

Unit = Literal["epoch", "step"]


class Schedule(ABC):
    """Positions (in epochs or steps) at which to estimate, and the horizon of each estimate."""

    unit: Unit

    @abstractmethod
    def is_due(self, position: int) -> bool:
        """Whether an estimate is due when ``position`` epochs (or steps) are done."""

    @abstractmethod
    def horizon(self, position: int) -> int | None:
        """n of Algorithm 1 for the estimate at ``position`` (``None``: the estimator's own)."""


class Offline(Schedule):
    """Algorithm 2: estimate once, before training, and keep the weights fixed.

    Args:
        horizon: n for the estimate (the paper: the whole schedule); ``None``: the estimator's.
        unit: ``"epoch"`` (counts ``start_epoch()`` calls) or ``"step"`` (``step()`` calls).
    """

    def __init__(self, horizon: int | None = None, *, unit: Unit = "epoch") -> None:
        self.horizon_length = None if horizon is None else check_count("horizon", horizon)
        check_choice("unit", unit, ("epoch", "step"))
        self.unit = unit

    def is_due(self, position: int) -> bool:
        return position == 0

    def horizon(self, position: int) -> int | None:
        return self.horizon_length

    def __repr__(self) -> str:
        return f"Offline(horizon={self.horizon_length}, unit={self.unit!r})"


class Online(Schedule):
    """Algorithm 3: re-estimate at the start of every super-epoch, looking ahead one.

    Args:
        every: super-epoch length.
        warmup: length of the first super-epoch; defaults to ``every``.
        unit: ``"epoch"`` or ``"step"``.
    """

    def __init__(self, every: int, *, warmup: int | None = None, unit: Unit = "epoch") -> None:
        self.every = check_count("every", every)
        self.warmup = self.every if warmup is None else check_count("warmup", warmup)
        check_choice("unit", unit, ("epoch", "step"))
        self.unit = unit

    def is_due(self, position: int) -> bool:
        if position == 0:
            return True
        return position >= self.warmup and (position - self.warmup) % self.every == 0

    def horizon(self, position: int) -> int | None:
        return self.warmup if position == 0 else self.every

    def __repr__(self) -> str:
        return f"Online(every={self.every}, warmup={self.warmup}, unit={self.unit!r})"
