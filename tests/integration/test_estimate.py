"""Algorithm 1 (GB-Estimate) end to end on small models."""

import copy
import dataclasses
import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import blendopt
from blendopt import RetrainEstimator, estimate_weights, top1_error
from tests.helpers import HEADS, loss_fn, make_batches, make_model, predict


def _manual_algorithm_1(model, train, holdout, probe, lr, epochs):
    """Algorithm 1 written out from the paper, one head at a time, without the library."""

    def mean_loss(net, loader):
        net.eval()
        with torch.no_grad():
            tot = dict.fromkeys(HEADS, 0.0)
            n = 0
            for batch in loader:
                for h, v in loss_fn(net, batch).items():
                    tot[h] += v.item() * len(batch[2])
                n += len(batch[2])
        return {h: v / n for h, v in tot.items()}

    t0, v0 = mean_loss(copy.deepcopy(model), probe), mean_loss(copy.deepcopy(model), holdout)
    t1, v1 = {}, {}
    for head in HEADS:
        net = copy.deepcopy(model).train()
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        for _ in range(epochs):
            for batch in train:
                opt.zero_grad()
                loss_fn(net, batch)[head].backward()
                opt.step()
        t1[head] = mean_loss(net, probe)[head]
        v1[head] = mean_loss(net, holdout)[head]
    d_g = {h: v0[h] - v1[h] for h in HEADS}
    d_o = {h: (v1[h] - t1[h]) - (v0[h] - t0[h]) for h in HEADS}
    raw = {h: d_g[h] / d_o[h] ** 2 if d_g[h] > 0 else 0.0 for h in HEADS}
    return {h: r / sum(raw.values()) for h, r in raw.items()}, (t0, v0, t1, v1)


def test_matches_algorithm_1_written_out_by_hand():
    model = make_model()
    train, holdout, probe = make_batches(6), make_batches(3, seed=1), make_batches(2, seed=2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    est = estimate_weights(model, loss_fn, train, holdout, optimizer=sgd, epochs=3, probe=probe)
    weights, (t0, _v0, t1, v1) = _manual_algorithm_1(
        model, train, holdout, probe, lr=0.05, epochs=3
    )
    assert est.measurements["train_before"] == pytest.approx(t0, rel=1e-5)
    assert est.measurements["holdout_after"] == pytest.approx(v1, rel=1e-5)
    assert est.measurements["train_after"] == pytest.approx(t1, rel=1e-5)
    assert est.weights == pytest.approx(weights, rel=1e-4, abs=1e-6)
    assert sum(est.weights.values()) == pytest.approx(1.0)


def test_lockstep_equals_one_copy_at_a_time():
    model = make_model(dropout=0.2)
    train, holdout = make_batches(4), make_batches(2, seed=1)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    a = estimate_weights(model, loss_fn, train, holdout, optimizer=sgd, epochs=2, seed=7)
    b = estimate_weights(
        model, loss_fn, train, holdout, optimizer=sgd, epochs=2, seed=7, copies_at_once=1
    )
    assert a.measurements == b.measurements
    c = estimate_weights(model, loss_fn, train, holdout, optimizer=sgd, epochs=2, seed=8)
    assert c.measurements["train_after"] != a.measurements["train_after"], (
        "dropout draws from the seed"
    )


def test_leaves_model_optimizer_and_random_state_untouched():
    model = make_model(batchnorm=True, dropout=0.1).eval()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train = make_batches(3)
    opt.zero_grad()
    sum(loss_fn(model, train[0]).values()).backward()
    opt.step()  # the optimizer has state now
    model_before = copy.deepcopy(model.state_dict())
    opt_before = copy.deepcopy(opt.state_dict())
    grads_before = [p.grad.clone() for p in model.parameters()]
    rng_before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())  # noqa: NPY002

    blender = blendopt.GradientBlender(opt, HEADS)
    estimate_weights(model, loss_fn, train, make_batches(2, seed=1), optimizer=blender, epochs=2)

    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, model_before[k]), k  # parameters and BatchNorm buffers
    assert all(
        torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads_before, strict=True)
    )
    after = opt.state_dict()
    assert after["param_groups"] == opt_before["param_groups"]
    for i, s in opt_before["state"].items():
        for k, v in s.items():
            assert torch.equal(after["state"][i][k], v)
    assert torch.equal(torch.get_rng_state(), rng_before[0])
    assert random.getstate() == rng_before[1]
    assert np.array_equal(np.random.get_state()[1], rng_before[2])  # noqa: NPY002


