"""GradientBlender calling estimators on offline, online and step-based schedules."""

import pytest
import torch

import blendopt
from blendopt import BlendEstimate, Estimator, GradientBlender, Offline, Online, RetrainEstimator
from tests.helpers import HEADS, loss_fn, make_batches, make_model


class ScriptedEstimator(Estimator):
    """Returns scripted estimates and records the requests it got."""

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.requests = []

    def estimate(self, request):
        self.requests.append(request)
        weights, accepted = self.outcomes.pop(0)
        return BlendEstimate(
            weights=weights, generalization={}, overfitting_change={}, accepted=accepted
        )


def _loop(opt, model, epochs, batches):
    for _ in range(epochs):
        opt.start_epoch()
        for batch in batches:
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()


def test_online_schedule_requests_horizons_and_applies_weights():
    w1, w2 = {"a": 1.0, "b": 0.0, "fused": 0.0}, {"a": 0.2, "b": 0.3, "fused": 0.5}
    est = ScriptedEstimator([(w1, True), (w2, True), (w1, True)])
    model = make_model()
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est, schedule=Online(every=2, warmup=3)
    )
    _loop(opt, model, 5, make_batches(2))
    assert [(r.index, r.horizon, r.unit) for r in est.requests] == [
        (0, 3, "epoch"),
        (1, 2, "epoch"),
    ]
    assert [r["epoch"] for r in opt.history] == [0, 3]
    assert opt.weights == w2
    assert est.requests[1].weights == w1


def test_rejected_estimate_keeps_weights_warns_and_records():
    est = ScriptedEstimator(
        [
            ({"a": 0.5, "b": 0.5, "fused": 0.0}, True),
            ({"a": 1 / 3, "b": 1 / 3, "fused": 1 / 3}, False),
        ]
    )
    model = make_model()
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est, schedule=Online(every=1)
    )
    opt.start_epoch()
    with pytest.warns(blendopt.BlendWarning, match="rejected"):
        opt.start_epoch()
    assert opt.weights == {"a": 0.5, "b": 0.5, "fused": 0.0}
    assert opt.history[-1]["kind"] == "rejected"
    assert opt.history[-1]["weights"] == opt.history[-1]["weights_before"]


def test_step_schedule_estimates_before_the_first_step_and_every_n_steps():
    est = ScriptedEstimator([(dict.fromkeys(HEADS, 1.0), True)] * 4)
    model = make_model()
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        est,
        schedule=Online(every=3, unit="step"),
    )
    batches = make_batches(7)
    for batch in batches:  # no start_epoch needed with a step schedule
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()
    assert [r["step"] for r in opt.history] == [0, 3, 6]
    assert all(r.unit == "step" and r.horizon == 3 for r in est.requests)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
def test_offline_retrain_estimator_end_to_end():
    model = make_model()
    train, holdout = make_batches(4), make_batches(2, seed=1)
    est = RetrainEstimator(model, loss_fn, train, holdout, probe=train[:2])
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9),
        HEADS,
        est,
        schedule=Offline(horizon=2),
    )
    record = opt.start_epoch()
    assert record["kind"] == "estimate"
    assert record["horizon"] == 2
    assert opt.weights == pytest.approx(record["estimate"]["weights"])
    assert sum(opt.weights.values()) == pytest.approx(1.0)
    expected = blendopt.estimate_weights(
        model,
        loss_fn,
        train,
        holdout,
        optimizer=opt,
        epochs=2,
        probe=train[:2],
        seed=blendopt._rng.derive_seed(0, 0),
    )
    assert opt.weights == pytest.approx(expected.weights)
    assert opt.start_epoch() is None  # offline: never again


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
def test_estimate_now_and_missing_horizon():
    model = make_model()
    est = RetrainEstimator(model, loss_fn, make_batches(2), make_batches(1, seed=1))
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.05), HEADS, est, schedule=Offline()
    )
    with pytest.raises(ValueError, match="look-ahead n"):
        opt.start_epoch()
    record = opt.estimate_now(horizon=1)
    assert record["horizon"] == 1
    assert record["kind"] == "estimate"
