"""One cell of the optimizer comparison (the paper's Table 3 at CPU scale) and its record."""

from __future__ import annotations

import warnings
from typing import Any

import blendopt
from benchmarks.runner import METHODS, SETUPS, Method, RunResult, run_one

DATASET = "synthetic_av"  # embedded, in the paper's regime (naive fusion below visual alone)
OPTIMIZER_NAMES = ("sgd", "adam", "adagrad")
#: The methods compared per optimizer (Table 3: the best modality alone, naive fusion,
#: G-Blend); the cheap estimator's method joins here at merge.
TABLE3_METHODS = [
    "single:visual",
    "naive",
    "gblend_offline",
    "gblend_online",
    "gblend_rolling",
]


def run_case(
    optimizer: str,
    method: str,
    *,
    seed: int = 0,
    epochs: int | None = None,
    data: Any = None,
) -> tuple[RunResult, int]:
    """Train ``method`` with ``optimizer`` on :data:`DATASET`; returns the run and the number
    of blendopt warnings (rejected estimates, zeroed heads) it raised."""
    chosen = (
        Method(method, "single", method.split(":", 1)[1])
        if method.startswith("single:")
        else METHODS[method]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", blendopt.BlendWarning)
        result = run_one(
            SETUPS[DATASET],
            chosen,
            optimizer=optimizer,
            seed=seed,
            epochs=epochs,
            data=data,
        )
    count = sum(issubclass(w.category, blendopt.BlendWarning) for w in caught)
    return result, count


def extra_info(result: RunResult, warning_count: int) -> dict[str, Any]:
    """What the benchmark records in ``benchmark.extra_info`` (read by ``table3``)."""
    return {
        "table3": True,
        "dataset": result.dataset,
        "optimizer": result.optimizer,
        "method": result.method,
        "seed": result.seed,
        "accuracy": {
            "own": result.accuracy,
            # A single-modality run never trains the fused head: no fused number for it.
            "fused": None if result.method.startswith("single:") else result.head_accuracy["fused"],
            "ensemble": result.ensemble_accuracy,
            "ensemble_avg": result.ensemble_avg_accuracy,
            "selected": result.selected_accuracy,
            "selected_on_v": result.selected,
        },
        # Why: blendopt's PredictorChoice records (prediction weights, then predictor) on V.
        "prediction": result.prediction,
        "selection": result.selection,
        "weights": result.weights,
        "average_weights": result.average_weights,
        "steps": result.steps,
        "cpu_seconds": result.cpu_seconds,
        "diverged": result.diverged,
        "blendopt_warnings": warning_count,
    }
