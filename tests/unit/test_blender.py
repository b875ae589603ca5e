"""GradientBlender against plain torch.optim: conformance, aliasing, schedulers, AMP, errors."""

import copy
import math
import pickle

import pytest
import torch

import blendopt
from blendopt import FixedWeights, GradientBlender, Offline, Online, RetrainEstimator
from tests.helpers import HEADS, loss_fn, make_batches, make_model

WEIGHTS = {"a": 0.6, "b": 0.1, "fused": 0.3}

OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5),
}


def _reference_run(make_opt, weights, batches, steps, mask=True):
    model = make_model()
    opt = make_opt(model.parameters())
    for batch in batches[:steps]:
        opt.zero_grad()
        losses = loss_fn(model, batch)
        # Heads at weight 0 are left out of the blend (masked, not multiplied by 0), unless
        # mask_zero_weights=False.
        sum(weights[h] * losses[h] for h in HEADS if weights[h] > 0 or not mask).backward()
        opt.step()
    return model, opt


def _blender_run(make_opt, weights, batches, steps, mask=True):
    model = make_model()
    opt = GradientBlender(make_opt(model.parameters()), HEADS, weights, mask_zero_weights=mask)
    for batch in batches[:steps]:
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()
    return model, opt


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize(
    ("weights", "mask"),
    [
        (WEIGHTS, True),
        ({"a": 0.0, "b": 0.6, "fused": 0.4}, True),
        ({"a": 0.0, "b": 0.6, "fused": 0.4}, False),
    ],
    ids=["positive", "zero_head", "zero_head_unmasked"],
)
def test_matches_plain_optimizer_parameter_by_parameter(name, weights, mask):
    batches = make_batches(6)
    ref, ref_opt = _reference_run(OPTIMIZERS[name], weights, batches, 6, mask)
    got, got_opt = _blender_run(OPTIMIZERS[name], weights, batches, 6, mask)
    for (n, p), q in zip(ref.named_parameters(), got.parameters(), strict=True):
        torch.testing.assert_close(q, p, msg=lambda m, n=n: f"{name}: parameter {n}: {m}")
    # The wrapped optimizer's state is the plain one's.
    ref_state = ref_opt.state_dict()["state"]
    got_state = got_opt.state_dict()["state"]
    assert ref_state.keys() == got_state.keys()
    for key in ref_state:
        for field, value in ref_state[key].items():
            torch.testing.assert_close(got_state[key][field], value)


def test_backward_returns_the_blended_loss():
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, WEIGHTS)
    losses = loss_fn(model, make_batches(1)[0])
    blended = opt.backward(losses)
    expected = sum(WEIGHTS[h] * losses[h].item() for h in HEADS)
    assert blended.item() == pytest.approx(expected, rel=1e-6)
    assert not blended.requires_grad


def test_default_weights_are_uniform_and_fixed_weights_are_not_normalized():
    model = make_model()
    assert GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), HEADS
    ).weights == dict.fromkeys(HEADS, 1 / 3)
    ones = dict.fromkeys(HEADS, 1.0)
    with pytest.warns(blendopt.warnings.WeightSumWarning, match="sums to 3"):
        blender = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, ones)
    assert blender.weights == ones
    est = FixedWeights(WEIGHTS)
    assert (
        GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est).weights == WEIGHTS
    )


def test_param_groups_state_defaults_alias_the_wrapped_optimizer():
    model = make_model()
    inner = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt = GradientBlender(inner, HEADS)
    assert opt.param_groups is inner.param_groups
    assert opt.state is inner.state
    assert opt.defaults is inner.defaults
    opt.param_groups[0]["lr"] = 0.5
    assert inner.param_groups[0]["lr"] == 0.5
    opt.backward(loss_fn(model, make_batches(1)[0]))
    opt.step()
    assert len(inner.state) > 0
    # Still aliased after load_state_dict (which replaces the wrapped optimizer's objects).
    opt.load_state_dict(opt.state_dict())
    assert opt.param_groups is inner.param_groups
    assert opt.state is inner.state
    opt.param_groups[0]["lr"] = 0.25
    assert inner.param_groups[0]["lr"] == 0.25


def test_add_param_group_reaches_the_wrapped_optimizer():
    model = make_model()
    params = list(model.parameters())
    inner = torch.optim.SGD(params[:2], lr=0.1)
    opt = GradientBlender(inner, HEADS)
    opt.add_param_group({"params": params[2:], "lr": 0.01})
    assert len(inner.param_groups) == 2
    assert opt.param_groups[1]["lr"] == 0.01


