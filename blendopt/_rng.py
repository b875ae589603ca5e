"""Seeded, isolated random state for estimation, so the user's training run is not perturbed."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch


def _loader_parts(loader: Any) -> list[Any]:
    # A DataLoader and the samplers inside it: its sampler and batch sampler, and the samplers
    # they wrap (`.sampler`, e.g. a BatchSampler's), a few levels deep.
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
    """The ``torch.Generator`` objects that iterating ``loaders`` advances.

    A ``DataLoader(generator=g)`` draws its workers' base seed from ``g`` and hands ``g`` to its
    ``RandomSampler``; a sampler or batch sampler may hold a generator of its own. Each is
    listed once, in a fixed order (so seeding them by position is deterministic).
    """
    found: list[torch.Generator] = []
    for loader in loaders:
        for part in _loader_parts(loader):
            g = getattr(part, "generator", None)
            if isinstance(g, torch.Generator) and all(g is not seen for seen in found):
                found.append(g)
    return found


@contextlib.contextmanager
def isolated_rng(seed: int | None, generators: Sequence[torch.Generator] = ()) -> Iterator[None]:
    """Run a block with its own random state and restore the caller's afterwards.

    Forks the torch generators (CPU and every visible CUDA device), Python's ``random``,
    NumPy's global generator and the given ``generators`` (a data loader's own, see
    :func:`loader_generators`). With ``seed`` set, all of them are seeded inside the block, so
    the block's randomness (data-loader shuffling, worker seeds, augmentation, dropout) is the
    same every time it runs with that seed, and iterating a loader inside the block does not
    change the batches the caller's next pass over it yields.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    saved = [g.get_state() for g in generators]
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
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
    """Set the epoch of the loaders' epoch-aware samplers, then put the caller's back.

    A ``DistributedSampler`` (or any sampler or batch sampler with ``set_epoch`` and an integer
    ``epoch`` attribute) shuffles by its epoch number. The copies of Algorithm 1 call
    :meth:`set_epoch` at each of their epochs; on exit every sampler gets back the epoch it had,
    so the main run's order is unchanged. Samplers with ``set_epoch`` but no readable ``epoch``
    are left alone (their epoch could not be restored).
    """

    def __init__(self, loaders: Iterable[Any]) -> None:
        self.samplers: list[Any] = []
        for loader in loaders:
            for part in _loader_parts(loader)[1:]:
                if (
                    callable(getattr(part, "set_epoch", None))
                    and isinstance(getattr(part, "epoch", None), int)
                    and all(part is not seen for seen in self.samplers)
                ):
                    self.samplers.append(part)
        self._saved: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        """Call ``set_epoch(epoch)`` on every epoch-aware sampler."""
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
    """A private torch random stream that can be swapped in and out of the global generators.

    Algorithm 1's copies are trained in lockstep; each copy draws its dropout masks from its
    own stream, so a copy's training does not depend on which other copies share its pass.
    """

    def __init__(self, seed: int) -> None:
        self._cuda = torch.cuda.is_initialized()
        with torch.random.fork_rng(devices=self._devices()):
            torch.manual_seed(seed)
            self._state = self._capture()
        self._outer: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def _devices(self) -> list[int]:
        return list(range(torch.cuda.device_count())) if self._cuda else []

    def _capture(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return torch.get_rng_state(), torch.cuda.get_rng_state_all() if self._cuda else []

    def _restore(self, state: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
        torch.set_rng_state(state[0])
        if self._cuda:
            torch.cuda.set_rng_state_all(state[1])

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Use this stream for the block; the outer state resumes afterwards."""
        outer = self._capture()
        self._restore(self._state)
        try:
            yield
        finally:
            self._state = self._capture()
            self._restore(outer)
