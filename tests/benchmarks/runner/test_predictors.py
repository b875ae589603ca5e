"""Prediction weights chosen on V in the main job, and the decomposition table."""

import pytest
import torch

from benchmarks.runner._predictors import attach_cross, choose, decomposition_table
from benchmarks.runner._report import decomposition_verdict
from benchmarks.runner._train import RunResult


def _logits(predicted, margin):
    return torch.nn.functional.one_hot(torch.tensor(predicted), 2).float() * margin


def _outputs(a, fused, a_margin=8.0, fused_margin=2.0):
    """V and test alike: targets all 0; head ``a`` and ``fused`` predict ``a`` / ``fused``."""
    heads = {"a": _logits(a, a_margin), "fused": _logits(fused, fused_margin)}
    target = torch.zeros(len(a), dtype=torch.long)
    return {"holdout": (heads, target), "test": (heads, target)}


def test_the_fused_head_needs_more_than_a_bare_argmax_on_v():
    # 60 samples: the ensemble (led by head a) is right on 50; the fused head on 51 (two more
    # right, one more wrong): a bare argmax would pick it; +1/60 is within one paired SE.
    a = [0] * 50 + [1] * 10
    fused = [0] * 49 + [1] + [0, 0] + [1] * 8
    picked = choose(_outputs(a, fused), {"ensemble": {"a": 1.0, "fused": 1.0}}, "fused")
    second = picked["predictor"]
    assert second["scores"] == pytest.approx({"ensemble_uniform": 50 / 60, "fused": 51 / 60})
    assert second["chosen"] == "ensemble_uniform"
    assert picked["predictor_accuracy"] == pytest.approx(50 / 60)
    # 20 more samples right: +20/60 beats its SE, the fused head is chosen
    fused = [0] * 50 + [0] * 10
    picked = choose(_outputs(a, fused), {}, "fused")
    assert picked["predictor"]["chosen"] == "fused"
    assert picked["predictor_accuracy"] == 1.0


def _run(method, seed, outputs, weights):
    return RunResult(
        "toy", method, "sgd", seed, 0.0, {"a": 0.0, "fused": 0.0}, 0.0, weights,
        average_weights=weights, outputs=outputs,
    )  # fmt: skip


def test_attach_cross_reads_the_equal_weight_model_with_the_ogr_weights():
    # a right on 30 of 40, fused on 20: uniform (a margin 1, fused 3) follows fused; the OGR
    # weights (a 0.9) follow a.
    a = [0] * 30 + [1] * 10
    fused = [0] * 20 + [1] * 20
    ogr = {"a": 0.9, "fused": 0.1}
    runs = []
    for seed in (0, 1):
        out = _outputs(a, fused, a_margin=1.0, fused_margin=3.0)
        aux = _run("auxiliary", seed, out, {"a": 0.5, "fused": 0.5})
        gblend = _run("gblend_offline", seed, out, ogr)
        gblend.ensemble_avg_accuracy = 0.75  # OGR follows head a: 30 of 40
        for r in (aux, gblend):
            picked = choose(out, {"ensemble": r.weights, "ensemble_avg": r.weights}, "fused")
            r.uniform_accuracy = picked["uniform"]
            r.prediction = picked["weights"]
            r.prediction_accuracy = picked["weights_accuracy"]
        runs += [aux, gblend]
    attach_cross(runs)
    aux = runs[0]
    assert aux.uniform_accuracy == pytest.approx(0.5)
    # +10/40 over uniform on 40 samples: d is 1 on 10 samples, SE 0.069
    assert aux.cross["gblend_offline"] == {"ogr": 0.75, "chosen": 0.75, "pick": "ensemble"}
    by_method = {"gblend_offline": runs[1::2], "auxiliary": runs[::2]}
    table = decomposition_table(by_method)
    assert table[2] == "| gblend_offline (OGR) | 75.0 ± 0.0 | 50.0 ± 0.0 | 75.0 ± 0.0 (ensemble) |"
    assert table[3] == (
        "| auxiliary (equal), OGR of gblend_offline | 75.0 ± 0.0 | 50.0 ± 0.0 | "
        "75.0 ± 0.0 (ensemble) |"
    )
    line = decomposition_verdict("toy", "sgd", by_method)
    assert "gives 50.0% vs 50.0% (+0.0 points [the same on all 2 paired seeds])" in line
    assert (
        "with the OGR weights instead of uniform gives 75.0% (+25.0 points [the same on all 2 "
        "paired seeds])"
    ) in line
    # runs read back from JSON carry no logits: nothing to attach, the table keeps its cells
    (copy := RunResult(**runs[0].to_dict())).cross = {}
    attach_cross([copy])
    assert copy.cross == {}
    assert "outputs" not in runs[0].to_dict()
