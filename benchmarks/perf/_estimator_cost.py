"""Per-step cost of each estimation mode against the plain optimizer (a registry of modes).

Each mode is a factory ``(CostSetup) -> epoch()`` where ``epoch()`` trains one epoch of
``CostSetup.steps`` steps on its own copy of the model, running whatever estimation the mode
does inside the epoch: the exact online modes re-estimate at every epoch boundary
(``Online(every=1)``, so each epoch is one super-epoch with its estimate) and their epoch time
divided by ``steps`` is the amortized per-step cost (total time / steps).

The rolling modes (``RollingEstimator``, no copies) keep one blender across the timed epochs,
so their per-step measurements (every ``interval`` steps) and estimates (every ``every`` steps)
are amortized over the rounds. Adding a mode is one entry in :data:`MODES`::

    MODES["rolling-correlated"] = _rolling(mode=blendopt.GradientMode(correlated=True))
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import blendopt
from benchmarks.perf._overhead import HEADS, WEIGHTS, LateFusionMLP

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def loss_fn(model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
    """Cross-entropy of every head of :class:`LateFusionMLP`."""
    rgb, audio, target = batch
    return {h: F.cross_entropy(z, target) for h, z in model(rgb, audio).items()}


@dataclass
class CostSetup:
    """A small late-fusion MLP and fixed synthetic batches shared by every mode."""

    model: nn.Module
    train: list[Batch]
    holdout: list[Batch]
    probe: list[Batch]

    @property
    def steps(self) -> int:
        return len(self.train)


def make_setup(
    batches: int = 16, batch: int = 64, hidden: int = 128, holdout_batches: int = 2, seed: int = 0
) -> CostSetup:
    """``batches`` training batches (one epoch), a holdout V and a train probe T'."""
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> list[Batch]:
        out = []
        for _ in range(n):
            y = torch.randint(0, 10, (batch,), generator=g)
            rgb = torch.randn(batch, 64, generator=g) + F.one_hot(y, 64).float()
            out.append((rgb, torch.randn(batch, 32, generator=g), y))
        return out

    torch.manual_seed(seed)
    model = LateFusionMLP(dim_rgb=64, dim_audio=32, hidden=hidden, classes=10)
    train = draw(batches)
    return CostSetup(model, train, draw(holdout_batches), train[:holdout_batches])


def _sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def plain_epoch(setup: CostSetup) -> Callable[[], None]:
    """The plain optimizer on the summed loss ``Σ w_k L_k`` (no blender)."""
    model = copy.deepcopy(setup.model)
    opt = _sgd(model)

    def epoch() -> None:
        for batch in setup.train:
            opt.zero_grad()
            losses = loss_fn(model, batch)
            sum(WEIGHTS[h] * losses[h] for h in HEADS).backward()
            opt.step()

    return epoch


def blender_epoch(
    setup: CostSetup,
    estimator: Callable[[nn.Module], Any] | dict[str, float],
    schedule: blendopt.Schedule | None,
) -> Callable[[], None]:
    """``GradientBlender`` with fixed weights or ``estimator(model)``, one epoch per call."""
    model = copy.deepcopy(setup.model)
    spec = estimator if isinstance(estimator, dict) else estimator(model)
    kwargs = {} if schedule is None else {"schedule": schedule}
    blender = blendopt.GradientBlender(_sgd(model), list(HEADS), spec, **kwargs)

    def epoch() -> None:
        with warnings.catch_warnings():
            # Zeroed heads and rejected estimates are outcomes here, not errors: timing only.
            warnings.simplefilter("ignore", blendopt.BlendWarning)
            blender.start_epoch()
        model.train()
        for batch in setup.train:
            blender.zero_grad()
            blender.backward(loss_fn(model, batch))
            blender.step()

    epoch.blender = blender  # type: ignore[attr-defined]  (for the smoke test)
    return epoch


def _exact(engine: str) -> Callable[[CostSetup], Callable[[], None]]:
    """Exact online estimation (``RetrainEstimator``) with the copies trained by ``engine``."""

    def factory(setup: CostSetup) -> Callable[[], None]:
        return blender_epoch(
            setup,
            lambda model: blendopt.RetrainEstimator(
                model, loss_fn, setup.train, setup.holdout, probe=setup.probe, engine=engine
            ),
            blendopt.Online(every=1),
        )

    return factory


def _rolling(**options: Any) -> Callable[[CostSetup], Callable[[], None]]:
    """``RollingEstimator(**options)`` with its default schedule (no model copies)."""

    def factory(setup: CostSetup) -> Callable[[], None]:
        return blender_epoch(
            setup,
            lambda model: blendopt.RollingEstimator(
                model, loss_fn, setup.holdout, probe=setup.probe, **options
            ),
            None,
        )

    return factory


#: mode -> factory ``(CostSetup) -> epoch()``; "plain" is the baseline of the ratios.
MODES: dict[str, Callable[[CostSetup], Callable[[], None]]] = {
    "plain": plain_epoch,
    "fixed": lambda s: blender_epoch(s, dict(WEIGHTS), None),
    "exact-online-loop": _exact("loop"),
    "exact-online-vmap": _exact("vmap"),
    "rolling-gradient": _rolling(),
    "rolling-loss": _rolling(mode="loss"),
}


def per_step_ratios(epoch_seconds: dict[str, float], steps: int) -> list[tuple[str, float, float]]:
    """``(mode, ms per step, ratio to "plain")`` rows from per-epoch seconds."""
    base = epoch_seconds["plain"]
    return [(m, 1e3 * s / steps, s / base) for m, s in epoch_seconds.items()]


def run_modes(setup: CostSetup, modes: Iterable[str], rounds: int) -> dict[str, list[float]]:
    """Epoch seconds of each mode, interleaved round by round after one warm-up epoch each."""
    epochs = {m: MODES[m](setup) for m in modes}
    for fn in epochs.values():
        fn()
    out: dict[str, list[float]] = {m: [] for m in epochs}
    names = list(epochs)
    for r in range(rounds):
        for m in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            epochs[m]()
            out[m].append(time.perf_counter() - start)
    return out