def _noise_task(n, seed, dim_noise=60):
    """Modality 'a' carries the class; modality 'b' is pure noise (labels independent of it)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    xa = torch.randn(n, 6, generator=g) * 0.8 + 1.5 * F.one_hot(y, 6).float()
    xb = torch.randn(n, dim_noise, generator=g)
    return [(xa[i : i + 32], xb[i : i + 32], y[i : i + 32]) for i in range(0, n, 32)]


def test_pure_noise_modality_gets_weight_near_zero():
    torch.manual_seed(0)
    model = blendopt_two_modal(dim_b=60)
    train, holdout = _noise_task(320, seed=1), _noise_task(160, seed=2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.warns(blendopt.warnings.ZeroedHeadWarning, match="'b'"):
        est = estimate_weights(
            model, loss_fn, train, holdout, optimizer=sgd, epochs=8, probe=train[:5]
        )
    assert est.weights["b"] == 0.0
    assert est.generalization["b"] <= 0
    assert est.weights["a"] > 0.5
    assert est.overfitting_change["b"] > est.overfitting_change["a"]


def blendopt_two_modal(**kwargs):
    from tests.helpers import TwoModalNet

    return TwoModalNet(**kwargs)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
def test_error_metric_fraction_and_steps():
    model = make_model()
    train, holdout = make_batches(8), make_batches(2, seed=1)
    calls = {"train": 0}

    def counting_loss(m, b):
        calls["train"] += m.training  # measurements run in eval mode
        return loss_fn(m, b)

    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    est = estimate_weights(
        model,
        counting_loss,
        train,
        holdout,
        optimizer=sgd,
        epochs=2,
        fraction=0.25,
        metric=top1_error(predict),
        heads=HEADS,
    )
    assert calls["train"] == 2 * 2 * 3  # 2 epochs x 2 batches (25% of 8) x 3 copies
    assert all(0.0 <= v <= 1.0 for v in est.measurements["holdout_after"].values())
    calls["train"] = 0
    estimate_weights(model, counting_loss, train, holdout, optimizer=sgd, steps=11, heads=HEADS)
    assert calls["train"] == 11 * 3  # steps run on past the end of an epoch


def test_higher_is_better_metric_and_optimizer_factory():
    model = make_model()
    train, holdout = make_batches(4), make_batches(2, seed=1)

    def accuracy(m, b):
        logits, y = predict(m, b)
        return {h: (z.argmax(-1) == y).float() for h, z in logits.items()}

    def error(m, b):
        return {h: 1 - v for h, v in accuracy(m, b).items()}

    def factory(params):
        return torch.optim.SGD(params, lr=0.05)

    kwargs = {"optimizer": factory, "epochs": 2, "eps": 1e-4}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        acc = estimate_weights(
            model, loss_fn, train, holdout, metric=accuracy, higher_is_better=True, **kwargs
        )
        err = estimate_weights(model, loss_fn, train, holdout, metric=error, **kwargs)
    assert acc.weights == pytest.approx(err.weights)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 1, "steps": 1}, ValueError, "exactly one of `epochs` and `steps`"),
        ({}, ValueError, "exactly one"),
        ({"epochs": 0}, ValueError, "`epochs` should be an int >= 1"),
        ({"epochs": 1, "fraction": 0.0}, ValueError, r"`fraction` should be in \(0, 1\]"),
        ({"epochs": 1, "metric": "error"}, ValueError, "top1_error"),
        ({"epochs": 1, "optimizer": "sgd"}, TypeError, "torch.optim.Optimizer"),
        ({"epochs": 1, "copies_at_once": 0}, ValueError, "copies_at_once"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    model = make_model()
    args = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.1)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        estimate_weights(model, loss_fn, make_batches(2), make_batches(1), **args)


def test_loss_fn_missing_a_head_and_empty_loader_raise():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)

    def partial(m, b):
        out = loss_fn(m, b)
        del out["b"]
        return out

    with pytest.raises(ValueError, match="no value for head 'b'"):
        estimate_weights(
            model, partial, make_batches(2), make_batches(1), optimizer=sgd, epochs=1, heads=HEADS
        )
    with pytest.raises(ValueError, match="empty loader"):
        estimate_weights(model, loss_fn, [], make_batches(1), optimizer=sgd, epochs=1)


def test_optimizer_param_not_in_model_is_reported():
    model = make_model()
    stray = torch.nn.Parameter(torch.zeros(2))
    sgd = torch.optim.SGD([*model.parameters(), stray], lr=0.1)
    with pytest.raises(ValueError, match=r"shape \(2,\) that is not in the model"):
        estimate_weights(model, loss_fn, make_batches(2), make_batches(1), optimizer=sgd, epochs=1)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_and_data_parallel_models_are_unwrapped():
    model = make_model()
    wrapped = torch.nn.DataParallel(model)
    assert blendopt._distributed.unwrap_model(wrapped) is model
    compiled = torch.compile(model)
    assert blendopt._distributed.unwrap_model(compiled) is model
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    with_compiled = estimate_weights(
        compiled,
        loss_fn,
        make_batches(2),
        make_batches(1),
        optimizer=sgd,
        epochs=1,
        heads=HEADS,
        eps=1e-2,
    )
    plain = estimate_weights(
        model,
        loss_fn,
        make_batches(2),
        make_batches(1),
        optimizer=sgd,
        epochs=1,
        heads=HEADS,
        eps=1e-2,
    )
    assert with_compiled.measurements == plain.measurements


def test_a_config_object_gives_the_same_estimate_as_keywords():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    train, holdout = make_batches(4), make_batches(3, seed=1)
    config = blendopt.retrain.RetrainConfig(epochs=2, seed=5, fraction=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        by_config = estimate_weights(model, loss_fn, train, holdout, optimizer=sgd, config=config)
        by_keywords = estimate_weights(
            model, loss_fn, train, holdout, optimizer=sgd, epochs=2, seed=5, fraction=0.5
        )
        overridden = estimate_weights(
            model, loss_fn, train, holdout, optimizer=sgd, config=config, epochs=1
        )
    assert by_config == by_keywords
    assert overridden != by_config  # a keyword replaces the config's field
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: blendopt.retrain.RetrainConfig(epochs=1, fraction=2.0), ValueError, "fraction"),
        (lambda: blendopt.retrain.RetrainConfig(engine="gpu"), ValueError, "`engine`"),
        (lambda: blendopt.retrain.RetrainConfig.build(None, {"epoch": 1}), TypeError, "`epoch`"),
        (lambda: blendopt.retrain.RetrainConfig.build({"epochs": 1}, {}), TypeError, "`config`"),
        (
            lambda: RetrainEstimator(make_model(), loss_fn, [], [], heads=("a",)),
            ValueError,
            "`heads` is set by the blender",
        ),
    ],
)
def test_bad_config_raises_naming_the_setting(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_train_plan_needs_exactly_one_of_epochs_and_steps():
    # One check for both engines; the loop engine used to train forever on a plan without either.
    for epochs, steps in [(None, None), (1, 2)]:
        with pytest.raises(ValueError, match="exactly one of `epochs` and `steps`"):
            blendopt.retrain.TrainPlan(epochs, steps)
    assert blendopt.retrain.TrainPlan(None, 3).total() == 3


def test_retrain_estimator_builds_its_config():
    config = blendopt.retrain.RetrainConfig(epochs=2, metric="loss")
    est = RetrainEstimator(make_model(), loss_fn, [], [], config=config, seed=3)
    assert est.config == blendopt.retrain.RetrainConfig(epochs=2, seed=3)
    assert est.engine == "auto"
    scheduler = lambda o: torch.optim.lr_scheduler.StepLR(o, 1)  # noqa: E731
    est.scheduler, est.scheduler_interval = scheduler, "epoch"  # set after the blender is built
    assert est.config.scheduler is scheduler


def test_the_retrain_wing_imports_one_way():
    # Each module of blendopt/retrain imports only the modules listed before it.
    import ast
    from pathlib import Path

    order = ["_config", "_clone", "_loop", "_vmap", "_estimate"]
    folder = Path(blendopt.retrain.__file__).parent
    for i, name in enumerate(order):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {
            node.module.rsplit(".", 1)[-1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            and (node.module or "").startswith("blendopt.retrain")
        }
        assert imported <= set(order[:i]), (name, imported - set(order[:i]))
    assert sorted(p.stem for p in folder.glob("_*.py") if p.stem != "__init__") == sorted(order)
