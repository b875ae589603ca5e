"""The silent traps of issue 7 item 2 (blender side): each is now an error, a warning, or masked."""

import math
import warnings

import pytest
import torch

import blendopt
from blendopt import (
    BlendEstimate,
    Estimator,
    FixedWeights,
    GradientBlender,
    Offline,
    Online,
)
from blendopt.functional import blend_estimate
from tests.helpers import HEADS, loss_fn, make_batches, make_model

WEIGHTS = {"a": 0.6, "b": 0.1, "fused": 0.3}


def _blender(weights=None, **kwargs):
    model = make_model()
    return model, GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), HEADS, weights, **kwargs
    )


def _caught(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, caught


# -- step() without blend/backward -------------------------------------------------------------


def test_step_without_blend_warns_once_at_the_users_line():
    model, opt = _blender(WEIGHTS)
    batches = make_batches(3)

    def old_habit():
        for batch in batches:
            opt.zero_grad()
            sum(loss_fn(model, batch).values()).backward()
            opt.step()

    _, caught = _caught(old_habit)
    assert [w.category for w in caught] == [blendopt.warnings.UnblendedStepWarning]
    message = str(caught[0].message)
    assert "optimizer.backward(losses)" in message
    assert "step 0" in message
    assert caught[0].filename == __file__


def test_step_after_blend_backward_accumulation_or_closure_does_not_warn():
    model, opt = _blender(WEIGHTS)
    batches = make_batches(4)

    def loops():
        opt.zero_grad()
        opt.backward(loss_fn(model, batches[0]))
        opt.step()
        # Gradient accumulation: two blends, one step.
        opt.zero_grad()
        for batch in batches[1:3]:
            opt.blend(loss_fn(model, batch)).backward()
        opt.step()

        # Lightning's automatic optimization: step(closure), the closure blends.
        def closure():
            opt.zero_grad()
            loss = opt.blend(loss_fn(model, batches[3]))
            loss.backward()
            return loss

        opt.step(closure)

    _, caught = _caught(loops)
    assert caught == []


def test_lbfgs_closure_called_several_times_counts_its_blends():
    model = make_model()
    opt = GradientBlender(torch.optim.LBFGS(model.parameters(), max_iter=4), HEADS, WEIGHTS)
    batch = make_batches(1)[0]
    calls = []

    def closure():
        calls.append(1)
        opt.zero_grad()
        return opt.backward(loss_fn(model, batch))

    _, caught = _caught(lambda: [opt.step(closure) for _ in range(2)])
    assert len(calls) > 2  # LBFGS evaluated the closure several times per step
    assert caught == []


def test_unblended_step_with_equal_weights_and_no_estimator_is_the_plain_sum():
    model, opt = _blender()
    opt.zero_grad()
    sum(loss_fn(model, make_batches(1)[0]).values()).backward()
    _, caught = _caught(opt.step)
    assert caught == []


# -- weights that do not sum to 1; fixed weights with a schedule or with weights= ---------------


def test_weights_not_summing_to_one_warn_with_the_normalized_weights_and_are_used_as_given():
    model = make_model()
    heavy = {"a": 2.0, "b": 1.0, "fused": 1.0}
    for kwargs in ({"estimator": heavy}, {"weights": heavy}, {"estimator": FixedWeights(heavy)}):
        opt, caught = _caught(
            lambda kwargs=kwargs: GradientBlender(
                torch.optim.SGD(model.parameters(), lr=0.1), HEADS, **kwargs
            )
        )
        assert [w.category for w in caught] == [blendopt.warnings.WeightSumWarning]
        assert "sums to 4" in str(caught[0].message)
        assert "{'a': 0.5, 'b': 0.25, 'fused': 0.25}" in str(caught[0].message)
        assert caught[0].filename == __file__
        assert opt.weights == heavy
    _, opt = _blender(WEIGHTS)
    with pytest.warns(blendopt.warnings.WeightSumWarning, match="sums to 2"):
        opt.set_weights({"a": 1.0, "b": 0.5, "fused": 0.5})


def test_fixed_weights_reject_a_schedule():
    model = make_model()
    for estimator in (WEIGHTS, FixedWeights(WEIGHTS)):
        with pytest.raises(ValueError, match=r"fixed weights.*Drop `schedule=`"):
            GradientBlender(
                torch.optim.SGD(model.parameters(), lr=0.1),
                HEADS,
                estimator,
                schedule=Online(every=2),
            )


def test_fixed_weights_reject_weights_given_twice():
    model = make_model()
    with pytest.raises(ValueError, match="Pass them once"):
        GradientBlender(
            torch.optim.SGD(model.parameters(), lr=0.1),
            HEADS,
            FixedWeights(WEIGHTS),
            weights={"a": 0.2, "b": 0.2, "fused": 0.6},
        )


# -- a head at weight 0 with a non-finite loss ---------------------------------------------------


@pytest.mark.parametrize("bad", [math.inf, math.nan])
@pytest.mark.parametrize("check_finite", [True, False])
def test_zero_weight_head_with_non_finite_loss_does_not_poison_the_blend(bad, check_finite):
    weights = {"a": 0.0, "b": 0.4, "fused": 0.6}
    model, opt = _blender(weights, check_finite=check_finite)
    batch = make_batches(1)[0]
    losses = loss_fn(model, batch)
    reference = 0.4 * losses["b"] + 0.6 * losses["fused"]
    ref_grads = torch.autograd.grad(
        reference, list(model.parameters()), allow_unused=True, retain_graph=True
    )
    losses["a"] = losses["a"] * bad  # still attached to the graph of head a
    context = (
        pytest.warns(blendopt.warnings.NonFiniteLossWarning, match="head 'a'")
        if check_finite
        else (warnings.catch_warnings())
    )
    with context:
        blended = opt.blend(losses)
    assert torch.isfinite(blended)
    torch.testing.assert_close(blended, reference)
    blended.backward()
    for (name, p), g in zip(model.named_parameters(), ref_grads, strict=True):
        if g is None:  # only head a uses it: no gradient at all, not 0·inf
            assert p.grad is None, name
        else:
            assert torch.isfinite(p.grad).all(), name
            torch.testing.assert_close(p.grad, g, msg=name)
    # The bad value is still recorded: the epoch statistics count it.
    if not check_finite:
        with pytest.warns(blendopt.warnings.NonFiniteLossWarning, match="head 'a' 1 of 1 steps"):
            opt.start_epoch()
    else:
        opt.start_epoch()
    assert opt.statistics.history[-1]["nonfinite"] == {"a": 1, "b": 0, "fused": 0}


def test_non_finite_loss_of_a_weighted_head_still_raises_on_the_checked_path():
    model, opt = _blender({"a": 0.0, "b": 0.4, "fused": 0.6})
    losses = loss_fn(model, make_batches(1)[0])
    losses["b"] = losses["b"] * math.inf
    with pytest.raises(ValueError, match="head 'b' is inf"):
        opt.blend(losses)


# -- non-finite losses counted on the device: reported without start_epoch ---------------------


def _run_with_nan(opt, model, steps, bad_steps, head="b"):
    for i, batch in enumerate(make_batches(steps)):
        opt.zero_grad()
        losses = loss_fn(model, batch)
        if i in bad_steps:  # the value is nan, its gradient finite: later steps stay finite
            losses[head] = losses[head] + math.nan
        opt.backward(losses)
        opt.step()


def test_deferred_non_finite_losses_are_reported_every_n_steps_with_the_step_range():
    model, opt = _blender(WEIGHTS, check_finite=False, check_finite_every=4)
    with pytest.raises(FloatingPointError, match=r"steps 1-2 .*every 4 steps.*'b' 2 of 4 steps"):
        _run_with_nan(opt, model, 4, bad_steps={1, 2})
    assert "epoch -1" not in str(opt._finite.events[-1])
    assert opt._finite.events[-1]["heads"]["b"] == {
        "count": 2,
        "weighted": 2,
        "first_step": 1,
        "last_step": 2,
    }


def test_deferred_non_finite_losses_are_reported_at_state_dict():
    model, opt = _blender(WEIGHTS, check_finite=False)
    _run_with_nan(opt, model, 3, bad_steps={2})
    with pytest.raises(FloatingPointError, match=r"steps 2-2 \(checked at state_dict\(\)\)"):
        opt.state_dict()
    opt.state_dict()  # reported once; the counts start again


def test_deferred_non_finite_losses_are_reported_before_a_step_scheduled_estimate():
    class Never(Estimator):
        def estimate(self, request):
            raise AssertionError("the estimate must not run on poisoned weights")

    model = make_model()
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        Never(),
        schedule=Online(every=3, warmup=3, unit="step"),
        check_finite=False,
    )
    opt._controller.last_estimate_position = 0  # as if the step-0 estimate was made
    with pytest.raises(FloatingPointError, match="before G-Blend estimate 0"):
        _run_with_nan(opt, model, 3, bad_steps={0})


