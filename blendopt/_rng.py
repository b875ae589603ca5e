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