@pytest.mark.parametrize(
    "make_sched",
    [
        lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5),
        lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.5, total_steps=12),
    ],
    ids=["steplr", "onecycle"],
)
def test_lr_schedulers_drive_the_wrapped_optimizer_also_after_load(make_sched):
    batches = make_batches(12)

    def run(opt, sched, model, lo, hi):
        lrs = []
        for batch in batches[lo:hi]:
            opt.zero_grad()
            losses = loss_fn(model, batch)
            if isinstance(opt, GradientBlender):
                opt.backward(losses)
            else:
                sum(WEIGHTS[h] * losses[h] for h in HEADS).backward()
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        return lrs

    ref_model = make_model()
    ref_opt = torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    ref_lrs = run(ref_opt, make_sched(ref_opt), ref_model, 0, 12)

    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt = GradientBlender(inner, HEADS, WEIGHTS)
    sched = make_sched(opt)
    lrs = run(opt, sched, model, 0, 6)
    saved = (copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()), sched.state_dict())

    model2 = make_model(seed=1)
    model2.load_state_dict(saved[0])
    opt2 = GradientBlender(
        torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9), HEADS, WEIGHTS
    )
    sched2 = make_sched(opt2)
    opt2.load_state_dict(saved[1])
    sched2.load_state_dict(saved[2])
    lrs += run(opt2, sched2, model2, 6, 12)
    assert lrs == pytest.approx(ref_lrs)
    assert opt2.optimizer.param_groups[0]["lr"] == pytest.approx(ref_lrs[-1])
    for p, q in zip(ref_model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(q, p)


def test_grad_scaler_path_matches_plain_optimizer():
    batches = make_batches(4)

    def run(use_blender, poison_step):
        model = make_model()
        inner = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        opt = GradientBlender(inner, HEADS, WEIGHTS) if use_blender else inner
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        for i, batch in enumerate(batches):
            opt.zero_grad()
            losses = loss_fn(model, batch)
            if use_blender:
                opt.backward(losses, scaler=scaler)
            else:
                scaler.scale(sum(WEIGHTS[h] * losses[h] for h in HEADS)).backward()
            if i == poison_step:  # an overflow: the scaler must skip this step
                next(model.parameters()).grad[0, 0] = math.inf
            scaler.step(opt)
            scaler.update()
        return model, scaler.get_scale()

    ref, ref_scale = run(False, poison_step=2)
    got, got_scale = run(True, poison_step=2)
    assert got_scale == ref_scale < 2.0**10
    for p, q in zip(ref.parameters(), got.parameters(), strict=True):
        torch.testing.assert_close(q, p)


def test_gradient_clipping_between_backward_and_step():
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, WEIGHTS)
    opt.backward(loss_fn(model, make_batches(1)[0]))
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm.item() == pytest.approx(1e-3, rel=1e-4)


def test_step_hooks_registered_on_the_blender_run():
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS)
    calls = []
    opt.register_step_post_hook(lambda o, args, kwargs: calls.append(o))
    opt.backward(loss_fn(model, make_batches(1)[0]))
    opt.step()
    assert calls == [opt]


def test_zero_grad_sets_to_none():
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS)
    opt.backward(loss_fn(model, make_batches(1)[0]))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_statistics_hold_per_epoch_means_of_each_head():
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.0), HEADS)  # lr 0: fixed losses
    batches = make_batches(3)
    expected = {h: sum(loss_fn(model, b)[h].item() for b in batches) / 3 for h in HEADS}
    opt.start_epoch()
    for b in batches:
        opt.backward(loss_fn(model, b))
        opt.step()
    assert opt.statistics.running_mean() == pytest.approx(expected)
    opt.start_epoch()
    record = opt.statistics.history[-1]
    assert record["epoch"] == 0
    assert record["steps"] == 3
    assert record["loss"] == pytest.approx(expected)
    assert record["nonfinite"] == dict.fromkeys(HEADS, 0)


def test_set_weights_validates_and_records():
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS)
    opt.set_weights(WEIGHTS)
    assert opt.weights == WEIGHTS
    assert opt.history[-1]["kind"] == "manual"
    assert opt.history[-1]["weights"] == WEIGHTS
    with pytest.raises(ValueError, match="'fused'"):
        opt.set_weights({"a": 1.0, "b": 1.0})
    with pytest.raises(ValueError, match=r"-1\.0 for head 'b'"):
        opt.set_weights({"a": 1.0, "b": -1.0, "fused": 1.0})
    with pytest.raises(ValueError, match="every head"):
        opt.set_weights(dict.fromkeys(HEADS, 0.0))


