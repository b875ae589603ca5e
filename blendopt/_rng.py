"""Seeded, isolated random state for estimation, so the user's training run is not perturbed."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def isolated_rng(seed: int | None) -> Iterator[None]:
    """Run a block with its own random state and restore the caller's afterwards.

    Forks the torch generators (CPU and every visible CUDA device), Python's ``random`` and
    NumPy's global generator. With ``seed`` set, all of them are seeded inside the block, so the
    block's randomness (data-loader shuffling, worker seeds, augmentation, dropout) is the same
    every time it runs with that seed.
    """
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            if seed is not None:
                torch.manual_seed(seed)
                random.seed(seed)
                np.random.seed(seed % 2**32)
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


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
