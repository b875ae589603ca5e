"""RollingEstimator's defaults: a ~100-step run estimates, a shorter one says why it did not."""

import warnings

import pytest
import torch

import blendopt
from blendopt import GradientBlender, GradientMode, Online, RollingEstimator
from blendopt._rolling import _reached
from blendopt.warnings import NoEstimateWarning
from tests.helpers import HEADS, loss_fn, make_batches, make_model


def _run(steps, *, schedule=None, **options):
    model = make_model(seed=0)
    est = RollingEstimator(model, loss_fn, make_batches(2, seed=2), **options)
    kwargs = {} if schedule is None else {"schedule": schedule}
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est, **kwargs)
    train = make_batches(10, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        warnings.simplefilter("error", NoEstimateWarning)  # none before the checkpoint
        for i in range(steps):
            opt.zero_grad()
            opt.backward(loss_fn(model, train[i % len(train)]))
            opt.step()
    return opt, est


def test_the_two_line_default_estimates_in_a_100_step_run():
    opt, est = _run(100)
    estimates = [r for r in opt.history if r["kind"] in ("estimate", "rejected")]
    # 8 warm-up measurements (steps 0, 5, ..., 35), the first estimate at step 36, then every 50.
    assert [r["step"] for r in estimates] == [36, 86]
    assert all(r["estimate"]["generalization_se"] is not None for r in estimates)
    assert est.measurements == 8 + 3  # then every 20 steps: 40, 60, 80
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEstimateWarning)
        opt.state_dict()


def test_a_too_short_run_warns_once_at_its_checkpoint_with_the_reason():
    opt, _ = _run(20)
    with pytest.warns(NoEstimateWarning, match=r"in 20 steps: 4 of 8 gradient measurements"):
        opt.state_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEstimateWarning)
        opt.state_dict()  # once


def test_a_run_that_never_estimated_records_no_estimate_entry():
    opt, _ = _run(3)
    assert opt.history == []
    # An explicit schedule due before the window is full records what happened as "waiting".
    opt, _ = _run(3, schedule=Online(every=2, unit="step"))
    assert [r["kind"] for r in opt.history] == ["waiting", "waiting"]
    assert opt.history[0]["weights"] == opt.history[0]["weights_before"]
    assert opt.history[0]["estimate"]["notes"][0].startswith("0 of 8 measurements")


def test_a_resumed_run_keeps_the_spacing_of_its_estimates():
    opt, est = _run(40)
    assert [r["step"] for r in opt.history] == [36]
    other = RollingEstimator(make_model(), loss_fn, make_batches(2, seed=2))
    other.load_state_dict(est.state_dict())
    schedule = other.default_schedule()
    assert not schedule.is_due(85)
    assert schedule.is_due(86)


def test_an_explicit_interval_is_kept_from_the_first_step():
    mode = GradientMode(interval=2, min_measurements=3, window=4)
    _, est = _run(10, mode=mode)
    assert est.measurements == 5  # steps 0, 2, 4, 6, 8: the warm-up is never longer-spaced
    assert repr(mode).startswith("GradientMode(interval=2, window=4")
    with pytest.raises(ValueError, match="warmup_interval"):
        GradientMode(warmup_interval=0)


def test_the_graph_walk_finds_the_parameters_backward_reaches():
    model = make_model(seed=0)
    losses = loss_fn(model, make_batches(1)[0])
    params = list(model.parameters())
    for h in HEADS:
        grads = torch.autograd.grad(losses[h], params, retain_graph=True, allow_unused=True)
        assert _reached(losses[h], params) == {i for i, g in enumerate(grads) if g is not None}


@pytest.mark.parametrize("probe", [False, True])
def test_loss_mode_records_its_baseline_boundary_as_waiting_not_as_an_estimate(probe):
    model = make_model(seed=0)
    est = RollingEstimator(
        model,
        loss_fn,
        make_batches(2, seed=2),
        probe=make_batches(2, seed=3) if probe else None,
        mode="loss",
        every=4,
    )
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.2), HEADS, est)
    assert est.waiting_for().startswith("no loss boundary recorded yet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        for batch in make_batches(9, seed=1):
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
    kinds = [(r["step"], r["kind"]) for r in opt.history]
    # Without a probe the step-0 boundary has no training losses yet: a second baseline.
    first = [(0, "waiting"), (4, "waiting")] if not probe else [(0, "waiting")]
    assert kinds[: len(first)] == first
    assert {k for _, k in kinds[len(first) :]} <= {"estimate", "rejected"}
    assert len(kinds) == 3
