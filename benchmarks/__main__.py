"""``python -m benchmarks``: the main job (the embedded benchmark). See ``--help``.

A bad argument or a path that cannot be written is one line on stderr and exit 2
(``--debug``: the traceback); see :mod:`benchmarks._errors`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks._errors import USER_ERRORS, fail
from benchmarks.runner import METHODS, OPTIMIZERS, SETUPS, method_choices
from benchmarks.runner._job import plan_job, run_job


def embedded_parser() -> argparse.ArgumentParser:
    """The main job's argument parser (the choices come from the registries)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Every method of the comparison (single modalities, naive fusion, dropout, "
        "pre-training, early stopping, auxiliary losses, uncertainty weighting, an ensemble of "
        "single-modality models, OGM-GE, G-Blend offline and online) on the embedded datasets "
        "(offline, CPU). Writes a Markdown + JSON report and plots to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(SETUPS),
        default=list(SETUPS),
        metavar="NAME",
        help=f"datasets, from: {', '.join(SETUPS)}",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"methods (default: all), from: {', '.join(method_choices())}",
    )
    parser.add_argument("--optimizers", nargs="+", choices=OPTIMIZERS, default=["sgd"])
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds 0..N-1 for every dataset (default: each dataset's own, 10 for the cheap "
        "regimes synthetic_av, digits_small and mfeat_small, 3 for mfeat and digits)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="override every dataset's epochs")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: the models are small)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="runs in parallel, one process each (the runs are independent and seeded)",
    )
    parser.add_argument(
        "--metric", choices=("error", "loss"), default="error", help="what G-Blend measures"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("reports"), help="run folder: report, JSON and plots"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--docs",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the documentation page (docs/benchmark.md) from this run",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an input or file error (default: one line)",
    )
    return parser


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse, before any run, output paths that cannot be written."""
    if args.out.exists() and not args.out.is_dir():
        raise NotADirectoryError(
            f"--out {str(args.out)!r} is a file, not a folder; give a folder for the run "
            "(it is created if missing)."
        )
    if args.docs is not None:
        if args.docs.is_dir():
            raise IsADirectoryError(
                f"--docs {str(args.docs)!r} is a folder; give the page's file, e.g. "
                "docs/benchmark.md."
            )
        if not args.docs.parent.is_dir():
            raise FileNotFoundError(
                f"--docs {str(args.docs)!r}: the folder {str(args.docs.parent)!r} does not "
                "exist; create it or give another path."
            )


def _check_methods(parser: argparse.ArgumentParser, names: Sequence[str] | None) -> None:
    for name in names or ():
        if name == "single" or name in METHODS:
            continue
        if name.startswith("single:") and len(name) > len("single:"):
            continue  # checked against each dataset's modalities by the job
        parser.error(
            f"argument --methods: invalid choice: {name!r} (choose from "
            f"{', '.join(method_choices())})"
        )


def embedded_main(argv: Sequence[str]) -> int:
    """The embedded main job."""
    parser = embedded_parser()
    args = parser.parse_args(list(argv))
    if args.seeds is not None and args.seeds < 1:
        parser.error("argument --seeds: should be >= 1")
    if args.epochs is not None and args.epochs < 1:
        parser.error("argument --epochs: should be >= 1")
    if args.threads < 1:
        parser.error("argument --threads: should be >= 1")
    if args.jobs < 1:
        parser.error("argument --jobs: should be >= 1")
    _check_methods(parser, args.methods)
    try:
        plan_job(args.datasets, args.methods)  # single:<m> with a modality no dataset has
    except ValueError as error:
        parser.error(str(error))
    try:
        _check_paths(args)
        run_job(args, argv=list(argv))
    except USER_ERRORS as error:
        if args.debug:
            raise
        fail(parser.prog, error)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``argv[0]`` names a sub-command, else the embedded main job runs."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # `python -m benchmarks train CONFIG ...` (docs/training.md)
        from benchmarks.train import main as train_main

        return train_main(argv[1:])
    return embedded_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
