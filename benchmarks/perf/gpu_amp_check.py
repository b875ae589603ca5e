"""The prepared mixed-precision check for a session lent a GPU: ``python -m
benchmarks.perf.gpu_amp_check``.

What docs/integrations.md says changes on CUDA, checked there (fp16 with a ``GradScaler``):

1. ``blend`` inside ``torch.autocast`` (fp16 and bf16) returns a float32 loss whose gradient
   with respect to each head's loss is exactly that head's weight.
2. A loop with fp16 autocast and a ``GradScaler`` (one overflowing step included) trains the
   same parameters with the blender as with the plain optimizer and the summed loss.
3. PyTorch Lightning ``precision="16-mixed"`` with the blender returned by
   ``configure_optimizers`` matches that plain loop with the blender.
4. Hugging Face Accelerate ``mixed_precision="fp16"`` with the prepared blender matches
   Accelerate with the plain optimizer.

Prints one PASS/FAIL line per check with the largest parameter difference; exits 1 on a
failure. Checks 3 and 4 are skipped (and say so) when the framework is not installed.
``--device cpu`` runs the same code in bf16 without a scaler as a smoke test. Budget: well
under a minute on one GPU.
"""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import blendopt

WEIGHTS = {"rgb": 0.630, "audio": 0.014, "fused": 0.356}  # the paper's Kinetics weights
HEADS = list(WEIGHTS)
STEPS = 6


class _Fusion(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rgb = nn.Sequential(nn.Linear(32, 64), nn.ReLU())
        self.audio = nn.Sequential(nn.Linear(16, 64), nn.ReLU())
        self.heads = nn.ModuleDict(
            {"rgb": nn.Linear(64, 10), "audio": nn.Linear(64, 10), "fused": nn.Linear(128, 10)}
        )

    def forward(self, rgb: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        fr, fa = self.rgb(rgb), self.audio(audio)
        features = {"rgb": fr, "audio": fa, "fused": torch.cat([fr, fa], 1)}
        return {h: self.heads[h](f) for h, f in features.items()}


def _loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    rgb, audio, y = (t.to(device) for t in batch)
    return {h: F.cross_entropy(z.float(), y) for h, z in model(rgb, audio).items()}


def _batches() -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(STEPS):
        rgb, audio = torch.randn(32, 32, generator=g), torch.randn(32, 16, generator=g)
        out.append((rgb, audio, torch.randint(0, 10, (32,), generator=g)))
    return out


def _model(device: str) -> nn.Module:
    torch.manual_seed(0)
    return _Fusion().to(device)


def _max_diff(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(a.parameters(), b.parameters(), strict=True)
    return max(float((p.detach() - q.detach()).abs().max()) for p, q in pairs)


def check_blend_dtype(device: str) -> tuple[bool, str]:
    """Check 1: the blend is float32 with exact weights under fp16 and bf16 autocast."""
    model = _model(device)
    blender = blendopt.GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, WEIGHTS)
    dtypes = [torch.bfloat16] + ([torch.float16] if device == "cuda" else [])
    worst = 0.0
    for dtype in dtypes:
        with torch.autocast(device, dtype=dtype):
            losses = _loss_fn(model, _batches()[0])
            leaves = {h: v.detach().float().requires_grad_() for h, v in losses.items()}
            blended = blender.blend(leaves)
        if blended.dtype != torch.float32:
            return False, f"blend under {dtype} autocast is {blended.dtype}"
        blended.backward()
        worst = max(worst, *(abs(leaves[h].grad.item() - WEIGHTS[h]) for h in HEADS))
    return worst < 1e-7, f"largest |d blend / d L_k - w_k| = {worst:.2e} over {dtypes}"


def _scaler_loop(device: str, use_blender: bool, dtype: torch.dtype) -> nn.Module:
    model = _model(device)
    inner = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    opt = blendopt.GradientBlender(inner, HEADS, WEIGHTS) if use_blender else inner
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    for i, batch in enumerate(_batches()):
        opt.zero_grad()
        with torch.autocast(device, dtype=dtype):
            losses = _loss_fn(model, batch)
            loss = opt.blend(losses) if use_blender else sum(WEIGHTS[h] * losses[h] for h in HEADS)
        scaler.scale(loss).backward()
        if i == 2 and scaler.is_enabled():  # an overflow: the scaler must skip this step
            next(model.parameters()).grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
    return model


def check_grad_scaler(device: str, dtype: torch.dtype) -> tuple[bool, str]:
    """Check 2: the autocast + GradScaler loop, blender against the plain optimizer."""
    diff = _max_diff(_scaler_loop(device, True, dtype), _scaler_loop(device, False, dtype))
    return diff < 1e-5, f"largest parameter difference {diff:.2e}"


def check_lightning(device: str, dtype: torch.dtype) -> tuple[bool, str]:
    """Check 3: Lightning mixed precision against the plain loop with the blender."""
    import pytorch_lightning as pl

    from blendopt.integrations.lightning import GradientBlendCallback

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _model(device)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            return self.optimizers().blend(_loss_fn(self.net, batch))

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            sgd = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            return blendopt.GradientBlender(sgd, HEADS, WEIGHTS)

    module = Module()
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=1,
        precision="16-mixed" if dtype == torch.float16 else "bf16-mixed",
        callbacks=[GradientBlendCallback()],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(_batches(), batch_size=None))
    reference = _model(device)
    blender = blendopt.GradientBlender(
        torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9), HEADS, WEIGHTS
    )
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    for batch in _batches():
        blender.zero_grad()
        with torch.autocast(device, dtype=dtype):
            blended = blender.blend(_loss_fn(reference, batch))
        scaler.scale(blended).backward()
        scaler.unscale_(blender)
        scaler.step(blender)
        scaler.update()
    diff = _max_diff(module.net, reference)
    return diff < 1e-5, f"largest parameter difference {diff:.2e}"


