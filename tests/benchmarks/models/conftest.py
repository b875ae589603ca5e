"""Fixtures shared by the model tests: the model table is computed once per test run."""

import pytest
from filelock import FileLock  # a dependency of torch

from benchmarks.models import summary_table


@pytest.fixture(scope="session")
def model_table(tmp_path_factory, worker_id) -> str:
    """``summary_table()`` of every registered model (meta device, ~25 s of CPU), computed once and
    shared by the pytest-xdist workers through a file (the pattern of pytest-xdist's docs)."""
    if worker_id == "master":  # not under xdist
        return summary_table()
    shared = tmp_path_factory.getbasetemp().parent / "model_table.md"
    with FileLock(f"{shared}.lock"):
        if not shared.is_file():
            shared.write_text(summary_table())
        return shared.read_text()


@pytest.fixture(scope="session")
def model_rows(model_table) -> dict[str, tuple[float, float, str]]:
    """name -> (parameters in millions, GFLOPs, input size), parsed from the table."""
    out = {}
    for line in model_table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0].strip("`")] = (float(cells[1]), float(cells[2]), cells[3])
    return out
