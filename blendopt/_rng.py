"""Seeded, isolated random state for estimation, so the user's training run is not perturbed."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch


def _loader_parts(loader: Any) -> list[Any]:
    # A DataLoader, its sampler and batch sampler and the samplers they wrap, a few levels deep.
    out: list[Any] = []
    todo = [loader]
    while todo and len(out) < 16:
        part = todo.pop(0)
        if part is None or any(part is seen for seen in out):
            continue
        out.append(part)
        todo += [getattr(part, "sampler", None), getattr(part, "batch_sampler", None)]
    return out


def loader_generators(loaders: Iterable[Any]) -> list[torch.Generator]:
    """The ``torch.Generator`` objects that iterating ``loaders`` advances, each once, in order."""
    found = (getattr(part, "generator", None) for x in loaders for part in _loader_parts(x))
    return _distinct(g for g in found if isinstance(g, torch.Generator))


def _distinct(items: Iterable[Any]) -> list[Any]:
    """``items`` without repeated objects (by identity), in order."""
    return list({id(item): item for item in items}.values())


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


@contextlib.contextmanager
def isolated_rng(seed: int | None, generators: Sequence[torch.Generator] = ()) -> Iterator[None]:
    """Run a block with its own random state (torch, ``random``, NumPy, ``generators``), seeded
    from ``seed`` if given; the caller's state is restored afterwards."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    saved = [g.get_state() for g in generators]
    try:
        with torch.random.fork_rng(devices=_cuda_devices()):
            if seed is not None:
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
                for index, g in enumerate(generators):
                    g.manual_seed(derive_seed(seed, index))
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        for g, state in zip(generators, saved, strict=True):
            g.set_state(state)


class SamplerEpochs:
    """Set the epoch of the loaders' epoch-aware samplers; on exit each gets its epoch back."""

    def __init__(self, loaders: Iterable[Any]) -> None:
        parts = (part for loader in loaders for part in _loader_parts(loader)[1:])
        self.samplers = _distinct(
            p
            for p in parts
            if callable(getattr(p, "set_epoch", None))
            and isinstance(getattr(p, "epoch", None), int)
        )
        self._saved: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def __enter__(self) -> SamplerEpochs:
        self._saved = [sampler.epoch for sampler in self.samplers]
        return self

    def __exit__(self, *exc: object) -> None:
        for sampler, epoch in zip(self.samplers, self._saved, strict=True):
            sampler.set_epoch(epoch)

    def __repr__(self) -> str:
        return f"SamplerEpochs({[type(s).__name__ for s in self.samplers]})"


def derive_seed(base: int, *parts: int) -> int:
    """A deterministic 63-bit seed from a base seed and counters (e.g. estimate index)."""
    value = base & 0x7FFFFFFFFFFFFFFF
    for part in parts:
        value = (value * 6364136223846793005 + part + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
    return value


class RngStream:
    """A private torch random stream swapped in and out of the global generators."""

    def __init__(self, seed: int) -> None:
        self._cuda = torch.cuda.is_initialized()
        with torch.random.fork_rng(devices=_cuda_devices()):
            torch.manual_seed(seed)
            self._state = self._capture()

    def _capture(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.get_rng_state(), torch.cuda.get_rng_state_all() if self._cuda else []

    def _restore(self, state: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
        torch.set_rng_state(state[0])
        if self._cuda:
            torch.cuda.set_rng_state_all(state[1])

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        outer = self._capture()
        self._restore(self._state)
        try:
            yield
        finally:
            self._state = self._capture()
            self._restore(outer)
