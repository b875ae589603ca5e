"""Prepared device check of the blender's deferred finite path (masked heads, device counts).

Run: ``python -m benchmarks.perf.masked_sync_check``.

With ``check_finite=False`` (the default off the CPU), a head at weight 0 is masked out of the
blend and non-finite losses are counted on the device by ``NonFiniteMonitor``. On CUDA, steps
1-6 run under ``torch.cuda.set_sync_debug_mode("error")`` (any synchronization raises) while the
weight-0 head's loss is inf at steps 2-3; then the counts are read at step 8
(``check_finite_every=8``: a ``NonFiniteLossWarning`` naming steps 2-3) and a nan loss of a
weighted head raises at ``state_dict()``. Exits 1 if anything differs. Seconds on a GPU;
``--device cpu`` runs the same path without the sync check (a smoke test).
"""

from __future__ import annotations

import argparse
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import blendopt

HEADS = ["a", "b", "fused"]


class _TwoModal(nn.Module):
    """Late fusion of two vector modalities: a head per modality and a fused head."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_a, self.enc_b = nn.Linear(6, 8), nn.Linear(5, 8)
        self.head_a, self.head_b, self.head_fused = (
            nn.Linear(8, 3),
            nn.Linear(8, 3),
            nn.Linear(16, 3),
        )

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        fa, fb = torch.relu(self.enc_a(xa)), torch.relu(self.enc_b(xb))
        return {
            "a": self.head_a(fa),
            "b": self.head_b(fb),
            "fused": self.head_fused(torch.cat([fa, fb], 1)),
        }


def _losses(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    xa, xb, y = batch
    return {h: F.cross_entropy(z, y) for h, z in model(xa, xb).items()}


def main(argv: list[str] | None = None) -> int:
    """Run the check; print each result; return 0 if all hold, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = _TwoModal().to(device)
    opt = blendopt.GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        HEADS,
        {"a": 0.0, "b": 0.4, "fused": 0.6},
        check_finite=False,
        check_finite_every=8,
    )
    g = torch.Generator().manual_seed(0)
    batches = [
        (
            torch.randn(16, 6, generator=g),
            torch.randn(16, 5, generator=g),
            torch.randint(0, 3, (16,), generator=g),
        )
        for _ in range(9)
    ]
    batches = [tuple(t.to(device) for t in b) for b in batches]

    def step(i: int, bad: str | None = None, value: float = math.inf) -> None:
        losses = _losses(model, batches[i])
        if bad is not None:
            losses[bad] = losses[bad] * value
        opt.zero_grad()
        opt.backward(losses)
        opt.step()

    ok = True
    step(0)  # caches the weight tensors on the device (one copy per weight change)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        for i in range(1, 7):
            step(i, bad="a" if i in (2, 3) else None)
    finally:
        if cuda:
            torch.cuda.set_sync_debug_mode("default")
    print(
        "sync check: steps 1-6 without synchronization"
        if cuda
        else "sync check: skipped (not on CUDA)"
    )
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    print(f"parameters finite after the masked inf losses: {finite}")
    ok &= finite
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step(7)  # the 8th step reads the counts
    reported = [w for w in caught if issubclass(w.category, blendopt.warnings.NonFiniteLossWarning)]
    print("at step 8:", [str(w.message)[:120] for w in reported])
    ok &= len(reported) == 1 and "steps 2-3" in str(reported[0].message)
    step(8, bad="b", value=math.nan)
    try:
        opt.state_dict()
        print("state_dict: no error (wrong)")
        ok = False
    except FloatingPointError as error:
        print("state_dict raised:", str(error)[:120])
        ok &= "steps 8-8" in str(error)
    print("masked sync check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
