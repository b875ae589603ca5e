"""``python -m benchmarks train CONFIG --data-root DIR --out RUN_DIR [...]``.

Exit codes: 0 done; 1 the run diverged (the run folder keeps ``divergence.json``, a report
and its last good checkpoint); 2 a user-input or data error, printed as one line with the fix
(``--debug``: the traceback); 3 ``--stop-after-steps`` reached. See docs/training.md.
"""

from __future__ import annotations

import argparse
import sys

import torch

from benchmarks._errors import USER_ERRORS, fail, is_main_rank
from benchmarks.train._config import load_config
from benchmarks.train._loop import DivergedError, StopRequestedError, run_training
from benchmarks.train._report import choice_line

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``train`` sub-command's arguments."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks train",
        description="Train a paper config (benchmarks/configs/*.toml) on a dataset on disk. "
        "See docs/training.md.",
    )
    p.add_argument("config", help="a TOML config, e.g. benchmarks/configs/kinetics_rgb_audio.toml")
    p.add_argument("--data-root", required=True, help="the dataset's folder")
    p.add_argument("--out", required=True, help="the run folder (checkpoint, logs, report)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--smoke", action="store_true", help="tiny models and clips, 2 epochs (seconds on a CPU)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="TABLE.KEY=VALUE",
        help="override a config key (repeatable), e.g. --set train.epochs=10",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if any)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    p.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of a config, data or checkpoint error (default: one line)",
    )
    p.add_argument(
        "--stop-after-steps", type=int, default=None, help=argparse.SUPPRESS
    )  # debugging: simulate a run killed after N steps
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, train; return the exit code (see the module's docstring).

    Raises:
        SystemExit: 2 on a bad argument or a user-input or data error (one line on stderr).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads should be >= 1. Found {args.threads}.")
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(args.config, args.overrides, smoke=args.smoke)
        report = run_training(
            cfg,
            args.data_root,
            args.out,
            resume=args.resume,
            device=args.device,
            stop_after_steps=args.stop_after_steps,
            progress=not args.no_progress,
        )
    except StopRequestedError as exc:
        if args.debug:
            raise
        print(exc, file=sys.stderr)
        return 3
    except DivergedError as exc:
        if args.debug:
            raise
        if is_main_rank():
            print(f"{parser.prog}: diverged: {exc}", file=sys.stderr, flush=True)
        return 1
    except USER_ERRORS as exc:
        if args.debug:
            raise
        fail(parser.prog, exc)
    if not is_main_rank():
        return 0
    head = report["predictors"]["method_head"]
    key = report["primary_metric"]
    print(f"{report['name']}: test {key} of head {head!r} = {100 * report['test'][head][key]:.1f}")
    if "choice" in report["predictors"]:
        print(choice_line(report["predictors"]["choice"]))
    print(f"report: {args.out}/report.md")
    return 0
