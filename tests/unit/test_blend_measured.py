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
