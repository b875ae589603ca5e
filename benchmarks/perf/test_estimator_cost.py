"""pytest-benchmark: per-step cost of each estimation mode against the plain optimizer.

One benchmark per entry of ``benchmarks.perf._estimator_cost.MODES``, all in one group and one
run (``python -m pytest benchmarks/perf/test_estimator_cost.py --benchmark-only``). Each round
is one epoch (= one super-epoch of ``Online(every=1)`` for the exact modes, estimate
included), so the per-step cost is the epoch time / steps; ``conftest.py`` prints the
per-step ratios to the plain optimizer at the end of the run. The modes run one after the
other, so on a loaded machine their ratios move with the load; for ratios measured round by
round, interleaved, use ``benchmarks.perf._estimator_cost.run_modes`` (as its smoke test does).
"""

import pytest

from benchmarks.perf._estimator_cost import MODES, make_setup

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.benchmark(group="estimator cost: small late-fusion MLP, 16 steps of batch 64, SGD")
def test_estimator_cost(benchmark, mode):
    setup = make_setup()
    benchmark.extra_info["steps"] = setup.steps
    benchmark.pedantic(MODES[mode](setup), rounds=8, warmup_rounds=1)
