"""Run PyTorch's own optimizer tests with every optimizer wrapped in a GradientBlender.

PyTorch's ``test/test_optim.py`` (class ``TestOptimRenewed``) is not shipped in the torch wheel.
Given a copy of it, this runs its CPU tests twice, each in a fresh pytest process:

- ``plain``: as PyTorch runs them;
- ``wrapped``: every ``optim_db`` entry's ``optim_cls`` is replaced by a factory (same
  ``__name__``/``__module__``) that returns
  ``GradientBlender(optim_cls(params, **kwargs), heads=["x"], estimator={"x": 1.0})``.

It prints the outcome counts of both runs and every test that passes plain but not wrapped, and
exits with status 1 if there is one. The sibling test classes the file imports
(``optim.test_lrscheduler`` and friends, other files of PyTorch's test folder) are replaced by
empty stubs: they are not part of ``TestOptimRenewed``.

Usage (``make test-torch-optim TORCH_OPTIM_TEST=path/to/test_optim.py`` does the same)::

    PYTHONPATH=. python -m tests.torch_optim.upstream path/to/test_optim.py
    PYTHONPATH=. python -m tests.torch_optim.upstream path/to/test_optim.py -k "hook"

This module is also the pytest plugin both runs load (``-p tests.torch_optim.upstream``); the
``BLENDOPT_UPSTREAM_MODE`` and ``BLENDOPT_UPSTREAM_RESULTS`` environment variables configure it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path
from typing import Any

MODE_VARIABLE = "BLENDOPT_UPSTREAM_MODE"
RESULTS_VARIABLE = "BLENDOPT_UPSTREAM_RESULTS"
DEFAULT_KEYWORD = "TestOptimRenewedCPU and float32"
_SIBLINGS = {
    "optim.test_lrscheduler": "TestLRScheduler",
    "optim.test_optim": "TestDifferentiableOptimizer",
    "optim.test_swa_utils": "TestSWAUtils",
}


def wrapping_factory(optim_cls: type) -> Any:
    """A stand-in for ``optim_cls`` that builds the optimizer wrapped in a GradientBlender.

    Args:
        optim_cls: a ``torch.optim.Optimizer`` subclass.

    Returns:
        A callable with ``optim_cls``'s ``__name__``, ``__qualname__`` and ``__module__``
        (the tests branch on the name), whose ``wrapped_class`` attribute is ``optim_cls``.
    """
    from blendopt import GradientBlender

    def make(params: Any, *args: Any, **kwargs: Any) -> GradientBlender:
        return GradientBlender(
            optim_cls(params, *args, **kwargs), heads=["x"], estimator={"x": 1.0}
        )

    make.__name__ = optim_cls.__name__
    make.__qualname__ = optim_cls.__qualname__
    make.__module__ = optim_cls.__module__
    make.__doc__ = optim_cls.__doc__
    make.wrapped_class = optim_cls  # type: ignore[attr-defined]
    return make


def _stub_sibling_test_modules() -> None:
    package = sys.modules.setdefault("optim", types.ModuleType("optim"))
    package.__path__ = []  # type: ignore[attr-defined]
    for name, attribute in _SIBLINGS.items():
        module = types.ModuleType(name)
        setattr(module, attribute, None)
        sys.modules[name] = module


# -- pytest plugin ----------------------------------------------------------------------------

_outcomes: dict[str, str] = {}


def pytest_configure(config: Any) -> None:
    mode = os.environ.get(MODE_VARIABLE)
    if mode is None:
        return
    import torch

    torch.set_num_threads(1)
    _stub_sibling_test_modules()
    if mode == "wrapped":
        from torch.testing._internal.common_optimizers import optim_db

        for info in optim_db:
            info.optim_cls = wrapping_factory(info.optim_cls)


def pytest_runtest_logreport(report: Any) -> None:
    if os.environ.get(MODE_VARIABLE) is None:
        return
    if report.when == "call" or report.outcome != "passed":
        previous = _outcomes.get(report.nodeid)
        if previous in (None, "passed"):  # keep the first failure (setup, call or teardown)
            _outcomes[report.nodeid] = report.outcome


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    path = os.environ.get(RESULTS_VARIABLE)
    if path:
        Path(path).write_text(json.dumps(_outcomes, indent=0, sort_keys=True))


# -- driver (also used by tests/torch_optim/lightning_upstream.py) ----------------------------


def run_pytest(
    args: list[str], mode: str, *, plugin: str, cwd: Path, pythonpath: list[str]
) -> tuple[dict[str, str], float]:
    """Run ``pytest ARGS`` in a fresh process in ``mode`` with ``plugin``; outcome per test id.

    blendopt's pytest settings (warnings as errors, importlib mode) are left out: the process
    gets an empty ini file, and the repository root on its ``PYTHONPATH`` for the plugin.
    """
    root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n")
        env = dict(os.environ)
        paths = [*pythonpath, str(root), env.get("PYTHONPATH", "")]
        env.update(
            {
                MODE_VARIABLE: mode,
                RESULTS_VARIABLE: str(results),
                "PYTHONPATH": os.pathsep.join(filter(None, paths)),
                "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
            }
        )
        command = [sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(cwd)]
        command += ["-p", plugin, "-p", "no:cacheprovider", "-q", "--no-header", *args]
        start = time.perf_counter()
        completed = subprocess.run(command, env=env, cwd=cwd, check=False)
        seconds = time.perf_counter() - start
        if not results.exists():
            raise RuntimeError(
                f"pytest ({mode}) wrote no results; exit status {completed.returncode}"
            )
        return json.loads(results.read_text()), seconds


def report(outcomes: dict[str, dict[str, str]], seconds: dict[str, float]) -> int:
    """Print the counts of the ``plain`` and ``wrapped`` runs and the tests they disagree on.

    Returns:
        1 if a test passes plain but not wrapped, else 0.
    """
    for mode in ("plain", "wrapped"):
        counts = Counter(outcomes[mode].values())
        summary = ", ".join(
            f"{counts[k]} {k}" for k in ("passed", "failed", "skipped") if counts[k]
        )
        print(f"  {mode:8s} {summary} in {seconds[mode]:.0f} s")
    regressions = sorted(
        test
        for test, outcome in outcomes["plain"].items()
        if outcome == "passed" and outcomes["wrapped"].get(test) != "passed"
    )
    for test in regressions:
        print(f"  passes plain, {outcomes['wrapped'].get(test, 'missing')} wrapped: {test}")
    print(f"  {len(regressions)} tests pass plain but not wrapped")
    gains = sorted(
        test
        for test, outcome in outcomes["wrapped"].items()
        if outcome == "passed" and outcomes["plain"].get(test) != "passed"
    )
    for test in gains:
        print(f"  passes wrapped, {outcomes['plain'].get(test, 'missing')} plain: {test}")
    print(f"  {len(gains)} tests pass wrapped but not plain")
    return 1 if regressions else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_file", type=Path, help="a copy of pytorch/pytorch test/test_optim.py")
    parser.add_argument("-k", "--keyword", default=DEFAULT_KEYWORD, help="pytest -k expression")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    test_file = args.test_file.resolve()
    if not test_file.is_file():
        parser.error(f"{test_file} is not a file; pass a copy of PyTorch's test/test_optim.py")
    import torch

    outcomes, seconds = {}, {}
    for mode in ("plain", "wrapped"):
        outcomes[mode], seconds[mode] = run_pytest(
            [str(test_file), "-k", args.keyword, *args.pytest_args],
            mode,
            plugin="tests.torch_optim.upstream",
            cwd=test_file.parent,
            pythonpath=[],
        )
    digest = _sha256(test_file)[:16]
    print(f"\nUpstream file: {test_file} (sha256 {digest}), torch {torch.__version__}")
    print(f"Selection: -k {args.keyword!r}")
    return report(outcomes, seconds)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
