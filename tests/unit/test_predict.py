"""The weight-averaged ensemble predictor."""

import pytest
import torch

from blendopt import BlendEnsemble
from blendopt._predict import average_precision, paired_gain
from blendopt.functional import ensemble_probabilities
from tests.helpers import make_batches, make_model


def test_ensemble_is_the_weighted_mean_of_head_probabilities():
    logits = {
        "a": torch.tensor([[2.0, 0.0]]),
        "b": torch.tensor([[0.0, 1.0]]),
        "fused": torch.tensor([[5.0, 5.0]]),
    }
    p = ensemble_probabilities(logits, {"a": 0.75, "b": 0.25, "fused": 0.0})
    pa, pb = torch.softmax(logits["a"], -1), torch.softmax(logits["b"], -1)
    torch.testing.assert_close(p, 0.75 * pa + 0.25 * pb)
    torch.testing.assert_close(p.sum(-1), torch.ones(1))


def test_weights_need_not_sum_to_one_and_sigmoid_for_multilabel():
    logits = {"a": torch.tensor([[0.0, 2.0]]), "b": torch.tensor([[1.0, -1.0]])}
    p = ensemble_probabilities(logits, {"a": 2.0, "b": 2.0}, activation="sigmoid")
    torch.testing.assert_close(p, (torch.sigmoid(logits["a"]) + torch.sigmoid(logits["b"])) / 2)


def test_zero_weight_head_may_be_absent():
    p = ensemble_probabilities({"a": torch.zeros(1, 3)}, {"a": 1.0, "fused": 0.0})
    torch.testing.assert_close(p, torch.full((1, 3), 1 / 3))


@pytest.mark.parametrize(
    ("logits", "weights", "match"),
    [
        ({"a": torch.zeros(1, 2)}, {"a": 0.0}, "weight > 0"),
        ({"a": torch.zeros(1, 2)}, {"a": 1.0, "b": 0.5}, "no output for head 'b'"),
        ({"a": torch.zeros(1, 2), "b": torch.zeros(1, 3)}, {"a": 1.0, "b": 1.0}, "share one shape"),
    ],
)
def test_bad_inputs_raise(logits, weights, match):
    with pytest.raises(ValueError, match=match):
        ensemble_probabilities(logits, weights)


def test_blend_ensemble_module():
    model = make_model().eval()
    ens = BlendEnsemble(model, {"a": 0.5, "b": 0.0, "fused": 0.5})
    xa, xb = torch.randn(4, 6), torch.randn(4, 5)
    out = model(xa, xb)
    expected = 0.5 * torch.softmax(out["a"], -1) + 0.5 * torch.softmax(out["fused"], -1)
    torch.testing.assert_close(ens(xa, xb), expected)
    assert "weights={'a': 0.5, 'b': 0.0, 'fused': 0.5}" in repr(ens)


def test_from_optimizer_uses_the_average_weights_by_default_and_the_last_on_request():
    from blendopt import GradientBlender
    from tests.helpers import HEADS, loss_fn, make_batches

    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, weights=None)
    opt.set_weights({"a": 1.0, "b": 0.0, "fused": 0.0})
    for i, batch in enumerate(make_batches(4)):
        if i == 3:
            opt.set_weights({"a": 0.0, "b": 0.0, "fused": 1.0})
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()
    # 3 steps on head a alone, 1 on fused alone: average (0.75, 0, 0.25); last one-hot fused.
    averaged = BlendEnsemble.from_optimizer(model, opt)
    assert averaged.weights == pytest.approx({"a": 0.75, "b": 0.0, "fused": 0.25})
    last = BlendEnsemble.from_optimizer(model, opt, weights="last")
    assert last.weights == {"a": 0.0, "b": 0.0, "fused": 1.0}
    x = make_batches(1)[0]
    logits = model(x[0], x[1])
    torch.testing.assert_close(
        averaged(x[0], x[1]),
        0.75 * torch.softmax(logits["a"], -1) + 0.25 * torch.softmax(logits["fused"], -1),
    )
    with pytest.raises(ValueError, match="'average' or 'last'"):
        BlendEnsemble.from_optimizer(model, opt, weights="first")
    with pytest.raises(TypeError, match="GradientBlender"):
        BlendEnsemble.from_optimizer(model, torch.optim.SGD(model.parameters(), lr=0.1))


