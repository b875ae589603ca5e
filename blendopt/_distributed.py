"""Reductions across the ranks of ``torch.distributed`` (a no-op in a single process)."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of ranks when ``torch.distributed`` is initialized, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for running sums where the device has it (MPS has no float64: float32 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` in place over all ranks (no-op with one rank) and return it.

    CPU tensors go through the default group's backend only if it supports them (gloo does;
    NCCL does not), so callers put tensors on the device the backend expects.
    """
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def collective_device() -> torch.device:
    """The device the default process group's backend reduces on (CPU for gloo)."""
    if world_size() > 1 and dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def average_gradients_(parameters: list[torch.Tensor]) -> None:
    """Average the ``.grad`` of ``parameters`` over all ranks, as DDP would (no-op with one rank).

    Used for the model copies of Algorithm 1, which are not wrapped in DDP. Parameters without
    a gradient are skipped: the same head's loss reaches the same parameters on every rank.
    The gradients are flattened into one buffer so a step costs one collective.
    """
    n = world_size()
    if n == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(n)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
