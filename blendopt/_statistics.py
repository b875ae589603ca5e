"""Per-head training statistics recorded by ``GradientBlender.backward``, per epoch.

The per-step path only adds the detached loss vector into a running sum on the losses' device
(no device synchronization); the sums are read, reduced across ranks and turned into per-epoch
means when an epoch is closed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from blendopt._distributed import accumulator_dtype, all_reduce_sum_, collective_device


class TrainStatistics:
    """Running per-head means of the training losses, and their per-epoch history.

    Attributes:
        heads: the heads, in order.
        history: one record per closed epoch: ``{"epoch": int, "steps": int, "loss": {head:
            mean}, "nonfinite": {head: count}}``. Means skip non-finite values.
    """

    def __init__(self, heads: Sequence[str]) -> None:
        self.heads = list(heads)
        self.history: list[dict[str, Any]] = []
        self._sum: torch.Tensor | None = None  # finite-loss sums, on the losses' device
        self._finite: torch.Tensor | None = None  # finite-loss counts
        self._steps = 0

    def record(self, values: torch.Tensor, *, finite_checked: bool) -> None:
        """Add one step's detached per-head losses (1-D, in ``heads`` order)."""
        values = values.detach().to(accumulator_dtype(values.device))
        if not finite_checked:
            finite = torch.isfinite(values)
            values = torch.where(finite, values, 0.0)
        if self._sum is None or self._finite is None:
            self._sum = torch.zeros(len(self.heads), dtype=values.dtype, device=values.device)
            self._finite = torch.zeros_like(self._sum)
        elif self._sum.device != values.device:
            # The running sums follow the losses (e.g. after a checkpoint was loaded to the CPU).
            self._sum = self._sum.to(values.device, values.dtype)
            self._finite = self._finite.to(values.device, values.dtype)
        self._sum.add_(values)
        if finite_checked:
            self._finite.add_(1.0)
        else:
            self._finite.add_(finite)
        self._steps += 1

    @property
    def steps(self) -> int:
        """Steps recorded in the open epoch."""
        return self._steps

    def running_mean(self) -> dict[str, float]:
        """Mean loss per head over the open epoch so far (synchronizes with the device)."""
        if self._sum is None:
            return {}
        sums, counts = self._reduced()
        return {
            h: float(sums[i] / counts[i]) if counts[i] > 0 else float("nan")
            for i, h in enumerate(self.heads)
        }

    def _reduced(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._sum is not None
        assert self._finite is not None
        packed = torch.cat([self._sum, self._finite]).to(collective_device(), torch.float64)
        all_reduce_sum_(packed)
        k = len(self.heads)
        return packed[:k].cpu(), packed[k:].cpu()

    def close_epoch(self, epoch: int) -> dict[str, Any] | None:
        """Close the open epoch: append its record to ``history`` and return it (or None if empty).

        Collective under ``torch.distributed``: every rank must call it.
        """
        if self._sum is None or self._steps == 0:
            return None
        sums, counts = self._reduced()
        steps = torch.tensor([float(self._steps)], dtype=torch.float64, device=collective_device())
        all_reduce_sum_(steps)
        total_steps = int(steps.item())
        record = {
            "epoch": epoch,
            "steps": total_steps,
            "loss": {
                h: float(sums[i] / counts[i]) if counts[i] > 0 else float("nan")
                for i, h in enumerate(self.heads)
            },
            "nonfinite": {
                h: round(total_steps - float(counts[i])) for i, h in enumerate(self.heads)
            },
        }
        self.history.append(record)
        self._sum = None
        self._finite = None
        self._steps = 0
        return record

    def state_dict(self) -> dict[str, Any]:
        """Plain values and CPU tensors (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "heads": list(self.heads),
            "history": [
                {**r, "loss": dict(r["loss"]), "nonfinite": dict(r["nonfinite"])}
                for r in self.history
            ],
            "sum": None if self._sum is None else self._sum.detach().cpu().clone(),
            "finite": None if self._finite is None else self._finite.detach().cpu().clone(),
            "steps": self._steps,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if list(state_dict["heads"]) != self.heads:
            raise ValueError(
                f"The saved statistics are for heads {list(state_dict['heads'])}, not {self.heads}."
            )
        self.history = [
            {**r, "loss": dict(r["loss"]), "nonfinite": dict(r["nonfinite"])}
            for r in state_dict["history"]
        ]
        self._sum = None if state_dict["sum"] is None else state_dict["sum"].clone()
        self._finite = None if state_dict["finite"] is None else state_dict["finite"].clone()
        self._steps = int(state_dict["steps"])