# -- prediction weights chosen on V (a paired test against uniform) --------------------------


def _one_hot_logits(predicted):
    """Logits whose argmax is ``predicted`` (2 classes)."""
    return torch.nn.functional.one_hot(torch.tensor(predicted), 2).float() * 4.0


def test_paired_gain_top1_is_the_mean_difference_and_its_standard_error():
    target = torch.zeros(5, dtype=torch.long)
    reference = _one_hot_logits([0, 1, 0, 1, 0])  # correct on samples 0, 2, 4
    candidate = _one_hot_logits([0, 0, 0, 0, 1])  # correct on samples 0, 1, 2, 3
    gain, se = paired_gain(candidate, reference, target)
    # d = [0, 1, 0, 1, -1]: mean 0.2, sample variance 2.8 / 4 = 0.7, SE √0.7 / √5.
    assert gain == pytest.approx(0.2)
    assert se == pytest.approx((0.7 / 5) ** 0.5)


def test_choose_departs_from_uniform_only_beyond_z_standard_errors():
    target = torch.zeros(5, dtype=torch.long)
    logits = {"a": _one_hot_logits([0, 0, 0, 0, 1]), "b": _one_hot_logits([0, 1, 0, 1, 0])}
    candidates = {"a": {"a": 1.0}, "b": {"b": 1.0}}
    kept = BlendEnsemble.choose(logits, target, candidates, reference="b")
    assert kept.chosen == "b"  # gain 0.2 < 1 × SE 0.374
    assert kept.weights == {"b": 1.0}
    assert kept.scores == pytest.approx({"a": 0.8, "b": 0.6})
    assert kept.gains == pytest.approx({"a": 0.2, "b": 0.0})
    assert kept.standard_errors["a"] == pytest.approx(0.374166, abs=1e-6)
    assert kept.significant == []
    moved = BlendEnsemble.choose(logits, target, candidates, reference="b", z=0.5)
    assert moved.chosen == "a"  # 0.2 > 0.5 × 0.374
    assert moved.significant == ["a"]
    assert moved.to_dict()["size"] == 5


def test_choose_adds_uniform_as_the_default_reference():
    logits = {"a": _one_hot_logits([0, 1]), "b": _one_hot_logits([1, 0])}
    choice = BlendEnsemble.choose(logits, torch.tensor([0, 0]), {"a": {"a": 1.0}})
    assert choice.reference == "uniform"
    # uniform ties both samples between the classes and argmax takes class 0: both correct
    assert choice.scores == {"uniform": 1.0, "a": 0.5}
    assert (choice.chosen, choice.weights) == ("uniform", {"a": 0.5, "b": 0.5})


def test_all_equal_candidates_keep_the_reference():
    logits = {"a": _one_hot_logits([0, 1, 1]), "b": _one_hot_logits([0, 1, 1])}
    choice = BlendEnsemble.choose(logits, torch.tensor([0, 1, 0]), {"a": {"a": 1.0}})
    assert choice.gains == {"uniform": 0.0, "a": 0.0}
    assert choice.standard_errors["a"] == 0.0
    assert choice.chosen == "uniform"


def test_ties_between_significant_candidates_go_to_the_first():
    target = torch.zeros(3, dtype=torch.long)
    logits = {"ref": _one_hot_logits([1, 1, 1]), "x": _one_hot_logits([0, 0, 0])}
    candidates = {"ref": {"ref": 1.0}, "first": {"x": 1.0}, "second": {"x": 2.0}}
    choice = BlendEnsemble.choose(logits, target, candidates, reference="ref")
    # every sample improves: gain 1, SE 0 for both
    assert choice.significant == ["first", "second"]
    assert choice.chosen == "first"


