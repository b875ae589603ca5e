"""The shared records: estimate events as fields, the non-finite record, the reduce helper."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from blendopt._distributed import reduce_sum, reduced_floats, unwrap_model
from blendopt._estimate import BlendEstimate
from blendopt._finite import NonFiniteRecord
from blendopt._math import blend_estimate
from blendopt._warnings import warn_estimate
from blendopt.warnings import (
    DivergedCopyWarning,
    FlooredOverfittingWarning,
    RejectedEstimateWarning,
    ZeroedHeadWarning,
)


def _estimate(*, accepted: bool = True, **events) -> BlendEstimate:
    return BlendEstimate(
        {"a": 1.0, "b": 0.0},
        {"a": 0.1, "b": -0.1},
        {"a": 0.2, "b": 0.0},
        accepted=accepted,
        **events,
    )


def test_event_fields_default_empty_and_round_trip():
    plain = _estimate()
    assert (plain.floored, plain.zeroed, plain.diverged) == ((), (), {})
    assert (plain.skipped_batches, plain.rejected) == (0, None)
    full = _estimate(
        floored=("a",),
        zeroed=("b",),
        diverged={"c": "non-finite loss at step 12, epoch 0"},
        skipped_batches=3,
        rejected="no head generalized",
    )
    assert BlendEstimate.from_dict(full.to_dict()) == full


def test_from_dict_of_a_dict_saved_before_the_event_fields():
    old = _estimate().to_dict()
    for key in ("floored", "zeroed", "diverged", "skipped_batches", "rejected"):
        del old[key]
    assert BlendEstimate.from_dict(old) == _estimate()


def test_blend_estimate_fills_the_event_fields():
    before = {"a": 1.0, "b": 1.0, "c": 1.0}
    est = blend_estimate(
        before,
        before,
        {"a": 0.5, "b": 1.0, "c": 0.5},
        {"a": 0.5, "b": 1.5, "c": 0.6},
        warn=False,
    )
    assert est.accepted
    assert est.rejected is None
    assert est.zeroed == ("b",)
    assert est.floored == ("a",)  # dO = 0 exactly
    rejected = blend_estimate(before, before, before, dict.fromkeys(before, 2.0), warn=False)
    assert not rejected.accepted
    assert rejected.rejected == "no head generalized (every dG <= 0)"


def test_reduced_floats_packs_in_order_in_one_process():
    values = reduced_floats([torch.tensor([[1.0, 2.0]]), 3, torch.tensor(4.5)], mean=True)
    assert values == [1.0, 2.0, 3.0, 4.5]
    assert reduced_floats([]) == []
    out = reduce_sum(torch.tensor([1, 2], dtype=torch.int32))
    assert out.dtype == torch.float64
    assert out.tolist() == [1.0, 2.0]


def test_unwrap_model_sees_through_nested_wrappers():
    net = nn.Linear(2, 2)
    assert unwrap_model(nn.DataParallel(nn.DataParallel(net))) is net
    compiled_like = nn.Module()
    compiled_like._orig_mod = nn.DataParallel(net)  # what torch.compile's wrapper holds
    assert unwrap_model(compiled_like) is net
    assert unwrap_model(net) is net


def test_nonfinite_record_counts_steps_and_first_values():
    record = NonFiniteRecord(3)
    assert not record.pending
    assert record.flagged is None
    nan, inf = float("nan"), float("inf")
    for step, row in enumerate([[1.0, nan, 2.0], [inf, nan, 2.0], [1.0, 1.0, 2.0]]):
        values = torch.tensor(row)
        record.record(
            torch.isfinite(values),
            step + 10,
            active=torch.tensor([True, False, True]),
            values=values,
        )
    assert record.flagged.tolist() == [True, True, False]
    read = record.read()
    assert read.count == [1, 2, 0]
    assert read.weighted == [1, 0, 0]
    assert read.first == [11, 10, None]
    assert read.last == [11, 11, None]
    assert read.first_value[0] == inf
    assert math.isnan(read.first_value[1])
    assert read.first_value[2] is None
    assert (read.steps, read.from_step, read.bad) == (3, 10, [0, 1])
    across = record.read(across_ranks=True)  # one process: nothing to add
    assert (across.count, across.weighted, across.first) == (read.count, read.weighted, read.first)


def test_nonfinite_record_one_slot_at_a_time_and_state_dict():
    record = NonFiniteRecord(2)
    record.record(torch.tensor(True), 0, slot=1)
    record.record(torch.tensor(False), 1, slot=1)
    record.record(torch.tensor(False), 2, slot=1)
    read = record.read()
    assert (read.count, read.first, read.last) == ([0, 2], [None, 1], [None, 2])
    copy = NonFiniteRecord(2)
    copy.load_state_dict(record.state_dict())
    assert copy.read() == read
    copy.load_counts(torch.tensor([3.0, 0.0]))
    assert copy.read().count == [3, 0]
    record.reset()
    assert record.read().count == [0, 0]
    assert not record.pending
    assert "NonFiniteRecord(size=2" in repr(record)


@pytest.mark.parametrize("with_values", [False, True])
def test_nonfinite_record_saves_first_values_only_when_recorded(with_values):
    record = NonFiniteRecord(1)
    record.record(
        torch.tensor([False]), 0, values=torch.tensor([math.inf]) if with_values else None
    )
    state = record.state_dict()
    assert ("first_value" in state) == with_values
    copy = NonFiniteRecord(1)
    copy.load_state_dict(state)
    assert copy.read().first_value == ([math.inf] if with_values else [None])


def _caught(estimate: BlendEstimate) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_estimate(estimate, "G-Blend estimate 3")
    return caught


def test_warnings_read_the_event_fields_not_the_notes():
    est = _estimate(
        notes=("prose that says floored to eps and copy diverged",),
        floored=("a",),
        zeroed=("b",),
        diverged={"c": "non-finite loss at step 12, epoch 0"},
    )
    caught = _caught(est)
    assert [w.category for w in caught] == [
        DivergedCopyWarning,
        ZeroedHeadWarning,
        FlooredOverfittingWarning,
    ]
    assert "head 'c': its copy diverged (non-finite loss at step 12, epoch 0)" in str(
        caught[0].message
    )
    assert "head 'b': dG = -0.1 <= 0" in str(caught[1].message)
    assert "'a'" in str(caught[2].message)
    assert _caught(_estimate(notes=("head 'b': floored to eps; copy diverged",))) == []


def test_a_rejected_estimate_warns_once_with_its_reason():
    caught = _caught(_estimate(accepted=False, rejected="no head generalized", zeroed=("b",)))
    assert [w.category for w in caught] == [RejectedEstimateWarning]
    assert "G-Blend estimate 3 rejected: no head generalized" in str(caught[0].message)