def check_accelerate(device: str, dtype: torch.dtype) -> tuple[bool, str]:
    """Check 4: Accelerate mixed precision, the prepared blender against the plain optimizer."""
    import accelerate

    def run(use_blender: bool) -> nn.Module:
        accelerate.state.AcceleratorState._reset_state(reset_partial_state=True)
        accelerate.state.GradientState._reset_state()
        accelerator = accelerate.Accelerator(
            cpu=device == "cpu", mixed_precision="fp16" if dtype == torch.float16 else "bf16"
        )
        model = _model(device)
        inner = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        blender = blendopt.GradientBlender(inner, HEADS, WEIGHTS) if use_blender else inner
        prepared, optimizer = accelerator.prepare(model, blender)
        for batch in _batches():
            optimizer.zero_grad()
            losses = _loss_fn(prepared, batch)
            loss = (
                blender.blend(losses) if use_blender else sum(WEIGHTS[h] * losses[h] for h in HEADS)
            )
            accelerator.backward(loss)
            optimizer.step()
        return copy.deepcopy(accelerator.unwrap_model(prepared))

    diff = _max_diff(run(True), run(False))
    return diff < 1e-5, f"largest parameter difference {diff:.2e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA device; pass --device cpu for the smoke run")
    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    checks: list[tuple[str, Callable[[], tuple[bool, str]], str | None]] = [
        ("blend dtype under autocast", lambda: check_blend_dtype(device), None),
        (f"{dtype} autocast + GradScaler", lambda: check_grad_scaler(device, dtype), None),
        ("Lightning mixed precision", lambda: check_lightning(device, dtype), "pytorch_lightning"),
        ("Accelerate mixed precision", lambda: check_accelerate(device, dtype), "accelerate"),
    ]
    failed = 0
    for name, check, needs in checks:
        if needs is not None:
            try:
                __import__(needs)
            except ImportError:
                print(f"SKIP {name}: {needs} is not installed")
                continue
        ok, detail = check()
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'} {name} ({device}): {detail}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
