"""Non-finite per-head losses, counted on the losses' device without a per-step sync, and
reported (with the step range) when the blender reaches a reporting point.

:class:`NonFiniteRecord` is the one record of non-finite values (the blender's monitor, the
training statistics, the Algorithm-1 copies); :class:`NonFiniteMonitor` is the blender's
reporting on top of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from blendopt._distributed import accumulator_dtype, collective_device, reduce_sum
from blendopt._warnings import NonFiniteLossWarning, warn


@dataclass(frozen=True)
class NonFiniteCounts:
    """What a :class:`NonFiniteRecord` held when read (plain Python values).

    Attributes:
        count: per slot, the recorded steps whose value was not finite.
        weighted: per slot, of those, the steps where the slot was ``active``.
        first: per slot, the first such step (``None``: none).
        last: per slot, the last such step (``None``: none).
        first_value: per slot, the value at the first such step (``None`` when values were
            not recorded or the slot stayed finite).
        steps: steps recorded since the last reset (on this rank).
        from_step: the first step recorded since the last reset.
    """

    count: list[int]
    weighted: list[int]
    first: list[int | None]
    last: list[int | None]
    first_value: list[float | None]
    steps: int
    from_step: int | None

    @property
    def bad(self) -> list[int]:
        """The slots with at least one non-finite value."""
        return [i for i, c in enumerate(self.count) if c > 0]


class NonFiniteRecord:
    """Per-slot (head or model copy) record of non-finite values, kept on the values' device.

    Per slot: how many recorded steps had a non-finite value, how many of those while the
    slot was active (e.g. a head at weight > 0), the first and last such step, and optionally
    the first non-finite value itself. :meth:`record` costs a few device ops and no host
    synchronization; :attr:`flagged` is a device tensor too (for masking without a sync);
    :meth:`read` synchronizes once (and, ``across_ranks``, sums the counts with one
    collective). Serves the blender's :class:`NonFiniteMonitor`, ``TrainStatistics``, the
    Algorithm-1 copy loop (one slot at a time, ``slot=``) and the vmap engine (all copies at
    once).

    Args:
        size: the number of slots.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded."""
        # Rows, per slot: non-finite steps, of those while active, first and last such step
        # (-1: none). Allocated on the first record, on the values' device.
        self._table: torch.Tensor | None = None
        self._first_value: torch.Tensor | None = None
        self.steps = 0  # record() calls since the last reset (known on the host)
        self.from_step: int | None = None

    @property
    def pending(self) -> bool:
        """Whether steps were recorded since the last reset (known on the host, no sync)."""
        return self.steps > 0

    @property
    def flagged(self) -> torch.Tensor | None:
        """Bool ``(size,)`` on the device: slots with a non-finite value so far (no sync)."""
        return None if self._table is None else self._table[0] > 0

    @property
    def counts(self) -> torch.Tensor | None:
        """The per-slot non-finite counts on the device (``None`` before the first record)."""
        return None if self._table is None else self._table[0]

    def record(
        self,
        finite: torch.Tensor,
        step: int,
        *,
        active: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        slot: int | None = None,
    ) -> None:
        """Add one step.

        Args:
            finite: bool ``(size,)`` (or a 0-d bool with ``slot``): which values are finite.
            step: the step the values belong to.
            active: bool, shaped like ``finite``, on its device: which slots are active
                (default: all).
            values: the values themselves, shaped like ``finite``, to keep the first
                non-finite one.
            slot: record one slot only.
        """
        table = self._table
        if table is None or table.device != finite.device:
            table = self._allocate(finite.device)
        rows = table if slot is None else table[:, slot]
        bad = ~finite
        first_time = bad & (rows[0] == 0)
        rows[0].add_(bad)
        rows[1].add_(bad if active is None else bad & active)
        rows[2].copy_(torch.where(bad & (rows[2] < 0), step, rows[2]))
        rows[3].copy_(torch.where(bad, step, rows[3]))
        if values is not None:
            if self._first_value is None:
                self._first_value = torch.zeros_like(table[0])
            target = self._first_value if slot is None else self._first_value[slot]
            target.copy_(torch.where(first_time, values.detach().to(target.dtype), target))
        if self.from_step is None:
            self.from_step = step
        self.steps += 1

    def _allocate(self, device: torch.device) -> torch.Tensor:
        table = torch.zeros(4, self.size, dtype=accumulator_dtype(device), device=device)
        if self._table is None:
            table[2:].fill_(-1.0)
        else:  # the values moved (e.g. after a checkpoint was loaded to the CPU)
            table.copy_(self._table.to(device, table.dtype))
            if self._first_value is not None:
                self._first_value = self._first_value.to(device, table.dtype)
        self._table = table
        return table

    def read(self, *, across_ranks: bool = False) -> NonFiniteCounts:
        """The record as plain values: one host synchronization.

        Args:
            across_ranks: sum ``count`` and ``weighted`` over the ranks of
                ``torch.distributed`` (one collective; every rank must call it). ``first``,
                ``last`` and ``first_value`` stay this rank's.
        """
        k = self.size
        if self._table is None:
            return NonFiniteCounts([0] * k, [0] * k, [None] * k, [None] * k, [None] * k, 0, None)
        device = collective_device() if across_ranks else torch.device("cpu")
        parts = [self._table]
        if self._first_value is not None:
            parts.append(self._first_value.unsqueeze(0))
        packed = torch.cat([p.to(self._table.dtype) for p in parts]).to(device, torch.float64)
        if across_ranks:
            packed[:2] = reduce_sum(packed[:2])  # the counts add up; the steps stay this rank's
        rows = packed.tolist()
        count, weighted, first, last = rows[:4]
        return NonFiniteCounts(
            count=[int(c) for c in count],
            weighted=[int(w) for w in weighted],
            first=[None if f < 0 else int(f) for f in first],
            last=[None if t < 0 else int(t) for t in last],
            first_value=[None if len(rows) < 5 or count[i] == 0 else rows[4][i] for i in range(k)],
            steps=self.steps,
            from_step=self.from_step,
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain values and CPU tensors (loadable with ``torch.load(weights_only=True)``)."""
        out: dict[str, Any] = {
            "table": None if self._table is None else self._table.detach().cpu().clone(),
            "recorded": self.steps,
            "from_step": self.from_step,
        }
        if self._first_value is not None:
            out["first_value"] = self._first_value.detach().cpu().clone()
        return out

    def load_counts(self, counts: torch.Tensor) -> None:
        """Start from per-slot non-finite ``counts`` alone (steps and values unknown)."""
        self.reset()
        table = self._allocate(counts.device)
        table[0].copy_(counts)
        table[1].copy_(counts)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.reset()
        table = state_dict["table"]
        self._table = None if table is None else table.clone()
        first_value = state_dict.get("first_value")
        self._first_value = None if first_value is None else first_value.clone()
        self.steps = int(state_dict["recorded"])
        from_step = state_dict["from_step"]
        self.from_step = None if from_step is None else int(from_step)

    def __repr__(self) -> str:
        return f"NonFiniteRecord(size={self.size}, pending_steps={self.steps})"


