"""pytest-benchmark: one whole main-job run per round, naive vs auxiliary vs ``gblend_rolling``.

``python -m pytest benchmarks/perf/test_rolling_run_cost.py --benchmark-only`` runs each
embedded dataset's naive, auxiliary (the same blended training path, every head at 1/K) and
``gblend_rolling`` runs (seed 0, one torch thread, the data loaded once); ``conftest.py``
prints each method's fastest round over naive's (the round with the least load), side by side
per dataset. The ratios move with the machine's load; nothing here asserts a time.
"""

import pytest

from benchmarks.runner import METHODS, SETUPS, run_one
from benchmarks.runner._job import _pair

DATASETS = ["synthetic_av", "mfeat", "digits", "digits_small", "mfeat_small"]
RUN_METHODS = ["naive", "auxiliary", "gblend_rolling"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.mark.parametrize("method", RUN_METHODS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_rolling_run_cost(benchmark, dataset, method):
    benchmark.group = f"run cost: {dataset}"
    benchmark.extra_info.update(dataset=dataset, method=method)
    data = _pair(dataset, 0)
    result = benchmark.pedantic(
        lambda: run_one(SETUPS[dataset], METHODS[method], data=data, seed=0),
        rounds=3,
        warmup_rounds=1,
    )
    benchmark.extra_info["steps"] = result.steps
