"""Reductions across the ranks of ``torch.distributed``, and unwrapping a distributed model."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def accumulator_dtype(device: torch.device) -> torch.dtype:
    """float64 for running sums, float32 on MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as float64 on :func:`collective_device`, summed over all ranks (no host sync)."""
    tensor = tensor.detach().to(collective_device(), torch.float64)
    if world_size() > 1:  # CPU tensors only where the backend takes them (gloo; NCCL does not)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def reduced_floats(parts: Iterable[torch.Tensor | float], *, mean: bool = False) -> list[float]:
    """``parts`` (tensors, numbers) packed into one float64 vector, summed (``mean``: averaged)
    over all ranks and read as floats: one collective, one sync."""
    device = collective_device()
    pieces = [
        p.detach().reshape(-1).to(device, torch.float64)
        if isinstance(p, torch.Tensor)
        else torch.tensor([float(p)], dtype=torch.float64, device=device)
        for p in parts
    ]
    packed = reduce_sum(torch.cat(pieces)) if pieces else torch.zeros(0, dtype=torch.float64)
    n = world_size()
    if mean and n > 1:
        packed = packed / n
    return packed.cpu().tolist()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP, ``DataParallel``, FSDP (1) or ``torch.compile`` wrappers, nested."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        elif type(model).__name__ == "FullyShardedDataParallel" and isinstance(
            getattr(model, "module", None), nn.Module
        ):
            model = model.module
        else:
            return model


def collective_device() -> torch.device:
    """The device the default process group's backend reduces on (CPU for gloo)."""
    if world_size() > 1 and dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank_means(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor's mean over all ranks, in one collective."""
    n = world_size()
    if n == 1 or not tensors:
        return list(tensors)
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(n)
    chunks = flat.split([t.numel() for t in tensors])
    return [c.view_as(t) for c, t in zip(chunks, tensors, strict=True)]


def average_gradients_(parameters: list[torch.Tensor]) -> None:
    """Average the ``.grad`` of ``parameters`` over all ranks in place, as DDP would."""
    grads = [p.grad for p in parameters if p.grad is not None]
    for g, mean in zip(grads, rank_means(grads), strict=True):
        if mean is not g:
            g.copy_(mean)