# -- estimate warnings: one per event, at the user's call, naming the estimate ----------------


class _MathEstimator(Estimator):
    """A user estimator computing its weights with blendopt.functional.blend_estimate."""

    def __init__(self, after):
        self.after = after

    def estimate(self, request):
        before = dict.fromkeys(request.heads, 2.0)
        return blend_estimate(
            before, before, dict.fromkeys(request.heads, 1.0), self.after, eps=1e-4
        )


def _epoch_blender(after):
    model = make_model()
    return GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        _MathEstimator(after),
        schedule=Online(every=1),
    )


def test_rejected_estimate_warns_once_naming_index_and_epoch_at_start_epoch():
    opt = _epoch_blender({"a": 2.5, "b": 2.1, "fused": 3.0})  # every dG < 0
    with pytest.warns(blendopt.warnings.RejectedEstimateWarning, match="estimate 0 at epoch 0"):
        opt.start_epoch()
    _, caught = _caught(opt.start_epoch)
    assert [w.category for w in caught] == [blendopt.warnings.RejectedEstimateWarning]
    assert "G-Blend estimate 1 at epoch 1 rejected" in str(caught[0].message)
    assert caught[0].filename == __file__
    assert opt.history[-1]["kind"] == "rejected"
    assert opt.history[-1]["index"] == 1


