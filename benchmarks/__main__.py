"""``python -m benchmarks``: the main job (the embedded benchmark). See ``--help``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from benchmarks.runner import OPTIMIZERS, SETUPS, markdown_table, run_one, select_methods, verdicts


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    if args_in[:1] == ["train"]:  # `python -m benchmarks train CONFIG ...` (docs/training.md)
        from benchmarks.train import main as train_main

        return train_main(args_in[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="G-Blend vs. single modalities, naive fusion, dropout and auxiliary losses on "
        "the embedded datasets (offline, CPU).",
    )
    parser.add_argument("--datasets", nargs="+", choices=sorted(SETUPS), default=list(SETUPS))
    parser.add_argument(
        "--methods", nargs="+", default=None, help="default: all (e.g. naive gblend_offline single)"
    )
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=["sgd"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="override every dataset's epochs")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: the models are small)"
    )
    parser.add_argument(
        "--metric",
        choices=("error", "loss"),
        default="error",
        help="what G-Blend measures (default: top-1 error)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="folder for the Markdown and JSON report"
    )
    args = parser.parse_args(args_in)
    if args.seeds < 1:
        parser.error("--seeds should be >= 1")
    torch.set_num_threads(args.threads)

    results = []
    start = time.perf_counter()
    for name in args.datasets:
        setup = SETUPS[name]
        print(f"== {name}: {setup.description}", flush=True)
        for seed in range(args.seeds):
            data = (setup.load("train", seed), setup.load("test", seed))
            for method in select_methods(data[0].modalities, args.methods):
                for optimizer in args.optimizers:
                    r = run_one(
                        setup,
                        method,
                        optimizer=optimizer,
                        seed=seed,
                        epochs=args.epochs,
                        data=data,
                        metric=args.metric,
                    )
                    results.append(r)
                    ensemble = (
                        f", ensemble {100 * r.ensemble_accuracy:.1f}"
                        if r.ensemble_accuracy is not None
                        else ""
                    )
                    print(
                        f"  seed {seed} {optimizer:7s} {method.name:16s} "
                        f"test top-1 {100 * r.accuracy:5.1f}"
                        f"{ensemble} ({r.seconds:.1f} s)",
                        flush=True,
                    )
    table = markdown_table(results)
    summary = verdicts(results)
    print()
    print(table)
    print("\n".join(summary))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "embedded_benchmark.md").write_text(table + "\n" + "\n".join(summary) + "\n")
    (args.out / "embedded_benchmark.json").write_text(
        json.dumps([r.to_dict() for r in results], indent=1)
    )
    print(f"wrote {args.out / 'embedded_benchmark.md'} and {args.out / 'embedded_benchmark.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
