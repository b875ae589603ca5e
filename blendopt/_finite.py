"""Non-finite per-head losses, counted on the losses' device without a per-step sync, and
reported (with the step range) when the blender reaches a reporting point."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from blendopt._warnings import NonFiniteLossWarning, warn


class NonFiniteMonitor:
    """Counts non-finite losses per head on their device; :meth:`report` reads the counts.

    Per head it keeps, on the device: how many steps had a non-finite loss, how many of those
    while the head had a weight > 0 (those poisoned the blend), and the first and last such
    step. Recording costs a few device ops and no host synchronization; :meth:`report`
    synchronizes once.

    Attributes:
        heads: the heads, in order.
        events: one record per report that found non-finite losses: ``{"first_step",
            "last_step", "steps", "where", "heads": {head: {"count", "weighted"}}}``.
    """

    def __init__(self, heads: Sequence[str]) -> None:
        self.heads = list(heads)
        self.events: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        # Rows, per head: non-finite steps, of those while weight > 0, first and last such
        # step (-1: none). On the losses' device.
        self._table: torch.Tensor | None = None
        self._recorded = 0  # steps recorded since the last report
        self._from_step: int | None = None  # first step recorded since the last report

    @property
    def pending(self) -> bool:
        """Whether steps were recorded since the last report (known on the host, no sync)."""
        return self._recorded > 0

    def record(self, finite: torch.Tensor, active: torch.Tensor, step: int) -> None:
        """Add one step.

        Args:
            finite: bool ``(k,)``: which losses are finite.
            active: bool ``(k,)`` on the same device: which heads have a weight > 0.
            step: the optimizer step the losses belong to.
        """
        table = self._table
        if table is None or table.device != finite.device:
            table = self._allocate(finite.device)
        bad = ~finite
        table[0].add_(bad)
        table[1].add_(bad & active)
        table[2].copy_(torch.where(bad & (table[2] < 0), step, table[2]))
        table[3].copy_(torch.where(bad, step, table[3]))
        if self._from_step is None:
            self._from_step = step
        self._recorded += 1

    def _allocate(self, device: torch.device) -> torch.Tensor:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        table = torch.zeros(4, len(self.heads), dtype=dtype, device=device)
        if self._table is None:
            table[2:].fill_(-1.0)
        else:  # the losses moved (e.g. after a checkpoint was loaded to the CPU)
            table.copy_(self._table.to(device, dtype))
        self._table = table
        return table

    def report(self, where: str, *, to_step: int) -> dict[str, Any] | None:
        """Read the counts (one sync), reset them, and report what was found.

        Args:
            where: the reporting point, for the message (e.g. ``"at start_epoch()"``).
            to_step: steps done so far (the end of the range checked).

        Returns:
            The event recorded in :attr:`events`, or ``None`` if every loss was finite.

        Raises:
            FloatingPointError: a head at weight > 0 had a non-finite loss (the blend and the
                gradient of those steps were not finite).
        """
        if not self._recorded or self._table is None:
            self._reset()
            return None
        packed = self._table.tolist()
        recorded, from_step = self._recorded, self._from_step
        self._reset()
        count, weighted, first, last = packed
        bad = [i for i in range(len(self.heads)) if count[i] > 0]
        if not bad:
            return None
        event = {
            "where": where,
            "steps": recorded,
            "from_step": from_step,
            "to_step": to_step,
            "first_step": int(min(first[i] for i in bad)),
            "last_step": int(max(last[i] for i in bad)),
            "heads": {
                self.heads[i]: {
                    "count": int(count[i]),
                    "weighted": int(weighted[i]),
                    "first_step": int(first[i]),
                    "last_step": int(last[i]),
                }
                for i in bad
            },
        }
        self.events.append(event)
        detail = ", ".join(
            f"head {self.heads[i]!r} {int(count[i])} of {recorded} steps "
            f"(steps {int(first[i])}-{int(last[i])}"
            + (", at weight 0: left out of the blend)" if weighted[i] == 0 else ")")
            for i in bad
        )
        span = f"steps {event['first_step']}-{event['last_step']}"
        if any(weighted[i] > 0 for i in bad):
            raise FloatingPointError(
                f"Non-finite losses in {span} (checked {where}): {detail}. Lower the learning "
                "rate, clip gradients, or check those heads' inputs; pass check_finite=True to "
                "stop at the first one."
            )
        warn(
            f"Non-finite losses of heads at weight 0 in {span} (checked {where}): {detail}. "
            "They did not affect training; the statistics skip them.",
            NonFiniteLossWarning,
        )
        return event

    def state_dict(self) -> dict[str, Any]:
        """Plain values and a CPU tensor (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "events": [dict(e) for e in self.events],
            "table": None if self._table is None else self._table.detach().cpu().clone(),
            "recorded": self._recorded,
            "from_step": self._from_step,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self._reset()
        self.events = [dict(e) for e in state_dict["events"]]
        table = state_dict["table"]
        self._table = None if table is None else table.clone()
        self._recorded = int(state_dict["recorded"])
        self._from_step = None if state_dict["from_step"] is None else int(state_dict["from_step"])

    def __repr__(self) -> str:
        return f"NonFiniteMonitor(heads={self.heads}, pending_steps={self._recorded})"
