"""Run PyTorch Lightning's own tests with every torch.optim optimizer wrapped in a GradientBlender.

Lightning's tests (``tests/tests_pytorch`` of the Lightning-AI/pytorch-lightning repository) ship
in neither the ``pytorch-lightning`` nor the ``lightning`` wheel or sdist. Given that folder from
a checkout (at the tag of the installed version), this runs the selected test files twice, each
in a fresh pytest process:

- ``plain``: as Lightning runs them;
- ``wrapped``: every optimizer class of ``torch.optim`` (``SGD``, ``Adam``, ...) is replaced by a
  subclass of the same name whose construction returns
  ``GradientBlender(optimizer, heads=["x"], estimator={"x": 1.0})``, and
  ``blendopt.integrations.lightning`` is imported, as docs/integrations.md tells users to.

Where only the standalone ``pytorch_lightning`` is installed, the tests' ``lightning.pytorch`` and
``lightning.fabric`` imports are mapped to ``pytorch_lightning`` and ``lightning_fabric`` (the same
module objects, so ``mock.patch`` targets hit them). It prints the outcome counts of both runs and
every test that passes plain but not wrapped, and exits with status 1 if there is one.

Usage (``make test-lightning LIGHTNING_TESTS=path/to/tests/tests_pytorch`` runs the defaults)::

    PYTHONPATH=. python -m tests.torch_optim.lightning_upstream path/to/tests_pytorch
    PYTHONPATH=. python -m tests.torch_optim.lightning_upstream path/to/tests_pytorch \\
        callbacks/test_lr_monitor.py -k "single_lr"

This module is also the pytest plugin both runs load; ``BLENDOPT_UPSTREAM_MODE`` configures it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

from tests.torch_optim.upstream import (  # the outcome hooks are this plugin's too
    MODE_VARIABLE,
    pytest_runtest_logreport,  # noqa: F401
    pytest_sessionfinish,  # noqa: F401
    report,
    run_pytest,
)

#: The files of Lightning's optimizer contract (relative to ``tests_pytorch``).
DEFAULT_SELECTION = (
    "core/test_lightning_optimizer.py",
    "trainer/optimization",
    "callbacks/test_lr_monitor.py",
    "checkpointing/test_trainer_checkpoint.py",
)
_ALIASES = {"lightning.pytorch": "pytorch_lightning", "lightning.fabric": "lightning_fabric"}


class _StandaloneAlias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import ``lightning.pytorch.X`` as ``pytorch_lightning.X`` (the same module object)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name == "lightning" or any(
            name == alias or name.startswith(alias + ".") for alias in _ALIASES
        ):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if spec.name == "lightning":
            package = types.ModuleType("lightning")
            package.__path__ = []
            return package
        for alias, real in _ALIASES.items():
            if spec.name == alias or spec.name.startswith(alias + "."):
                return importlib.import_module(real + spec.name[len(alias) :])
        raise ImportError(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """The module is already executed under its real name."""


def wrapping_class(optim_cls: type) -> type:
    """A subclass of ``optim_cls`` with its name whose construction returns a blender.

    ``StandIn(...)`` returns ``GradientBlender(inner, heads=["x"], estimator={"x": 1.0})`` where
    ``inner`` is an instance of the subclass built as ``optim_cls(...)``: a test's
    ``mock.patch("torch.optim.SGD.step")`` patches the class of the optimizer the blender steps.
    """
    from blendopt import GradientBlender

    def new(cls: type, *args: Any, **kwargs: Any) -> GradientBlender:
        inner = object.__new__(cls)
        inner.__init__(*args, **kwargs)  # optim_cls.__init__
        return GradientBlender(inner, heads=["x"], estimator={"x": 1.0})

    namespace = {"__new__": new, "__module__": optim_cls.__module__, "__doc__": optim_cls.__doc__}
    stand_in = type(optim_cls.__name__, (optim_cls,), namespace)
    stand_in.__qualname__ = optim_cls.__qualname__
    return stand_in


def wrap_every_optimizer() -> list[str]:
    """Replace each ``torch.optim.<Optimizer subclass>`` by :func:`wrapping_class`'s stand-in."""
    import torch

    names = []
    for name in torch.optim.__all__:
        cls = getattr(torch.optim, name, None)
        if (
            isinstance(cls, type)
            and issubclass(cls, torch.optim.Optimizer)
            and cls is not torch.optim.Optimizer
        ):
            setattr(torch.optim, name, wrapping_class(cls))
            names.append(name)
    return names


# -- pytest plugin (loaded with -p in both runs) ---------------------------------------------


def _configure_imports() -> None:
    if os.environ.get(MODE_VARIABLE) is None:
        return
    if importlib.util.find_spec("lightning") is None:
        sys.meta_path.insert(0, _StandaloneAlias())


_configure_imports()  # before pytest imports Lightning's conftest


def pytest_configure(config: Any) -> None:
    mode = os.environ.get(MODE_VARIABLE)
    if mode is None:
        return
    import torch

    torch.set_num_threads(1)
    if mode == "wrapped":
        import blendopt.integrations.lightning  # noqa: F401  (what users are told to import)

        wrap_every_optimizer()


# -- driver -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests_pytorch", type=Path, help="Lightning's tests/tests_pytorch folder")
    parser.add_argument(
        "selection", nargs="*", help=f"files or folders in it (default: {DEFAULT_SELECTION})"
    )
    parser.add_argument("-k", "--keyword", help="pytest -k expression")
    parser.add_argument("--pytest-args", default="", help="more pytest arguments, one string")
    args = parser.parse_args(argv)
    folder = args.tests_pytorch.resolve()
    if not (folder / "__init__.py").is_file() or folder.name != "tests_pytorch":
        parser.error(
            f"{folder} is not Lightning's tests/tests_pytorch folder (a package named "
            "tests_pytorch); pass that folder of a Lightning-AI/pytorch-lightning checkout"
        )
    selection = [str(folder / path) for path in (args.selection or DEFAULT_SELECTION)]
    missing = [path for path in selection if not Path(path).exists()]
    if missing:
        parser.error(f"not in {folder}: {missing}")
    pytest_args = [*selection, *(["-k", args.keyword] if args.keyword else [])]
    pytest_args += args.pytest_args.split()
    import pytorch_lightning
    import torch

    outcomes, seconds = {}, {}
    for mode in ("plain", "wrapped"):
        outcomes[mode], seconds[mode] = run_pytest(
            pytest_args,
            mode,
            plugin="tests.torch_optim.lightning_upstream",
            cwd=folder.parent,
            pythonpath=[str(folder.parent)],
        )
    print(
        f"\nLightning tests: {folder}; pytorch_lightning {pytorch_lightning.__version__}, "
        f"torch {torch.__version__}"
    )
    print(
        f"Selection: {args.selection or list(DEFAULT_SELECTION)}"
        + (f" -k {args.keyword!r}" if args.keyword else "")
    )
    return report(outcomes, seconds)


if __name__ == "__main__":
    sys.exit(main())
