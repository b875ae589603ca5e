"""Process-group set-up under ``torchrun`` and the few collectives the loop needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "agree_all", "all_gather", "cleanup", "setup_distributed"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world`` (``local_*`` on its host)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    flag_group: Any = None  # a gloo group for per-step CPU flags (no device sync)

    @property
    def enabled(self) -> bool:
        """Whether several processes train together."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder."""
        return self.rank == 0


def setup_distributed(device: str | None) -> tuple[DistInfo, torch.device]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1) and pick the device.

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...; default CUDA if available.
            Under torchrun, ``cuda`` means ``cuda:LOCAL_RANK``.

    Returns:
        ``(info, device)``. NCCL on CUDA, gloo otherwise; a gloo side group for flags.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank if world > 1 else 0)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistInfo(), dev
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    group = dist.new_group(backend="gloo") if dev.type == "cuda" else None
    return DistInfo(rank, world, local_rank, local_world, group), dev


def cleanup(info: DistInfo) -> None:
    """Leave the process group (if this module joined one)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def agree_all(info: DistInfo, ok: bool) -> bool:
    """True on every rank iff ``ok`` is true on every rank (a CPU all-reduce over gloo)."""
    if not info.enabled:
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int32)
    dist.all_reduce(flag, group=info.flag_group)
    return int(flag) == 0


def all_gather(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj, group=info.flag_group)
    return out