def test_repr_names_optimizer_heads_weights_and_schedule():
    model = make_model()
    est = RetrainEstimator(model, loss_fn, make_batches(2), make_batches(1, seed=1))
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est, schedule=Online(every=5, warmup=10)
    )
    text = repr(opt)
    assert text.startswith("GradientBlender(SGD, heads=['a', 'b', 'fused']")
    assert "'a': 0.3333" in text
    assert "RetrainEstimator(epochs=None, metric='loss'" in text
    assert "Online(every=5, warmup=10, unit='epoch')" in text
    assert repr(FixedWeights({"a": 1.0})) == "FixedWeights({'a': 1.0})"
    assert repr(Offline(horizon=40)) == "Offline(horizon=40, unit='epoch')"


def test_pickle_and_deepcopy_keep_the_wrapped_optimizer():
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), HEADS, WEIGHTS)
    opt.backward(loss_fn(model, make_batches(1)[0]))
    opt.step()
    clone = pickle.loads(pickle.dumps(opt))
    assert clone.weights == WEIGHTS
    assert clone.param_groups is clone.optimizer.param_groups
    assert copy.deepcopy(opt).heads == HEADS


# -- bad input ---------------------------------------------------------------------------------


def _opt(**kwargs):
    model = make_model()
    return model, GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, **kwargs)


def test_backward_rejects_an_unknown_head():
    model, opt = _opt()
    losses = loss_fn(model, make_batches(1)[0])
    losses["flow"] = losses["a"]
    with pytest.raises(
        ValueError,
        match=r"Parameter `heads` should list every key of `losses`\. Found extra key 'flow'",
    ):
        opt.backward(losses)


def test_backward_rejects_a_missing_head():
    model, opt = _opt()
    losses = loss_fn(model, make_batches(1)[0])
    del losses["b"]
    with pytest.raises(ValueError, match="no loss for head 'b'"):
        opt.backward(losses)


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (
            lambda ls: ls.update(a=ls["a"].expand(2)),
            ValueError,
            "head 'a' should be a scalar. Found shape \\(2,\\)",
        ),
        (lambda ls: ls.update(a=1.0), TypeError, "head 'a' should be a tensor"),
        (lambda ls: ls.update(b=ls["b"].detach()), ValueError, "head 'b' does not require grad"),
        (lambda ls: ls.update(fused=ls["fused"] * math.nan), ValueError, "head 'fused' is nan"),
        (lambda ls: ls.update(a=ls["a"] * math.inf), ValueError, "head 'a' is inf"),
    ],
)
def test_backward_rejects_bad_losses(mutate, error, match):
    model, opt = _opt()
    losses = loss_fn(model, make_batches(1)[0])
    mutate(losses)
    with pytest.raises(error, match=match):
        opt.backward(losses)
    assert all(p.grad is None for p in model.parameters()), "nothing was backpropagated"


def test_backward_rejects_a_non_mapping():
    model, opt = _opt()
    with pytest.raises(TypeError, match="dict head -> scalar loss"):
        opt.backward(list(loss_fn(model, make_batches(1)[0]).values()))


def test_deferred_nonfinite_check_raises_at_the_next_epoch():
    model, opt = _opt(check_finite=False)
    opt.start_epoch()
    losses = loss_fn(model, make_batches(1)[0])
    losses["b"] = losses["b"] * math.nan
    opt.backward(losses)  # counted on the device, not checked now
    with pytest.raises(FloatingPointError, match="head 'b' 1 of 1 steps"):
        opt.start_epoch()


@pytest.mark.parametrize(
    ("heads", "error", "match"),
    [
        ("abc", TypeError, "list of head names"),
        ([], ValueError, "at least one head"),
        (["a", "a"], ValueError, "'a' twice"),
        (["a", 1], TypeError, "strings"),
    ],
)
def test_constructor_rejects_bad_heads(heads, error, match):
    model = make_model()
    with pytest.raises(error, match=match):
        GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), heads)


def test_constructor_rejects_bad_combinations():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        GradientBlender(model, HEADS)
    with pytest.raises(TypeError, match="already a GradientBlender"):
        GradientBlender(GradientBlender(sgd, HEADS), HEADS)
    est = RetrainEstimator(model, loss_fn, make_batches(1), make_batches(1))
    with pytest.raises(ValueError, match="needs a schedule"):
        GradientBlender(sgd, HEADS, est)
    with pytest.raises(ValueError, match="without an `estimator`"):
        GradientBlender(sgd, HEADS, schedule=Offline(horizon=2))
    with pytest.raises(ValueError, match="no weight for head 'fused'"):
        GradientBlender(sgd, HEADS, {"a": 1.0, "b": 1.0})


