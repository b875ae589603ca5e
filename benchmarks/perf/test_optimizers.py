"""pytest-benchmark: the paper's Table 3 at CPU scale (optimizer × method on synthetic_av).

SGD with momentum, Adam and AdaGrad × {visual alone, naive fusion, G-Blend offline, G-Blend
online}, one training run each (``pedantic``, 1 round: the wall time of a whole run, G-Blend's
estimates included). ``benchmark.extra_info`` records every predictor's test accuracy, the
weights, the seed and the run's CPU time. ``make bench`` runs it and prints the table with
``python -m benchmarks.perf.table3``.

Compare two versions of the library::

    python -m pytest benchmarks/perf/test_optimizers.py --benchmark-only --benchmark-save=before
    # ... change the library ...
    python -m pytest benchmarks/perf/test_optimizers.py --benchmark-only \\
        --benchmark-save=after --benchmark-compare=0001
    python -m benchmarks.perf.table3 .benchmarks/*/0001_before.json .benchmarks/*/0002_after.json
"""

import pytest

from benchmarks.perf._table3 import OPTIMIZER_NAMES, TABLE3_METHODS, extra_info, run_case

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.mark.parametrize("method", TABLE3_METHODS)
@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_optimizer_comparison(benchmark, optimizer, method):
    benchmark.group = f"Table 3 (synthetic_av), {optimizer}"
    result, warnings = benchmark.pedantic(
        run_case, args=(optimizer, method), rounds=1, iterations=1
    )
    benchmark.extra_info.update(extra_info(result, warnings))
    assert 0.0 <= result.accuracy <= 1.0
