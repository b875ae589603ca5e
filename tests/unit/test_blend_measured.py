"""The final blend of Algorithm 1 with diverged copies and skipped batches recorded."""

import math

import pytest

import blendopt
from blendopt.retrain import RetrainConfig, TrainReport, blend_measured

HEADS = ["a", "b", "c"]
BEFORE = ({"a": 1.0, "b": 1.0, "c": 1.0}, {"a": 1.2, "b": 1.2, "c": 1.2})


def test_a_diverged_head_gets_weight_zero_and_the_others_are_blended_by_hand():
    # O = V - T; before: O = 0.2 for every head.
    # a: dG = 1.2 - 1.0 = 0.2, dO = (1.0 - 0.6) - 0.2 = 0.2 -> 0.2 / 0.04 = 5
    # c: dG = 1.2 - 1.1 = 0.1, dO = (1.1 - 0.8) - 0.2 = 0.1 -> 0.1 / 0.01 = 10
    after = ({"a": 0.6, "c": 0.8}, {"a": 1.0, "c": 1.1})
    report = TrainReport(diverged={"b": "loss nan at step 3, epoch 0"}, empty_batches=2)
    with pytest.warns(blendopt.warnings.DivergedCopyWarning, match="head 'b'"):
        est = blend_measured(
            HEADS, BEFORE, after, report, RetrainConfig(eps=1e-6), empty_measuring=1
        )
    assert est.accepted
    assert est.weights == pytest.approx({"a": 5 / 15, "b": 0.0, "c": 10 / 15})
    assert math.isnan(est.generalization["b"])
    assert math.isnan(est.measurements["holdout_after"]["b"])
    assert est.measurements["train_before"]["b"] == 1.0
    assert est.notes[0] == (
        "head 'b': its copy diverged (loss nan at step 3, epoch 0) and stopped training; weight 0"
    )
    assert est.diverged == {"b": "loss nan at step 3, epoch 0"}
    assert est.skipped_batches == 3
    assert "skipped 3 empty batches (2 while training the copies, 1 while measuring)" in est.notes


def test_without_divergence_it_is_blend_estimate():
    after = ({"a": 0.5, "b": 0.9, "c": 0.8}, {"a": 1.0, "b": 1.5, "c": 1.1})
    with pytest.warns(blendopt.warnings.ZeroedHeadWarning):
        est = blend_measured(HEADS, BEFORE, after, TrainReport(), RetrainConfig(eps=1e-6))
    with pytest.warns(blendopt.warnings.ZeroedHeadWarning):
        ref = blendopt.functional.blend_estimate(*BEFORE, *after, eps=1e-6)
    assert est == ref


def test_every_head_diverged_rejects_with_the_fallback():
    report = TrainReport(diverged=dict.fromkeys(HEADS, "loss inf at step 0, epoch 0"))
    with pytest.warns(blendopt.warnings.DivergedCopyWarning):
        est = blend_measured(
            HEADS, BEFORE, ({}, {}), report, RetrainConfig(fallback={"a": 1, "b": 0, "c": 0})
        )
    assert not est.accepted
    assert est.weights == {"a": 1, "b": 0, "c": 0}
    assert "every head's copy diverged" in est.notes[-1]
    assert est.rejected == "every copy diverged"


# An error on |V| = 10 samples moves in steps of 0.1. Head a's measured dO is 0: dG = 0.2,
# dO = (0.6 - 0.4) - 0.2 = 0. Head b: dG = 0.1, dO = (0.9 - 0.5) - 0.2 = 0.2.
ERRORS_AFTER = ({"a": 0.4, "b": 0.5}, {"a": 0.6, "b": 0.9})
ERRORS_BEFORE = ({"a": 0.6, "b": 0.8}, {"a": 0.8, "b": 1.0})


def _blend_errors(scale: float = 1.0, **settings):
    scaled = [{h: scale * v for h, v in m.items()} for m in (*ERRORS_BEFORE, *ERRORS_AFTER)]
    with pytest.warns(blendopt.warnings.FlooredOverfittingWarning, match="'a'"):
        return blend_measured(
            ["a", "b"], tuple(scaled[:2]), tuple(scaled[2:]), TrainReport(),
            RetrainConfig(**settings),
        )  # fmt: skip


def test_resolution_floors_do_at_the_metrics_step():
    # Without it the relative eps floors a's dO² near 0 and a takes all the weight.
    relative = _blend_errors()
    assert relative.weights["a"] > 0.999
    # dO² floored at 0.1²: a = 0.2 / 0.01 = 20, b = 0.1 / 0.04 = 2.5.
    est = _blend_errors(resolution=0.1)
    assert est.weights == pytest.approx({"a": 20 / 22.5, "b": 2.5 / 22.5})
    assert est.floored == ("a",)
    assert est.accepted
    assert est.rejected is None
    assert any("below the metric's resolution 0.1" in n for n in est.notes)
    assert est.generalization == relative.generalization
    # Still scale-free: every value and the resolution x 1e3 give the same weights.
    scaled = _blend_errors(1e3, resolution=100.0)
    assert scaled.weights == pytest.approx(est.weights)


def test_resolution_keeps_the_relative_floor_above_it():
    # resolution² = 1e-12 is below the relative floor 1e-8 x 0.2² = 4e-10: the weights are
    # the plain rule's.
    est = _blend_errors(resolution=1e-6)
    assert est.weights == pytest.approx(_blend_errors().weights)
    assert est.floored == ("a",)


@pytest.mark.parametrize("value", [0.0, -0.1, float("inf"), "0.1"])
def test_bad_resolution_raises(value):
    with pytest.raises(ValueError, match="`resolution` should be a finite number > 0"):
        RetrainConfig(resolution=value)
    with pytest.raises(ValueError, match="`resolution` floors the plain rule"):
        RetrainConfig(resolution=0.1, noise_aware=True)


def test_blend_estimate_takes_the_resolution_floor_itself():
    # The functional form floors as Algorithm 1 does: the same weights, record and notes.
    with pytest.warns(blendopt.warnings.FlooredOverfittingWarning, match="'a'"):
        direct = blendopt.functional.blend_estimate(*ERRORS_BEFORE, *ERRORS_AFTER, resolution=0.1)
    via_config = _blend_errors(resolution=0.1)
    assert direct.weights == pytest.approx(via_config.weights)
    assert direct.floored == via_config.floored == ("a",)
    assert direct.notes == via_config.notes
    for value in (0.0, -0.1, float("inf"), "0.1"):
        with pytest.raises(ValueError, match="`resolution` should be a finite number > 0"):
            blendopt.functional.blend_estimate(*ERRORS_BEFORE, *ERRORS_AFTER, resolution=value)
