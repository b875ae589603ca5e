"""The prepared device check for a session lent a GPU: ``python -m benchmarks.perf.gpu_check``.

1. **No per-step synchronization**: ``GradientBlender.backward`` and ``step`` run under
   ``torch.cuda.set_sync_debug_mode("error")``, which raises on any device synchronization.
2. **Per-step cost** on a paper-scale audio-visual model (default R(2+1)D-18 + audio
   ResNet-50, 16×112×112 clips and 1×100×40 log-mel, batch 32, bf16 autocast): the naive
   summed loss, ``GradientBlender``, one backward pass per head, and a ``RollingEstimator``
   measurement step (per-head gradients; the default measures every 20 steps, so its amortized
   cost is printed too), interleaved step by step and timed with CUDA events; the ratios to
   the naive step are printed.
3. **Exact estimate (Algorithm 1) cost**: one copy-training step (K = 3 copies) with the
   lockstep loop and with the vmap engine (``blendopt.retrain``; peak memory too), and one
   eval-mode measurement batch; then the per-step cost of each mode against the plain
   optimizer: plain, fixed weights (the blender), and exact online amortized over a
   super-epoch of ``--super-epoch-steps`` steps (Online: the look-ahead is one super-epoch, so
   each step adds one copy-training step, plus (1 + K) models measured on T' and V of
   ``--holdout-batches`` batches each per estimate).

``--device cpu --size tiny --no-bf16`` runs the same code as a smoke test (the sync check is
CUDA-only). Keep ``--no-bf16`` on the CPU: with torch 2.13 a bare ``nn.Conv3d`` (the video
stem, 3×7×7) under CPU bf16 autocast returns a non-finite weight gradient, and the blender's
finite check stops on the resulting nan loss. Prints one table; budget about a minute on an
H100 with the defaults (sections 1-2), plus about two for section 3.
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import blendopt
from benchmarks.models import create
from benchmarks.perf.exact_engines import time_engines
from blendopt.retrain import supports_vmap

ROLLING_INTERVAL = 20  # RollingEstimator's default measurement interval
WEIGHTS = {"rgb": 0.630, "audio": 0.014, "fused": 0.356}  # the paper's Kinetics weights


def _batch(
    model: nn.Module, size: str, batch: int, device: torch.device
) -> tuple[dict, torch.Tensor]:
    inputs = model.example_input(size, batch_size=batch, device=device)
    if size == "paper":  # the ablation clip size (section 3.1) instead of the Table 6 one
        inputs["rgb"] = torch.randn(batch, 3, 16, 112, 112, device=device)
    target = torch.randint(0, 400, (batch,), device=device)
    return inputs, target


def _losses(
    model: nn.Module, inputs: dict, target: torch.Tensor, autocast: bool
) -> dict[str, torch.Tensor]:
    with torch.autocast(target.device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(inputs)
    return {h: F.cross_entropy(z.float(), target) for h, z in logits.items()}


def make_variants(
    model: nn.Module, inputs: dict, target: torch.Tensor, *, autocast: bool
) -> dict[str, Callable[[], None]]:
    """One training step per variant, each on its own copy of ``model`` and SGD-momentum."""
    variants: dict[str, Callable[[], None]] = {}

    def naive_step(net: nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            opt.zero_grad()
            losses = _losses(net, inputs, target, autocast)
            sum(WEIGHTS[h] * losses[h] for h in WEIGHTS).backward()
            opt.step()

        return step

    def blender_step(net: nn.Module, opt: blendopt.GradientBlender) -> Callable[[], None]:
        def step() -> None:
            opt.zero_grad()
            opt.backward(_losses(net, inputs, target, autocast))
            opt.step()

        return step

    def per_head_step(net: nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            opt.zero_grad()
            losses = _losses(net, inputs, target, autocast)
            for i, h in enumerate(WEIGHTS):
                (WEIGHTS[h] * losses[h]).backward(retain_graph=i < len(WEIGHTS) - 1)
            opt.step()

        return step

    def loss_fn(net: nn.Module, batch: tuple[dict, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _losses(net, batch[0], batch[1], autocast)

    for name, factory in (
        ("naive", naive_step),
        ("blender", blender_step),
        ("per-head", per_head_step),
        ("rolling-measure", blender_step),
    ):
        net = copy.deepcopy(model)
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        if name == "blender":
            opt = blendopt.GradientBlender(opt, list(WEIGHTS), WEIGHTS)
        if name == "rolling-measure":
            # RollingEstimator measuring at every step (interval=1, never estimating): the cost
            # of one measurement step; the default measures every ROLLING_INTERVAL steps.
            rolling = blendopt.RollingEstimator(
                net,
                loss_fn,
                [(inputs, target)],
                mode=blendopt.GradientMode(interval=1),
                every=10**9,
            )
            opt = blendopt.GradientBlender(opt, list(WEIGHTS), rolling)
        variants[name] = factory(net, opt)
    return variants


def _time_step(step: Callable[[], None], device: torch.device) -> float:
    """Seconds of one step: CUDA events on a GPU, perf_counter on the CPU."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    step()
    return time.perf_counter() - t0


def time_variants(
    variants: dict[str, Callable[[], None]], steps: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Per-step seconds of each variant, interleaved (the order rotates every step)."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            variants[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(steps):
        order = names[i % len(names) :] + names[: i % len(names)]
        for n in order:
            times[n].append(_time_step(variants[n], device))
    return times


def check_no_sync(model: nn.Module, inputs: dict, target: torch.Tensor, *, autocast: bool) -> str:
    """Run blender.backward and step with CUDA sync debugging set to raise."""
    if inputs["rgb"].device.type != "cuda":
        return "skipped (not on CUDA)"
    net = copy.deepcopy(model)
    opt = blendopt.GradientBlender(
        torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9), list(WEIGHTS), WEIGHTS
    )
    for _ in range(2):  # the first step allocates state
        opt.zero_grad()
        losses = _losses(net, inputs, target, autocast)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            opt.backward(losses)
            opt.step()
        except RuntimeError as error:
            return f"FAILED: {error}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return "passed (no synchronization in backward + step)"


