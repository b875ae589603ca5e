"""Offline (Algorithm 2) and online (Algorithm 3) schedules."""

import pytest

from blendopt import Offline, Online


def test_offline_estimates_once_at_the_start():
    s = Offline(horizon=40)
    assert [p for p in range(100) if s.is_due(p)] == [0]
    assert s.horizon(0) == 40
    assert Offline().horizon(0) is None


def test_online_paper_schedule_warmup_10_then_every_5():
    s = Online(every=5, warmup=10)
    assert [p for p in range(31) if s.is_due(p)] == [0, 10, 15, 20, 25, 30]
    assert s.horizon(0) == 10
    assert s.horizon(15) == 5


def test_online_warmup_defaults_to_every():
    s = Online(every=3, unit="step")
    assert [p for p in range(10) if s.is_due(p)] == [0, 3, 6, 9]
    assert s.unit == "step"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: Online(every=0), "`every` should be an int >= 1. Found 0"),
        (lambda: Online(every=2, warmup=-1), "`warmup`"),
        (lambda: Online(every=2.5), "`every`"),
        (lambda: Offline(horizon=0), "`horizon`"),
        (lambda: Offline(unit="epochs"), "'epoch' or 'step'. Found 'epochs'"),
    ],
)
def test_bad_schedules_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()
