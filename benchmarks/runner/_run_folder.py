"""Reading a main-job run folder back (``embedded_benchmark.json``).

Its own module, below both the job (:mod:`benchmarks.runner._job`, which writes the folder)
and the documentation page (:mod:`benchmarks.runner.benchmark_doc`, which reads it), so that
neither imports the other to get at it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.runner._train import RunResult

__all__ = ["load_run"]


def load_run(path: Path) -> tuple[list[RunResult], dict[str, Any]]:
    """Read back a run folder's ``embedded_benchmark.json``: the runs and the job's metadata."""
    raw = json.loads(Path(path).read_text())
    return [RunResult(**r) for r in raw["runs"]], raw["meta"]