def time_exact_engines(
    model: nn.Module, inputs: dict, target: torch.Tensor, *, autocast: bool, steps: int
) -> dict[str, tuple[float | None, str]]:
    """Seconds per copy-training step (K = 3 copies) of each engine, or None and why not."""
    heads = list(WEIGHTS)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def loss_fn(net: nn.Module, batch: tuple[dict, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _losses(net, batch[0], batch[1], autocast)

    batch = (inputs, target)
    ok, why = supports_vmap(opt, model, loss_fn=loss_fn, batch=batch, heads=heads)
    out: dict[str, tuple[float | None, str]] = {}
    for engine in ("loop", "vmap"):
        if engine == "vmap" and not ok:
            out[engine] = (None, f"unsupported: {why}")
            continue
        device = target.device
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        try:
            seconds = time_engines(
                model, opt, loss_fn, batch, heads, steps=steps, engines=(engine,)
            )[engine]
        except torch.OutOfMemoryError as error:
            out[engine] = (None, f"out of memory ({str(error).splitlines()[0][:80]})")
            gc.collect()
            continue
        peak = (
            f"peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
            if device.type == "cuda"
            else ""
        )
        out[engine] = (seconds, peak)
    return out


def time_measurement(
    model: nn.Module, inputs: dict, target: torch.Tensor, *, autocast: bool, reps: int
) -> float:
    """Seconds of one eval-mode, no-grad measurement batch (all heads' losses)."""
    net = copy.deepcopy(model).eval()
    times = []
    with torch.no_grad():
        for i in range(reps + 1):
            t = _time_step(lambda: _losses(net, inputs, target, autocast), target.device)
            if i > 0:
                times.append(t)
    return statistics.median(times)


def print_mode_costs(
    naive: float,
    blender: float,
    engines: dict[str, tuple[float | None, str]],
    measure_batch: float,
    *,
    super_steps: int,
    holdout_batches: int,
) -> None:
    """The per-step cost of each mode against the plain optimizer (exact: amortized)."""
    k = len(WEIGHTS)
    measure = measure_batch * (1 + k) * 2 * holdout_batches
    print(f"exact estimate, one copy-training step of K={k} copies:")
    for engine, (seconds, note) in engines.items():
        if seconds is None:
            print(f"  {engine:5s} {note}")
        else:
            print(f"  {engine:5s} {1e3 * seconds:10.2f} ms {seconds / naive:9.3f}x naive  {note}")
    print(
        f"measurement: {1e3 * measure_batch:.2f} ms per eval batch; one estimate measures "
        f"{1 + k} models on T' and V of {holdout_batches} batches each = {measure:.2f} s"
    )
    print(f"per-step cost vs the plain optimizer (exact online over {super_steps} steps):")
    print(f"{'mode':18s} {'ms/step':>10s} {'vs plain':>9s}")
    rows = {"plain": naive, "fixed": blender}
    for engine, (seconds, _) in engines.items():
        if seconds is not None:
            rows[f"exact-online-{engine}"] = blender + seconds + measure / super_steps
    for mode, seconds in rows.items():
        print(f"{mode:18s} {1e3 * seconds:10.2f} {seconds / naive:9.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--visual", default="r2plus1d_18")
    parser.add_argument("--audio", default="audio_resnet_50")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-bf16", action="store_true", help="train in float32")
    parser.add_argument("--engine-steps", type=int, default=5, help="timed copy-training steps")
    parser.add_argument("--super-epoch-steps", type=int, default=1000)
    parser.add_argument("--holdout-batches", type=int, default=20, help="batches in T' and in V")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    autocast = not args.no_bf16
    torch.manual_seed(0)
    model = create("av_late_concat", visual=args.visual, audio=args.audio, num_classes=400).to(
        device
    )
    inputs, target = _batch(model, args.size, args.batch, device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}")
    print(f"model: {args.visual} + {args.audio}, size {args.size}, batch {args.batch}")
    print(f"bf16 autocast: {autocast}")
    print(f"sync check: {check_no_sync(model, inputs, target, autocast=autocast)}")
    variants = make_variants(model, inputs, target, autocast=autocast)
    times = time_variants(variants, args.steps, args.warmup, device)
    del variants  # free the three copies before the exact engines
    gc.collect()
    naive = statistics.median(times["naive"])
    print(f"{'variant':15s} {'median ms':>10s} {'vs naive':>9s}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:15s} {1e3 * median:10.2f} {median / naive:9.3f}", flush=True)
    engines = time_exact_engines(model, inputs, target, autocast=autocast, steps=args.engine_steps)
    measure_batch = time_measurement(
        model, inputs, target, autocast=autocast, reps=args.engine_steps
    )
    rolling = (
        statistics.median(times["blender"])
        + (statistics.median(times["rolling-measure"]) - statistics.median(times["blender"]))
        / ROLLING_INTERVAL
    )
    print(
        f"rolling (default, a measurement every {ROLLING_INTERVAL} steps, amortized) "
        f"{1e3 * rolling:.2f} ms, {rolling / naive:.3f} vs naive",
        flush=True,
    )
    print_mode_costs(
        naive,
        statistics.median(times["blender"]),
        engines,
        measure_batch,
        super_steps=args.super_epoch_steps,
        holdout_batches=args.holdout_batches,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