def test_epoch_schedule_requires_start_epoch():
    model = make_model()
    est = RetrainEstimator(model, loss_fn, make_batches(1), make_batches(1))
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est, schedule=Offline(horizon=1)
    )
    with pytest.raises(RuntimeError, match=r"call `optimizer.start_epoch\(\)`"):
        opt.backward(loss_fn(model, make_batches(1)[0]))


def test_load_state_dict_says_what_differs():
    _, opt = _opt()
    state = opt.state_dict()
    other = GradientBlender(torch.optim.SGD(make_model().parameters(), lr=0.1), ["a", "b", "joint"])
    with pytest.raises(
        ValueError, match=r"heads \['a', 'b', 'fused'\] differ from .*\['a', 'b', 'joint'\]"
    ):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match=r"keys 'state' and 'param_groups'.*Found keys \['lr'\]"):
        opt.load_state_dict({"lr": 0.1})
    with pytest.raises(TypeError, match="should be a mapping"):
        opt.load_state_dict([state])
    with pytest.raises(ValueError, match=r"version 7 .*reads version 2"):
        opt.load_state_dict({**state, "blender": {**state["blender"], "version": 7}})


def test_load_state_dict_of_other_parameter_groups_shows_torchs_error_with_the_counts():
    # torch's own load_state_dict checks the counts; the blender adds them and the fix.
    _, opt = _opt()
    state = opt.state_dict()
    params = list(make_model().parameters())
    fewer = GradientBlender(torch.optim.SGD(params[:3], lr=0.1), HEADS, WEIGHTS)
    with pytest.raises(ValueError, match="parameter group") as caught:
        fewer.load_state_dict(state)
    assert str(caught.value) == (
        "loaded state dict contains a parameter group that doesn't match the size of "
        "optimizer's group: the checkpoint's parameter groups hold [12] parameters, this "
        "optimizer's [3]; build the optimizer over the same model and parameter groups."
    )
    two_groups = GradientBlender(
        torch.optim.SGD([{"params": params[:3]}, {"params": params[3:]}], lr=0.1), HEADS, WEIGHTS
    )
    with pytest.raises(
        ValueError,
        match=r"different number of parameter groups: .*\[12\] parameters, .*'s \[3, 9\];",
    ):
        two_groups.load_state_dict(state)
    # nothing was loaded: the blender's own state is untouched
    assert fewer.weights == two_groups.weights == WEIGHTS
    assert fewer._controller.steps == 0


def test_blender_methods_refuse_to_run_on_a_wrapper_that_is_not_the_blender():
    # A wrapper that subclasses the blender's class without being constructed as one (PyTorch
    # Lightning's LightningOptimizer, without blendopt.integrations.lightning imported).
    class Wrapper(GradientBlender):
        def __init__(self, blender):  # no GradientBlender.__init__
            self._optimizer = blender

        def __getattr__(self, name):
            return getattr(self._optimizer, name)

    model, blender = _opt()
    wrapper = Wrapper(blender)
    losses = loss_fn(model, make_batches(1)[0])
    for call in (lambda: wrapper.blend(losses), wrapper.state_dict):
        with pytest.raises(
            TypeError, match=r"called on a Wrapper, .*import blendopt.integrations.lightning"
        ):
            call()
    with pytest.raises(TypeError, match=r"load_state_dict\(\) was called on a Wrapper"):
        wrapper.load_state_dict(blender.state_dict())
    assert repr(wrapper) == "Wrapper" + repr(blender)[len("GradientBlender") :]


def test_public_api_is_exported():
    for name in blendopt.__all__:
        assert hasattr(blendopt, name), name


def test_blend_returns_the_weighted_sum_with_its_graph_and_backward_matches():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    x = torch.randn(4, 3)
    blender = blendopt.GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), ["a", "b"], {"a": 0.25, "b": 0.75}
    )
    out = model(x)
    losses = {"a": out[:, 0].pow(2).mean(), "b": out[:, 1].abs().mean()}
    blended = blender.blend(losses)
    assert blended.requires_grad
    expected = 0.25 * losses["a"] + 0.75 * losses["b"]
    torch.testing.assert_close(blended, expected)
    blended.backward()
    via_blend = [p.grad.clone() for p in model.parameters()]
    blender.zero_grad()
    out = model(x)
    blender.backward({"a": out[:, 0].pow(2).mean(), "b": out[:, 1].abs().mean()})
    for got, want in zip(via_blend, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want)
    assert blender.statistics.steps == 2