def test_zeroed_head_and_floor_are_separate_single_warnings():
    # a: dG = 0.5, dO = -0.5 ; b: dG < 0 (zeroed) ; fused: train and holdout drop alike: floor.
    opt = _epoch_blender({"a": 1.5, "b": 2.1, "fused": 1.0})
    _, caught = _caught(opt.start_epoch)
    assert sorted(w.category.__name__ for w in caught) == [
        "FlooredOverfittingWarning",
        "ZeroedHeadWarning",
    ]
    by_kind = {w.category: str(w.message) for w in caught}
    assert "'b'" in by_kind[blendopt.warnings.ZeroedHeadWarning]
    assert "floored" not in by_kind[blendopt.warnings.ZeroedHeadWarning]
    assert "'fused'" in by_kind[blendopt.warnings.FlooredOverfittingWarning]
    assert all("G-Blend estimate 0 at epoch 0" in m for m in by_kind.values())
    assert all(w.filename == __file__ for w in caught)


def test_a_floor_alone_is_not_a_zeroed_head():
    opt = _epoch_blender({"a": 1.5, "b": 1.5, "fused": 1.0})
    _, caught = _caught(opt.start_epoch)
    assert [w.category for w in caught] == [blendopt.warnings.FlooredOverfittingWarning]


# -- the time-average of the weights ---------------------------------------------------------


def _steps(opt, model, n, seed=0):
    for batch in make_batches(n, seed=seed):
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()


def test_average_weights_weight_each_set_by_its_steps():
    w1 = {"a": 0.6, "b": 0.1, "fused": 0.3}
    w2 = {"a": 0.0, "b": 0.2, "fused": 0.8}
    model, opt = _blender(w1)
    assert opt.average_weights == w1  # no step yet
    _steps(opt, model, 3)
    opt.set_weights(w2)
    assert opt.average_weights == pytest.approx(w1)  # w2 not in use for any step yet
    _steps(opt, model, 1)
    # (3·w1 + 1·w2) / 4, by hand: a 1.8/4, b 0.5/4, fused 1.7/4.
    assert opt.average_weights == pytest.approx({"a": 0.45, "b": 0.125, "fused": 0.425})
    assert opt.weights == w2


