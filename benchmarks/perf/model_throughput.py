"""Forward+backward throughput (clips/s) and peak memory of the suite's models.

Run ``python -m benchmarks.perf.model_throughput --help``. Each model is built from the
registry, put in training mode and run for ``--warmup`` then ``--steps`` steps of forward,
cross-entropy on every head (random labels) and backward, at the paper's input size
(``--size paper``) or a tiny one (``--size tiny``, for CPU smoke runs); ``--frames`` and
``--crop`` override the video clip size.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset per model); on CPU the
growth of the process's resident-set high-water mark (``resource.getrusage`` ``ru_maxrss``)
while the model is built and run. A high-water mark only grows, so on CPU each model runs in
a fresh child process by default (``--no-isolate`` runs them in this process, where the
figure is right only for a model larger than all before it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import inspect
import multiprocessing
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.models import VideoResNet, create, get_builder, list_models

DEFAULT_MODELS = (
    "r3d_50",
    "r2plus1d_50",
    "ip_csn_152",
    "ir_csn_152",
    "audio_resnet_152",
    "av_ip_csn_152",
)

Inputs = torch.Tensor | Mapping[str, torch.Tensor]


@dataclass
class Result:
    """One row of the table."""

    model: str
    input_size: str
    batch: int
    clips_per_s: float
    step_ms: float
    peak_mib: float


def _max_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform != "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024


def _map(inputs: Inputs, fn) -> Inputs:
    if isinstance(inputs, torch.Tensor):
        return fn(inputs)
    return {k: fn(v) for k, v in inputs.items()}


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _describe(inputs: Inputs) -> str:
    if isinstance(inputs, torch.Tensor):
        return "×".join(str(s) for s in inputs.shape[1:])
    return " + ".join(_describe(v) for v in inputs.values())


def _loss(out: torch.Tensor | Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    heads = out.values() if isinstance(out, Mapping) else [out]
    return sum(F.cross_entropy(logits.float(), labels) for logits in heads)


def measure(
    name: str,
    *,
    size: str,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    bf16: bool,
    channels_last: bool,
    compile_model: bool,
    frames: int | None,
    crop: int | None,
    num_classes: int,
) -> Result:
    """Build ``name`` and time ``steps`` forward+backward steps."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = _max_rss_mib()
    accepts_classes = "num_classes" in inspect.signature(get_builder(name)).parameters
    model: nn.Module = create(name, **({"num_classes": num_classes} if accepts_classes else {}))
    model = model.to(device).train()
    classes = getattr(model, "num_classes", 0) or model.output_dim  # encoders: output width
    attr = "default_input_size" if size == "paper" else "tiny_input_size"
    for module in model.modules():
        if isinstance(module, VideoResNet) and (frames or crop):
            t, h, _ = getattr(module, attr)
            setattr(module, attr, (frames or t, crop or h, crop or h))
    inputs = model.example_input(size, batch_size=batch, device=device)
    description = _describe(inputs)
    if channels_last:
        # Module.to(memory_format=channels_last_3d) fails on 4-D weights (audio), so convert
        # each conv on its own: 3-D convs to channels-last-3d, 2-D convs to channels-last.
        for module in model.modules():
            if isinstance(module, nn.Conv3d):
                module.to(memory_format=torch.channels_last_3d)
            elif isinstance(module, nn.Conv2d):
                module.to(memory_format=torch.channels_last)
        inputs = _map(inputs, _to_channels_last)
    runner = torch.compile(model) if compile_model else model
    labels = torch.randint(0, classes, (batch,), device=device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )

    def step() -> None:
        for p in model.parameters():
            p.grad = None
        with autocast:
            out = runner(inputs)
        _loss(out, labels).backward()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _max_rss_mib() - rss_before
    return Result(name, description, batch, batch * steps / elapsed, 1e3 * elapsed / steps, peak)


def _measure_in_child(name: str, threads: int, options: dict) -> Result:
    torch.set_num_threads(threads)
    return measure(name, **options)


def format_table(results: Sequence[Result], memory_kind: str) -> str:
    """Markdown table of the results."""
    lines = [
        f"| model | input | batch | clips/s | ms/step | peak memory (MiB, {memory_kind}) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.input_size} | {r.batch} | {r.clips_per_s:.2f} | {r.step_ms:.1f} | "
        f"{r.peak_mib:.0f} |"
        for r in results
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.perf.model_throughput",
        description="Forward+backward throughput and peak memory of the suite's models.",
    )
    parser.add_argument(
        "models",
        nargs="*",
        default=list(DEFAULT_MODELS),
        help=f"registered names or patterns (default: {' '.join(DEFAULT_MODELS)})",
    )
    parser.add_argument(
        "--size",
        choices=["paper", "tiny"],
        default="paper",
        help="input size: the paper's (default) or tiny (CPU smoke run)",
    )
    parser.add_argument("--frames", type=int, default=None, help="override video clip frames")
    parser.add_argument("--crop", type=int, default=None, help="override video crop side")
    parser.add_argument("--batch", type=int, default=8, help="clips per step (default 8)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--num-classes", type=int, default=400, help="classes (default 400)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument(
        "--channels-last", action="store_true", help="channels-last(-3d) model and inputs"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="torch device (default: cuda if available, else cpu)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each model in a fresh process (default: on CPU only, for per-model max-RSS)",
    )
    args = parser.parse_args(argv)
    for option in ("batch", "steps"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} should be >= 1; found {getattr(args, option)}")
    return args


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Run the measurements and print the table."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names: list[str] = []
    for pattern in args.models:
        matched = list_models(pattern)
        if not matched:
            create(pattern)  # raises with close names
        names += [n for n in matched if n not in names]
    device = torch.device(args.device)
    isolate = device.type == "cpu" if args.isolate is None else args.isolate
    options = {
        "size": args.size,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "device": device,
        "bf16": args.bf16,
        "channels_last": args.channels_last,
        "compile_model": args.compile,
        "frames": args.frames,
        "crop": args.crop,
        "num_classes": args.num_classes,
    }
    results = []
    for name in names:
        if isolate:
            context = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                threads = torch.get_num_threads()
                result = pool.submit(_measure_in_child, name, threads, options).result()
        else:
            result = measure(name, **options)
        results.append(result)
        print(f"done {name}", file=sys.stderr, flush=True)
    memory_kind = "cuda max allocated" if device.type == "cuda" else "CPU max-RSS growth"
    flags = [f for f in ("bf16", "channels_last", "compile") if getattr(args, f)]
    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
        f", {torch.get_num_threads()} threads), torch {torch.__version__}, size {args.size}, "
        f"flags: {', '.join(flags) or 'none'}"
    )
    print(format_table(results, memory_kind))
    return results


if __name__ == "__main__":
    main()
