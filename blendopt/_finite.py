"""Non-finite values counted on their device without a per-step sync, and the blender's reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from blendopt._distributed import accumulator_dtype, collective_device, reduce_sum
from blendopt._warnings import warn
from blendopt.warnings import NonFiniteLossWarning


@dataclass(frozen=True)
class NonFiniteCounts:
    """A :class:`NonFiniteRecord` read as plain values, one list entry per slot."""

    count: list[int]
    weighted: list[int]
    first: list[int | None]
    last: list[int | None]
    first_value: list[float | None]
    steps: int
    from_step: int | None

    @property
    def bad(self) -> list[int]:
        return [i for i, c in enumerate(self.count) if c > 0]


class NonFiniteRecord:
    """Per-slot (head or model copy) non-finite counts, first/last step and first value, kept
    on the device: :meth:`record` needs no sync, :meth:`read` syncs once."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.reset()

    def reset(self) -> None:
        # Rows: non-finite steps, those while active, first and last such step (-1: none).
        self._table: torch.Tensor | None = None
        self._first_value: torch.Tensor | None = None
        self.steps = 0  # record() calls since the last reset (known on the host)
        self.from_step: int | None = None

    @property
    def pending(self) -> bool:
        return self.steps > 0

    @property
    def counts(self) -> torch.Tensor | None:
        return None if self._table is None else self._table[0]

    @property
    def flagged(self) -> torch.Tensor | None:
        return None if self.counts is None else self.counts > 0

    def record(
        self,
        finite: torch.Tensor,
        step: int,
        *,
        active: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        slot: int | None = None,
    ) -> None:
        """Add step ``step``: bool ``finite`` ``(size,)`` (0-d with ``slot``), ``active`` alike."""
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
        """The record as plain values (``across_ranks``: the counts summed over the ranks)."""
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
        out: dict[str, Any] = {
            "table": None if self._table is None else self._table.detach().cpu().clone(),
            "recorded": self.steps,
            "from_step": self.from_step,
        }
        if self._first_value is not None:
            out["first_value"] = self._first_value.detach().cpu().clone()
        return out

    def load_counts(self, counts: torch.Tensor) -> None:
        self.reset()
        table = self._allocate(counts.device)
        table[0].copy_(counts)
        table[1].copy_(counts)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
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
    """The blender's non-finite losses over the heads; each report that finds some raises (a head
    at weight > 0) or warns, and adds an entry to ``events``."""

    def __init__(self, heads: Sequence[str]) -> None:
        self.heads = list(heads)
        self.events: list[dict[str, Any]] = []
        self._record = NonFiniteRecord(len(self.heads))

    @property
    def pending(self) -> bool:
        return self._record.pending

    def record(self, finite: torch.Tensor, active: torch.Tensor, step: int) -> None:
        self._record.record(finite, step, active=active)

    def report(self, where: str, *, to_step: int) -> dict[str, Any] | None:
        """Read (one sync) and reset the record; return the event added, if any."""
        read = self._record.read() if self._record.pending else None
        self._record.reset()
        if read is None or not read.bad:
            return None
        heads = {
            self.heads[i]: {
                "count": read.count[i],
                "weighted": read.weighted[i],
                "first_step": read.first[i] or 0,
                "last_step": read.last[i] or 0,
            }
            for i in read.bad
        }
        first = min(h["first_step"] for h in heads.values())
        last = max(h["last_step"] for h in heads.values())
        event = {"where": where, "steps": read.steps, "from_step": read.from_step}
        event |= {"to_step": to_step, "first_step": first, "last_step": last, "heads": heads}
        self.events.append(event)
        detail = ", ".join(
            f"head {h!r} {c['count']} of {read.steps} steps "
            f"(steps {c['first_step']}-{c['last_step']}"
            + (", at weight 0: left out of the blend)" if c["weighted"] == 0 else ")")
            for h, c in heads.items()
        )
        span = f"steps {first}-{last} (checked {where}): {detail}"
        if any(c["weighted"] > 0 for c in heads.values()):
            raise FloatingPointError(
                f"Non-finite losses in {span}. Lower the learning rate, clip gradients, or check "
                "those heads' inputs; pass check_finite=True to stop at the first one."
            )
        warn(
            f"Non-finite losses of heads at weight 0 in {span}. They did not affect training; "
            "the statistics skip them.",
            NonFiniteLossWarning,
        )
        return event

    def state_dict(self) -> dict[str, Any]:
        return {"events": [dict(e) for e in self.events], **self._record.state_dict()}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.events = [dict(e) for e in state_dict["events"]]
        self._record.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"NonFiniteMonitor(heads={self.heads}, pending_steps={self._record.steps})"