@pytest.mark.parametrize("n", [20, 48, 100, 160])
def test_a_single_sample_win_is_not_significant_whatever_the_rounding(n):
    # d is 1 on one sample, else 0: gain 1/n and SE √(1/n)/√n = 1/n exactly.
    target = torch.zeros(n, dtype=torch.long)
    logits = {"ref": _one_hot_logits([1] + [0] * (n - 1)), "x": _one_hot_logits([0] * n)}
    candidates = {"ref": {"ref": 1.0}, "x": {"x": 1.0}}
    choice = BlendEnsemble.choose(logits, target, candidates, reference="ref")
    assert choice.gains["x"] == pytest.approx(choice.standard_errors["x"])
    assert choice.chosen == "ref"
    assert choice.significant == []


def test_a_one_sample_holdout_never_departs_from_the_reference():
    logits = {"ref": _one_hot_logits([1]), "x": _one_hot_logits([0])}
    candidates = {"ref": {"ref": 1.0}, "x": {"x": 1.0}}
    choice = BlendEnsemble.choose(logits, torch.tensor([0]), candidates, reference="ref")
    assert choice.gains["x"] == 1.0
    assert choice.standard_errors["x"] == float("inf")
    assert choice.chosen == "ref"


def test_average_precision_and_the_jackknife_se_of_a_map_difference():
    target = torch.tensor([[1], [0], [1], [0]])
    candidate = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    reference = torch.tensor([[0.1], [0.8], [0.7], [0.9]])
    # candidate: positives at ranks 1 and 3 -> (1 + 2/3) / 2; reference: ranks 3 and 4.
    assert float(average_precision(candidate, target)[0]) == pytest.approx(5 / 6)
    assert float(average_precision(reference, target)[0]) == pytest.approx((1 / 3 + 1 / 2) / 2)
    gain, se = paired_gain(candidate, reference, target, "map")
    assert gain == pytest.approx(5 / 6 - 5 / 12)
    # leave-one-out differences 2/12, 5/12, 8/12, 3/12: mean 4.5/12, Σ dev² = 21/144.
    assert se == pytest.approx((3 / 4 * 21 / 144) ** 0.5)
    logits = {"c": candidate.logit(), "r": reference.logit()}
    choice = BlendEnsemble.choose(
        logits, target, {"c": {"c": 1.0}, "r": {"r": 1.0}}, reference="r", metric="map"
    )
    assert choice.chosen == "c"  # 0.417 > 0.331
    assert choice.scores == pytest.approx({"c": 5 / 6, "r": 5 / 12})


def test_average_precision_ignores_classes_without_positives_in_map():
    target = torch.tensor([[1, 0], [0, 0]])
    scores = torch.tensor([[0.2, 0.5], [0.9, 0.1]])
    assert average_precision(scores, target)[1].isnan()
    gain, _ = paired_gain(scores, scores.flip(0), target, "map")
    assert gain == pytest.approx(0.5 - 1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "auc"}, "'top1' or 'map'. Found 'auc'"),
        ({"reference": "best"}, "should name a candidate"),
        ({"z": -1.0}, "`z` should be >= 0. Found -1.0"),
    ],
)
def test_choose_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlendEnsemble.choose({"a": torch.zeros(2, 2)}, torch.zeros(2), {}, **kwargs)


def test_from_holdout_predicts_with_the_choice_and_records_it_in_the_history():
    from blendopt import GradientBlender
    from tests.helpers import HEADS

    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, weights=None)
    batches = make_batches(2, batch=8)
    candidates = {"training": opt.average_weights, "fused": {"fused": 1.0}}
    ens = BlendEnsemble.from_holdout(
        model, batches, candidates, predict=lambda m, b: (m(b[0], b[1]), b[2]), optimizer=opt
    )
    logits = {h: torch.cat([model(b[0], b[1])[h] for b in batches]) for h in HEADS}
    expected = BlendEnsemble.choose(logits, torch.cat([b[2] for b in batches]), candidates)
    assert ens.choice == expected
    assert ens.weights == expected.weights
    assert model.training  # the evaluation pass restored the mode
    record = opt.history[-1]
    assert record["kind"] == "prediction"
    assert record["weights"] == expected.weights
    assert record["choice"] == expected.to_dict()
