"""Clips per CPU core of each way to decode a training clip, side by side, in one run.

    python -m benchmarks.perf.decode_compare
    python -m benchmarks.perf.decode_compare --sizes 640x360 --gops 60 --clips 16 --rounds 5

Generates H.264 web-like videos (see ``benchmarks.perf._decode``) at each size and keyframe
interval, then times every variant round-robin on the same random clip starts and prints,
per video and clip shape, clips per CPU-second (one core's rate), the ratio to today's path,
the wall-clock rate and the largest and mean pixel difference to today's clips. Compare
ratios within one run only: the machine's load moves absolute rates. The same comparison as a
pytest-benchmark: ``python -m pytest benchmarks/perf/test_decode.py --benchmark-only``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence

import torch

from benchmarks.perf._decode import SHAPES, VARIANTS, compare, describe, write_web_video


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(x) for x in text.lower().split("x"))
    except ValueError:
        msg = f"size {text!r} should be WIDTHxHEIGHT, e.g. 340x256"
        raise argparse.ArgumentTypeError(msg) from None
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"size {text!r} should have even sides >= 16")
    return width, height


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.perf.decode_compare",
        description="Clips per CPU core of each clip-decoding variant, in one run.",
    )
    p.add_argument("--sizes", type=_size, nargs="+", default=[(340, 256), (640, 360)])
    p.add_argument("--gops", type=int, nargs="+", default=[250, 60], help="keyframe intervals")
    p.add_argument("--seconds", type=float, default=10.0, help="video length (Kinetics: 10)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--clips", type=int, default=8, help="clips per variant and round")
    p.add_argument("--rounds", type=int, default=3)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)  # as in a DataLoader worker
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"cpus: {os.cpu_count()}; load average (1 min): {load:.2f}; {args.clips} clips x "
        f"{args.rounds} rounds per variant, round-robin; rates are medians over rounds"
    )
    base = "today" if "today" in args.variants else args.variants[0]
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in args.sizes:
            for gop in args.gops:
                t0 = time.perf_counter()
                path = write_web_video(
                    os.path.join(tmp, f"v{width}x{height}g{gop}.mp4"),
                    (width, height),
                    args.seconds,
                    args.fps,
                    gop,
                )
                print(f"\nvideo: {describe(path)} (written in {time.perf_counter() - t0:.1f} s)")
                for name in args.shapes:
                    shape = SHAPES[name]
                    result = compare(path, shape, args.variants, args.clips, args.rounds)
                    ratios = result.ratios(base)
                    print(f"  clip {name}: {shape.label}")
                    print(
                        f"    {'variant':20s} {'clips/s/core':>12s} {'x ' + base:>9s} "
                        f"{'clips/s wall':>12s} {'|diff| max':>10s} {'mean':>6s}"
                    )
                    for v in args.variants:
                        worst, mean = result.diff[v]
                        print(
                            f"    {v:20s} {result.per_core[v]:12.2f} {ratios[v]:9.2f} "
                            f"{result.per_wall[v]:12.2f} {worst:10d} {mean:6.2f}"
                        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