class NonFiniteMonitor:
    """Counts non-finite losses per head on their device; :meth:`report` reads the counts.

    Per head it keeps, on the device (a :class:`NonFiniteRecord`): how many steps had a
    non-finite loss, how many of those while the head had a weight > 0 (those poisoned the
    blend), and the first and last such step. Recording costs a few device ops and no host
    synchronization; :meth:`report` synchronizes once.

    Attributes:
        heads: the heads, in order.
        events: one record per report that found non-finite losses: ``{"first_step",
            "last_step", "steps", "where", "heads": {head: {"count", "weighted"}}}``.
    """

    def __init__(self, heads: Sequence[str]) -> None:
        self.heads = list(heads)
        self.events: list[dict[str, Any]] = []
        self._record = NonFiniteRecord(len(self.heads))

    @property
    def pending(self) -> bool:
        """Whether steps were recorded since the last report (known on the host, no sync)."""
        return self._record.pending

    def record(self, finite: torch.Tensor, active: torch.Tensor, step: int) -> None:
        """Add one step.

        Args:
            finite: bool ``(k,)``: which losses are finite.
            active: bool ``(k,)`` on the same device: which heads have a weight > 0.
            step: the optimizer step the losses belong to.
        """
        self._record.record(finite, step, active=active)

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
        if not self._record.pending:
            self._record.reset()
            return None
        read = self._record.read()
        self._record.reset()
        bad = read.bad
        if not bad:
            return None
        first = {i: int(read.first[i] or 0) for i in bad}
        last = {i: int(read.last[i] or 0) for i in bad}
        event = {
            "where": where,
            "steps": read.steps,
            "from_step": read.from_step,
            "to_step": to_step,
            "first_step": min(first.values()),
            "last_step": max(last.values()),
            "heads": {
                self.heads[i]: {
                    "count": read.count[i],
                    "weighted": read.weighted[i],
                    "first_step": first[i],
                    "last_step": last[i],
                }
                for i in bad
            },
        }
        self.events.append(event)
        detail = ", ".join(
            f"head {self.heads[i]!r} {read.count[i]} of {read.steps} steps "
            f"(steps {first[i]}-{last[i]}"
            + (", at weight 0: left out of the blend)" if read.weighted[i] == 0 else ")")
            for i in bad
        )
        span = f"steps {event['first_step']}-{event['last_step']}"
        if any(read.weighted[i] > 0 for i in bad):
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
        return {"events": [dict(e) for e in self.events], **self._record.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.events = [dict(e) for e in state_dict["events"]]
        self._record.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"NonFiniteMonitor(heads={self.heads}, pending_steps={self._record.steps})"
