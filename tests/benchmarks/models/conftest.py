"""Fixtures shared by the model tests: the model table is computed once per session."""

import pytest

from benchmarks.models import summary_table


@pytest.fixture(scope="session")
def model_table() -> str:
    """``summary_table()`` of every registered model (meta device, a few seconds)."""
    return summary_table()


@pytest.fixture(scope="session")
def model_rows(model_table) -> dict[str, tuple[float, float, str]]:
    """name -> (parameters in millions, GFLOPs, input size), parsed from the table."""
    out = {}
    for line in model_table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0].strip("`")] = (float(cells[1]), float(cells[2]), cells[3])
    return out
