"""docs/api.md is generated from the docstrings and must be current; docstring examples run."""

import doctest
import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import blendopt

ROOT = Path(__file__).resolve().parents[2]


def test_api_reference_is_current():
    result = subprocess.run(
        [sys.executable, "docs/gen_api.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's blendopt
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", [m.name for m in pkgutil.iter_modules(blendopt.__path__)])
def test_docstring_examples(name):
    module = importlib.import_module(f"blendopt.{name}")
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
