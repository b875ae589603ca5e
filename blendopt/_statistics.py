"""Per-head training-loss means per epoch, summed on the device, reduced when an epoch closes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from blendopt._distributed import accumulator_dtype, reduced_floats
from blendopt._finite import NonFiniteRecord


class TrainStatistics:
    """Running per-head means of the training losses, and their per-epoch history.

    Attributes:
        heads: the heads, in order.
        history: per closed epoch ``{"epoch", "steps", "loss": {head: mean of the finite values},
            "nonfinite": {head: count}}``.
    """

    def __init__(self, heads: Sequence[str]) -> None:
        self.heads = list(heads)
        self.history: list[dict[str, Any]] = []
        self._sum: torch.Tensor | None = None  # sums of the finite losses, on their device
        self._nonfinite = NonFiniteRecord(len(self.heads))  # counted on the device
        self._steps = 0

    def record(
        self,
        values: torch.Tensor,
        *,
        finite_checked: bool,
        finite: torch.Tensor | None = None,
    ) -> None:
        """Add one step's detached per-head losses.

        Args:
            values: the losses, 1-D, in ``heads`` order.
            finite_checked: every value is known to be finite (else non-finite ones are counted).
            finite: ``torch.isfinite(values)``, if computed already.
        """
        if self._sum is None or self._sum.device != values.device:
            # The sums follow the losses (e.g. after a checkpoint was loaded to the CPU).
            start = torch.zeros(len(self.heads)) if self._sum is None else self._sum
            self._sum = start.to(values.device, accumulator_dtype(values.device))
        if finite_checked:
            self._sum.add_(values)  # in place, promoted to the accumulator's dtype
        else:
            if finite is None:
                finite = torch.isfinite(values)
            self._sum.add_(torch.where(finite, values, 0.0))
            self._nonfinite.record(finite, self._steps)
        self._steps += 1

    @property
    def steps(self) -> int:
        """Steps recorded in the open epoch."""
        return self._steps

    def running_mean(self) -> dict[str, float]:
        """Mean loss per head over the open epoch so far (a collective: call it on every rank)."""
        if self._sum is None:
            return {}
        sums, counts, _ = self._reduced()
        return {h: _mean(sums[i], counts[i]) for i, h in enumerate(self.heads)}

    def _reduced(self) -> tuple[list[float], list[float], int]:
        assert self._sum is not None
        k = len(self.heads)
        nonfinite = self._nonfinite.counts
        packed = reduced_floats(
            [self._sum, torch.zeros(k) if nonfinite is None else nonfinite, float(self._steps)]
        )
        total_steps = int(packed[-1])
        return packed[:k], [total_steps - c for c in packed[k : 2 * k]], total_steps

    def close_epoch(self, epoch: int) -> dict[str, Any] | None:
        """Append the open epoch's record to ``history`` and return it (a collective)."""
        if self._sum is None or self._steps == 0:
            return None
        sums, counts, total_steps = self._reduced()
        record = {
            "epoch": epoch,
            "steps": total_steps,
            "loss": {h: _mean(sums[i], counts[i]) for i, h in enumerate(self.heads)},
            "nonfinite": {h: round(total_steps - counts[i]) for i, h in enumerate(self.heads)},
        }
        self.history.append(record)
        self._sum = None
        self._nonfinite.reset()
        self._steps = 0
        return record

    def state_dict(self) -> dict[str, Any]:
        """Plain values and CPU tensors (loadable with ``torch.load(weights_only=True)``)."""
        counts = self._nonfinite.counts
        return {
            "heads": list(self.heads),
            "history": _copy(self.history),
            "sum": None if self._sum is None else self._sum.detach().cpu().clone(),
            "nonfinite": None if counts is None else counts.detach().cpu().clone(),
            "steps": self._steps,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if list(state_dict["heads"]) != self.heads:
            raise ValueError(
                f"The saved statistics are for heads {list(state_dict['heads'])}, not {self.heads}."
            )
        self.history = _copy(state_dict["history"])
        self._sum = None if state_dict["sum"] is None else state_dict["sum"].clone()
        self._nonfinite.reset()
        if state_dict["nonfinite"] is not None:
            self._nonfinite.load_counts(state_dict["nonfinite"])
        self._steps = int(state_dict["steps"])


def _mean(total: float, count: float) -> float:
    return total / count if count > 0 else float("nan")


def _copy(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "loss": dict(r["loss"]), "nonfinite": dict(r["nonfinite"])} for r in history]
