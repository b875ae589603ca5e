"""BlendWeights (the masked blend and the time-average) and NonFiniteMonitor, piece by piece."""

import math
import warnings

import pytest
import torch

import blendopt
from blendopt._finite import NonFiniteMonitor
from blendopt._weighting import (
    BlendWeights,
    check_heads,
    check_keys,
    check_weights,
)

HEADS = ["a", "b", "c"]


def _losses(*values):
    return [torch.tensor(v, requires_grad=True) for v in values]


def test_blend_is_the_weighted_sum_by_hand():
    w = BlendWeights(HEADS, {"a": 0.5, "b": 0.25, "c": 0.25})
    values = _losses(2.0, 4.0, 8.0)
    blended, detached = w.blend(values)
    assert blended.item() == pytest.approx(0.5 * 2 + 0.25 * 4 + 0.25 * 8)  # 4.0
    assert detached.tolist() == [2.0, 4.0, 8.0]
    assert not detached.requires_grad
    blended.backward()
    assert [v.grad.item() for v in values] == [0.5, 0.25, 0.25]


def test_zero_weight_heads_are_masked_out_of_value_and_graph():
    w = BlendWeights(HEADS, {"a": 0.0, "b": 0.5, "c": 0.5})
    values = _losses(math.inf, 4.0, 8.0)
    blended, detached = w.blend(values)
    assert blended.item() == 6.0  # not 0·inf = nan
    assert math.isinf(detached[0].item())  # still recorded
    blended.backward()
    assert values[0].grad is None  # head a is not in the graph at all
    assert [v.grad.item() for v in values[1:]] == [0.5, 0.5]
    assert w.active_mask(torch.device("cpu")).tolist() == [False, True, True]


def test_average_by_hand_over_two_weight_changes():
    w = BlendWeights(HEADS, {"a": 1.0, "b": 0.0, "c": 0.0})
    w.set({"a": 0.0, "b": 1.0, "c": 0.0}, step=2)  # a for steps 0-1
    w.set({"a": 0.0, "b": 0.0, "c": 1.0}, step=5)  # b for steps 2-4
    # c for steps 5-9: (2·a + 3·b + 5·c) / 10
    assert w.average(step=10) == pytest.approx({"a": 0.2, "b": 0.3, "c": 0.5})
    restored = BlendWeights(HEADS, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    restored.load_state_dict(w.state_dict())
    assert restored.average(step=10) == w.average(step=10)
    assert restored.values == w.values


def test_check_user_weights_warns_only_when_the_sum_is_not_one():
    assert check_weights({"a": 0.2, "b": 0.3, "c": 0.5}, HEADS, warn_sum=True) == {
        "a": 0.2,
        "b": 0.3,
        "c": 0.5,
    }
    with pytest.warns(blendopt.warnings.WeightSumWarning, match="sums to 0.5"):
        check_weights({"a": 0.1, "b": 0.1, "c": 0.3}, HEADS, warn_sum=True)


def test_monitor_counts_without_sync_and_reports_the_step_range():
    m = NonFiniteMonitor(HEADS)
    active = torch.tensor([True, True, False])
    finite = torch.tensor([True, True, True])
    m.record(finite, active, step=4)
    assert m.pending
    assert m.report("here", to_step=5) is None  # all finite: nothing reported
    assert not m.pending
    m.record(torch.tensor([True, True, False]), active, step=5)  # c at weight 0
    m.record(torch.tensor([True, True, False]), active, step=7)
    with pytest.warns(
        blendopt.warnings.NonFiniteLossWarning, match=r"steps 5-7 .*'c' 2 of 2 steps"
    ):
        event = m.report("here", to_step=8)
    assert event["heads"] == {"c": {"count": 2, "weighted": 0, "first_step": 5, "last_step": 7}}
    m.record(torch.tensor([False, True, True]), active, step=9)  # a at weight > 0
    saved = m.state_dict()
    again = NonFiniteMonitor(HEADS)
    again.load_state_dict(saved)
    with pytest.raises(FloatingPointError, match=r"steps 9-9 .*'a' 1 of 1 steps"):
        again.report("after resume", to_step=10)
    assert len(again.events) == 2


def test_unmasked_blend_keeps_zero_weight_heads_as_zero_times_loss():
    w = BlendWeights(HEADS, {"a": 0.0, "b": 0.5, "c": 0.5}, mask=False)
    values = _losses(3.0, 4.0, 8.0)
    blended, _ = w.blend(values)
    assert blended.item() == 6.0
    blended.backward()
    assert [v.grad.item() for v in values] == [0.0, 0.5, 0.5]  # a is in the graph, grad 0
    assert w.active_mask(torch.device("cpu")).tolist() == [True, True, True]


@pytest.mark.parametrize(
    ("heads", "error", "match"),
    [
        ("rgb", TypeError, "list of head names"),
        ([], ValueError, "at least one head"),
        (["a", 1], TypeError, "hold strings"),
        (["a", "b", "a"], ValueError, "'a' twice"),
    ],
)
def test_check_heads_names_the_problem(heads, error, match):
    with pytest.raises(error, match=match):
        check_heads(heads)


def test_check_heads_returns_a_list():
    assert check_heads(("a", "b")) == ["a", "b"]


@pytest.mark.parametrize(
    ("values", "returned", "error", "match"),
    [
        ([1.0], False, TypeError, "Parameter `w` should be a mapping head -> float"),
        ({"a": 1.0}, False, ValueError, "Parameter `w` has no weight for head 'b'"),
        ({"a": 1, "b": 1, "x": 1}, False, ValueError, "Parameter `w` names the unknown head 'x'"),
        ([1.0], True, TypeError, "`w` should return a mapping head -> value"),
        (
            {"a": 1.0},
            True,
            ValueError,
            r"`w` returned no value for head 'b' \(heads: \['a', 'b'\]\)",
        ),
        ({"a": 1, "b": 1, "x": 1}, True, ValueError, "`w` returned the unknown head 'x'"),
    ],
)
def test_check_keys_for_parameters_and_returned_mappings(values, returned, error, match):
    with pytest.raises(error, match=match):
        check_keys(values, ["a", "b"], "w", returned=returned)
    check_keys({"b": 0, "a": 0}, ["a", "b"], "w", returned=returned)  # order does not matter


def test_check_weights_warns_about_the_sum_only_when_asked():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_weights({"a": 2.0, "b": 1.0}, ["a", "b"]) == {"a": 2.0, "b": 1.0}
    with pytest.warns(blendopt.warnings.WeightSumWarning, match="sums to 3"):
        check_weights({"a": 2.0, "b": 1.0}, ["a", "b"], warn_sum=True)
