"""pytest-benchmark: per-step time of GradientBlender vs ``sum(w*L).backward(); opt.step()``.

Run with ``make bench`` (or ``python -m pytest benchmarks/perf --benchmark-only``). Both
benchmarks are in one group, so the table compares them; the ratio of medians is printed at
the end of the run (see ``conftest.py``). The target is a median overhead <= 2%.
"""

import pytest

from benchmarks.perf._overhead import make_steps

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.mark.benchmark(group="step: small late-fusion MLP, batch 128, SGD-momentum")
def test_naive_summed_loss_step(benchmark):
    benchmark.pedantic(make_steps().naive, rounds=300, warmup_rounds=30)


@pytest.mark.benchmark(group="step: small late-fusion MLP, batch 128, SGD-momentum")
def test_gradient_blender_step(benchmark):
    benchmark.pedantic(make_steps().blend, rounds=300, warmup_rounds=30)
