"""Device check of the estimate's copy training: ``python -m benchmarks.perf.estimate_check``.

1. **Syncs**: ``blendopt.retrain.train_copies`` runs under ``torch.cuda.set_sync_debug_mode
   ("warn")``; every synchronizing call is listed by source line. Expected: one per epoch (the
   divergence counters read at each epoch's end), none per step.
2. **A diverging head on the device**: a full ``estimate_weights`` where one head's loss
   turns inf; that head must get weight 0 with a note, the others go on.
3. **Cost of the old per-step check**: copy training with the device-side counters vs. the
   same loop plus ``bool(torch.isfinite(loss))`` per copy step (what the estimator did
   before), interleaved rounds timed with CUDA events; the median ratio is printed.

``--device cpu --steps 4 --hidden 16`` runs the same code as a smoke test (syncs are
CUDA-only). Budget: well under a minute on an H100 with the defaults.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import blendopt
from blendopt.retrain import CopyTraining, TrainPlan, make_copies, train_copies

HEADS = ("a", "b", "fused")


class _Net(nn.Module):
    def __init__(self, dim: int, hidden: int, classes: int = 10) -> None:
        super().__init__()
        self.enc_a = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.enc_b = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.head_a = nn.Linear(hidden, classes)
        self.head_b = nn.Linear(hidden, classes)
        self.head_fused = nn.Linear(2 * hidden, classes)

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        fa, fb = self.enc_a(xa), self.enc_b(xb)
        return {
            "a": self.head_a(fa),
            "b": self.head_b(fb),
            "fused": self.head_fused(torch.cat([fa, fb], 1)),
        }


def _loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    xa, xb, y = batch
    return {h: F.cross_entropy(z, y) for h, z in model(xa, xb).items()}


def _batches(n: int, batch: int, dim: int, device: torch.device, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        y = torch.randint(0, 10, (batch,), generator=g)
        xa = torch.randn(batch, dim, generator=g) + F.one_hot(y, dim).float()
        out.append((xa.to(device), torch.randn(batch, dim, generator=g).to(device), y.to(device)))
    return out


def _training(train: list, epochs: int, sync_per_step: bool | None = None) -> CopyTraining:
    """The copies' training on the device path (device-side counters, also on the CPU).

    ``sync_per_step`` (for the timing) trains through a ``train_step``: ``True`` adds the old
    per-step ``bool(torch.isfinite(loss))`` check, ``False`` is the same step without it.
    """

    def train_step(net: nn.Module, opt: torch.optim.Optimizer, batch: Any, head: str) -> Any:
        loss = _loss(net, batch)[head]
        if sync_per_step and not bool(torch.isfinite(loss.detach()).all()):
            raise FloatingPointError(head)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return CopyTraining(
        _loss,
        train,
        HEADS,
        TrainPlan(epochs=epochs, steps=None),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
        train_step=None if sync_per_step is None else train_step,
        eager_checks=False,
    )


def _train(model: nn.Module, training: CopyTraining) -> None:
    train_copies(make_copies(model, HEADS, training), training)


def _time(fn, device: torch.device) -> float:
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    """Run the three checks and print their results; returns 0."""
    _run(argv)
    return 0


def _run(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=100, help="batches per epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = _Net(args.dim, args.hidden).to(device)
    train = _batches(args.steps, args.batch, args.dim, device)
    training = _training(train, args.epochs)

    # 1. Syncs while training the copies.
    _train(model, training)  # warm-up
    sites: Counter[str] = Counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                _train(model, training)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        for w in caught:
            if "synchroniz" in str(w.message):
                sites[f"{w.filename.rsplit('/', 1)[-1]}:{w.lineno}"] += 1
    print(f"syncs in {args.epochs} epochs x {args.steps} steps x {len(HEADS)} copies:")
    for site, n in sites.most_common():
        print(f"  {n:5d}  {site}")
    print(f"  total {sum(sites.values())} (expected {args.epochs}: one counter read per epoch)")

    # 2. A diverging head on the device.
    calls = {"n": 0}

    def diverging(m: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        out = _loss(m, batch)
        if m.training:
            calls["n"] += 1
            if calls["n"] > 5:
                out["b"] = out["b"] * float("inf")
        return out

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = blendopt.estimate_weights(
            model,
            diverging,
            train[: max(2, args.steps // 4)],
            _batches(4, args.batch, args.dim, device, seed=1),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
            epochs=2,
            heads=list(HEADS),
            eps=1e-4,
        )
    print("diverging head b:", {h: round(w, 4) for h, w in est.weights.items()})
    print("  notes:", [n for n in est.notes if "diverged" in n])
    print("  warnings:", sorted({type(w.message).__name__ for w in caught}))

    # 3. Device-side counters vs. the old per-step bool(isfinite) check.
    times: dict[str, list[float]] = {"counters": [], "per-step sync": []}
    for _ in range(args.rounds):
        for name in times:
            timed = _training(train, args.epochs, sync_per_step=name == "per-step sync")
            times[name].append(_time(lambda t=timed: _train(model, t), device))
    steps = args.epochs * args.steps
    for name, values in times.items():
        print(f"{name:>14}: median {statistics.median(values) / steps * 1e3:.3f} ms per step")
    ratio = statistics.median(
        [s / c for s, c in zip(times["per-step sync"], times["counters"], strict=True)]
    )
    print(f"per-step sync / counters: median ratio {ratio:.3f} over {args.rounds} rounds")


if __name__ == "__main__":
    raise SystemExit(main())
