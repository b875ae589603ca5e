"""Re-check ``RollingEstimator``'s defaults: one knob changed at a time, many seeds, paired.

``python -m benchmarks.perf.rolling_defaults --seeds 30 --out reports/rolling_defaults`` runs the
main job (``python -m benchmarks``, the same models, splits and predictor chosen on V) on the
small real-data regimes with ``auxiliary``, ``gblend_rolling`` (the defaults) and one method per
variant below, then prints each variant's chosen-on-V top-1 minus the defaults' (and the
defaults' minus equal-weight auxiliary losses), seed by seed with a paired-t 95% interval. Any
other main-job option passes through (``--datasets``, ``--jobs``, ...).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import blendopt
from benchmarks.__main__ import main as main_job
from benchmarks.runner import paired_difference
from benchmarks.runner._methods import (
    METHODS,
    Method,
    register_method,
    rolling_estimator,
    rolling_schedule,
)

#: name -> the ``RollingEstimator`` keywords that differ from the defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "prior_previous": {"prior": "previous"},
    "floor_0.10": {"floor": 0.10},
    "no_shrinkage": {"shrink": False},
    "interval_10": {"mode": blendopt.GradientMode(interval=10)},
    "window_8": {"mode": blendopt.GradientMode(window=8, min_measurements=6)},
    "params_all": {"mode": blendopt.GradientMode(params="all")},
}
PREFIX = "gblend_rolling_"


def register_variants() -> list[str]:
    """One main-job method per variant (idempotent); their names."""
    for name, options in VARIANTS.items():
        if PREFIX + name not in METHODS:
            method = Method(
                PREFIX + name,
                "gblend",
                estimator=functools.partial(rolling_estimator, **options),
                schedule=rolling_schedule,
                summary=f"RollingEstimator defaults but {options}",
            )
            register_method(method)
    return [PREFIX + name for name in VARIANTS]


def paired_lines(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Per dataset: each variant minus the defaults, the defaults minus ``auxiliary``."""

    def chosen(dataset: str, method: str) -> dict[int, float]:
        return {
            r["seed"]: r["selected_accuracy"]
            for r in runs
            if r["dataset"] == dataset and r["method"] == method
        }

    lines = []
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        default = chosen(dataset, "gblend_rolling")
        versus = paired_difference(default, chosen(dataset, "auxiliary"))
        lines.append(f"{dataset}: defaults - auxiliary {versus}")
        lines += [
            f"  {name} - defaults {paired_difference(chosen(dataset, PREFIX + name), default)}"
            for name in VARIANTS
        ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the variants through the main job, then print the paired differences."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--out", type=Path, default=Path("reports/rolling_defaults"))
    known, _ = parser.parse_known_args(argv)
    if "--datasets" not in argv:
        argv += ["--datasets", "digits_small", "mfeat_small"]
    argv += ["--methods", "auxiliary", "gblend_rolling", *register_variants()]
    if "--out" not in argv:
        argv += ["--out", str(known.out)]
    code = main_job([*argv, "--no-plots"])
    if code == 0:
        runs = json.loads((known.out / "embedded_benchmark.json").read_text())["runs"]
        print("\nchosen on V, paired by seed:\n" + "\n".join(paired_lines(runs)))
    return code


if __name__ == "__mp_main__":  # a spawned worker of the job (--jobs > 1) imports this module
    register_variants()  # under this name, then looks each method up by its name

if __name__ == "__main__":
    sys.exit(main())