def test_average_weights_follow_scheduled_estimates_and_survive_resume(tmp_path):
    class Scripted(Estimator):
        def __init__(self):
            self.outcomes = [
                {"a": 0.5, "b": 0.5, "fused": 0.0},
                {"a": 0.0, "b": 0.0, "fused": 1.0},
                {"a": 1.0, "b": 0.0, "fused": 0.0},
            ]

        def estimate(self, request):
            w = self.outcomes[request.index]
            return BlendEstimate(weights=w, generalization={}, overfitting_change={}, accepted=True)

    def build():
        model = make_model()
        return model, GradientBlender(
            torch.optim.SGD(model.parameters(), lr=0.1),
            HEADS,
            Scripted(),
            schedule=Online(every=2, warmup=2, unit="step"),
        )

    model, opt = build()
    _steps(opt, model, 3)  # estimate 0 at step 0, estimate 1 at step 2
    # 2 steps at (0.5, 0.5, 0) then 1 step at (0, 0, 1).
    expected = {"a": 1 / 3, "b": 1 / 3, "fused": 1 / 3}
    assert opt.average_weights == pytest.approx(expected)
    torch.save(opt.state_dict(), tmp_path / "opt.pt")
    model2, opt2 = build()
    opt2.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    assert opt2.average_weights == pytest.approx(expected)
    _steps(opt, model, 1, seed=5)
    _steps(opt2, model2, 1, seed=5)
    assert (
        opt2.average_weights
        == opt.average_weights
        == pytest.approx({"a": 0.25, "b": 0.25, "fused": 0.5})
    )


# -- structure: the public surface around the split ----------------------------------------


def test_estimate_due_says_when_start_epoch_will_estimate():
    opt = _epoch_blender({"a": 1.5, "b": 1.5, "fused": 1.5})
    opt.set_weights({"a": 0.2, "b": 0.2, "fused": 0.6})
    assert opt.estimate_due()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        opt.start_epoch()
    assert opt.estimate_due()  # Online(every=1): the next epoch too
    model = make_model()
    offline = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        _MathEstimator({"a": 1.5, "b": 1.5, "fused": 1.5}),
        schedule=Offline(horizon=3),
    )
    assert offline.estimate_due()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        offline.start_epoch()
    assert not offline.estimate_due()
    assert not _blender(WEIGHTS)[1].estimate_due()


def test_direct_blend_estimate_caller_is_warned_once_per_event_at_its_line():
    before = dict.fromkeys(HEADS, 2.0)
    after_train = dict.fromkeys(HEADS, 1.0)
    _, caught = _caught(
        lambda: blend_estimate(before, before, after_train, {"a": 2.5, "b": 2.1, "fused": 3.0})
    )
    assert [w.category for w in caught] == [blendopt.warnings.RejectedEstimateWarning]
    assert caught[0].filename == __file__
    _, caught = _caught(
        lambda: blend_estimate(before, before, after_train, dict.fromkeys(HEADS, 2.5), warn=False)
    )
    assert caught == []


def test_unmasked_zero_weight_head_is_in_the_blend_and_its_inf_loss_is_an_error():
    model, opt = _blender({"a": 0.0, "b": 0.4, "fused": 0.6}, mask_zero_weights=False)
    losses = loss_fn(model, make_batches(1)[0])
    opt.blend(losses).backward()
    assert torch.equal(model.head_a.weight.grad, torch.zeros_like(model.head_a.weight))
    losses = loss_fn(model, make_batches(1)[0])
    losses["a"] = losses["a"] * math.inf
    with pytest.raises(ValueError, match="head 'a' is inf"):
        opt.blend(losses)
    with pytest.raises(TypeError, match="mask_zero_weights"):
        _blender(WEIGHTS, mask_zero_weights="no")


def test_estimate_warning_in_a_step_schedule_points_at_the_users_step_call():
    model = make_model()
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        _MathEstimator({"a": 2.5, "b": 2.1, "fused": 3.0}),  # every estimate is rejected
        schedule=Online(every=2, warmup=2, unit="step"),
    )
    batches = make_batches(2)
    with pytest.warns(blendopt.warnings.RejectedEstimateWarning, match="estimate 0 at step 0"):
        opt.backward(loss_fn(model, batches[0]))  # the step-0 estimate runs in the first blend
    opt.step()
    opt.zero_grad()
    opt.backward(loss_fn(model, batches[1]))
    _, caught = _caught(opt.step)  # the estimate at step 2 runs inside step()
    assert [w.category for w in caught] == [blendopt.warnings.RejectedEstimateWarning]
    assert "G-Blend estimate 1 at step 2 rejected" in str(caught[0].message)
    assert caught[0].filename == __file__  # past torch.optim's step wrapper too


def test_check_finite_every_is_validated():
    with pytest.raises(ValueError, match="check_finite_every"):
        _blender(WEIGHTS, check_finite_every=0)
