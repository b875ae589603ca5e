"""The estimator study and per-head gradient scripts: tables, the mfeat_small regime, smoke runs."""

import pytest
import torch

from benchmarks.perf import estimator_study, per_head_gradients


def _record(method, seed, seconds, acc, weights, trajectory=(), comparisons=()):
    return {
        "method": method,
        "seed": seed,
        "seconds": seconds,
        "cpu_seconds": seconds / 2,
        "fused": acc,
        "ensemble": acc + 0.1,
        "selected_acc": acc + 0.1,
        "heads": {"a": acc, "fused": acc},
        "weights": weights,
        "trajectory": list(trajectory),
        "comparisons": list(comparisons),
    }


def test_summary_means_and_time_ratios_by_hand():
    records = [
        _record("naive", 0, 1.0, 0.2, {"a": 0.0, "fused": 1.0}),
        _record("naive", 1, 2.0, 0.4, {"a": 0.0, "fused": 1.0}),
        _record("rolling", 0, 1.5, 0.3, {"a": 0.6, "fused": 0.4}),
        _record("rolling", 1, 2.0, 0.5, {"a": 0.8, "fused": 0.2}),
    ]
    table = estimator_study.summary(records, ["naive", "rolling"], [0, 1])
    row = next(line for line in table.splitlines() if line.startswith("| rolling"))
    # fused: mean 40.0, std of (30, 50) = 14.1; time ratios (1.5, 1.0) -> 1.25; weights mean
    assert "| 40.0 ± 14.1 |" in row
    assert "| 1.25 | 1.25 |" in row
    assert "a 0.70, fused 0.30" in row


def test_summary_names_the_predictors_chosen_on_v():
    records = [
        _record("naive", 0, 1.0, 0.2, {"a": 0.0, "fused": 1.0}),
        _record("naive", 1, 1.0, 0.2, {"a": 0.0, "fused": 1.0}),
        {**_record("rolling", 0, 1.0, 0.3, {"a": 0.5, "fused": 0.5}), "selected": "fused"},
        {**_record("rolling", 1, 1.0, 0.5, {"a": 0.5, "fused": 0.5}), "selected": "ensemble"},
    ]
    table = estimator_study.summary(records, ["naive", "rolling"], [0, 1])
    row = next(line for line in table.splitlines() if line.startswith("| rolling"))
    assert "| 50.0 ± 14.1 (ensemble/fused) |" in row


def test_trajectories_report_the_peak_and_the_comparison():
    rec = _record(
        "rolling",
        0,
        1.0,
        0.3,
        {"a": 0.5, "fused": 0.5},
        trajectory=[
            (0, "estimate", {"a": 0.5, "fused": 0.5}),
            (50, "estimate", {"a": 0.8, "fused": 0.2}),
        ],
        comparisons=[
            {
                "epoch": 3,
                "rolling": {"a": 0.5, "fused": 0.5},
                "exact": {"a": 1.0, "fused": 0.0},
                "exact_accepted": True,
            }
        ],
    )
    text = estimator_study.trajectories([rec])
    assert "(max weight 0.80): 0:0.50/0.50 50:0.80/0.20" in text
    assert "| 0 | 3 | a 0.50, fused 0.50 | a 1.00, fused 0.00 |" in text


def test_mfeat_small_keeps_20_digits_per_class():
    train = estimator_study.STUDY_SETUPS["mfeat_small"].load("train", 0)
    assert len(train) == 200
    assert torch.bincount(train.targets).tolist() == [20] * 10
    assert list(train.modalities) == ["pix", "zer"]
    other = estimator_study.STUDY_SETUPS["mfeat_small"].load("train", 1)
    assert not torch.equal(train.tensors["pix"], other.tensors["pix"]), "seeded choice"


@pytest.mark.slow
def test_a_rolling_run_on_mfeat_small(capsys):
    rec = estimator_study.run("mfeat_small", "rolling_short", 0)
    assert sum(rec["weights"].values()) == pytest.approx(1.0)
    assert len(rec["trajectory"]) > 2
    assert 0.5 < rec["ensemble"] <= 1.0


@pytest.mark.slow
def test_the_predictor_is_chosen_by_the_paired_test_on_v():
    rec = estimator_study.run("mfeat_small", "auxiliary", 0)
    choice = rec["selection"]  # blendopt's PredictorChoice, not a bare argmax
    assert (choice["reference"], choice["metric"], choice["z"]) == ("ensemble", "top1", 1.0)
    assert choice["size"] == 20  # V: 10% of the 200 training samples
    assert set(choice["gains"]) == {"ensemble", "fused"}
    assert rec["selected"] == choice["chosen"]
    assert rec["selected_acc"] == (
        rec["ensemble"] if choice["chosen"] == "ensemble" else rec["fused"]
    )


def test_per_head_gradient_script_runs(capsys):
    per_head_gradients.main(["--rounds", "2"])
    out = capsys.readouterr().out
    for name in ("grad_loop_all", "grad_batched_all", "grad_loop_private", "holdout_forward"):
        assert name in out
