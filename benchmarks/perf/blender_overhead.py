"""Interleaved A/B measurement of GradientBlender's per-step overhead.

``python -m benchmarks.perf.blender_overhead [--rounds N]`` alternates the naive summed-loss
step and the GradientBlender step (so drift on a shared machine hits both alike) and prints the
median of the per-pair time ratios, with the 10th and 90th percentiles.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.perf._overhead import make_steps


def measure(rounds: int, batch: int) -> list[float]:
    """Per-pair ratios blender/naive over ``rounds`` alternating pairs (order alternates too)."""
    pair = make_steps(batch=batch)
    naive, blend = pair.naive, pair.blend
    for _ in range(50):
        naive()
        blend()
    ratios = []
    for i in range(rounds):
        pair = (naive, blend) if i % 2 == 0 else (blend, naive)
        times = {}
        for fn in pair:
            start = time.perf_counter()
            fn()
            times[fn] = time.perf_counter() - start
        ratios.append(times[blend] / times[naive])
    return ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ratios = sorted(measure(args.rounds, args.batch))
    q = statistics.quantiles(ratios, n=10)
    print(
        f"GradientBlender / naive step time over {args.rounds} interleaved pairs "
        f"(batch {args.batch}, {args.threads} thread(s)): median {statistics.median(ratios):.4f}, "
        f"p10 {q[0]:.4f}, p90 {q[-1]:.4f}"
    )


if __name__ == "__main__":
    main()
