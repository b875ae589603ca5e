"""`engine="vmap"` against `engine="loop"` in Algorithm 1 (issue 8 item 4): same weights, same
notes, and clear refusals where the vmap engine cannot run."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import blendopt
from blendopt import estimate_weights, retrain
from blendopt.retrain import _vmap as vmap_copies
from tests.helpers import HEADS, loss_fn, make_batches, make_model

OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
}


def _loader(n_batches: int = 6, seed: int = 0) -> DataLoader:
    xa, xb, y = (torch.cat(t) for t in zip(*make_batches(n_batches, seed=seed), strict=True))
    return DataLoader(
        TensorDataset(xa, xb, y),
        batch_size=16,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )


def _both(**kwargs):
    return {e: estimate_weights(engine=e, **kwargs) for e in ("loop", "vmap")}


def _assert_same(loop, vmap, rel=1e-4):
    assert vmap.accepted == loop.accepted
    assert list(vmap.weights) == list(loop.weights)
    assert vmap.weights == pytest.approx(loop.weights, rel=rel, abs=1e-6)
    for key, values in loop.measurements.items():
        assert vmap.measurements[key] == pytest.approx(values, rel=rel, nan_ok=True), key
    assert vmap.notes == loop.notes


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("copies_at_once", [None, 2])
def test_vmap_and_loop_give_the_same_weights(name, copies_at_once):
    model = make_model()
    opt = OPTIMIZERS[name](model.parameters())
    before = copy.deepcopy(model.state_dict())
    got = _both(
        model=model,
        loss_fn=loss_fn,
        train=_loader(),  # shuffled: both engines must read the same order
        holdout=make_batches(3, seed=1),
        probe=make_batches(2, seed=2),
        optimizer=opt,
        epochs=2,
        copies_at_once=copies_at_once,
    )
    _assert_same(got["loop"], got["vmap"])
    assert got["loop"].measurements["train_after"] != got["loop"].measurements["train_before"]
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], atol=0, rtol=0)


def test_vmap_reads_the_loop_data_with_fraction_and_an_epoch_aware_sampler():
    xa, xb, y = (torch.cat(t) for t in zip(*make_batches(6), strict=True))
    data = TensorDataset(xa, xb, y)
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=1, rank=0, seed=0)
    model = make_model()
    got = _both(
        model=model,
        loss_fn=loss_fn,
        train=DataLoader(data, batch_size=16, sampler=sampler),  # shuffles by set_epoch
        holdout=make_batches(3, seed=1),
        optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
        epochs=3,
        fraction=0.5,
    )
    _assert_same(got["loop"], got["vmap"])
    assert sampler.epoch == 0  # the run's epoch is put back


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_vmap_replays_the_learning_rate_schedule_like_the_loop(interval):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    run_scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(3):  # the run is part-way along its schedule
        opt.step()
        run_scheduler.step()
    common = {
        "model": model,
        "loss_fn": loss_fn,
        "train": make_batches(4),
        "holdout": make_batches(3, seed=1),
        "optimizer": opt,
        "epochs": 3,
        "scheduler_interval": interval,
    }
    replayed = _both(scheduler=run_scheduler, **common)
    _assert_same(replayed["loop"], replayed["vmap"])
    factory = _both(
        scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1),
        scheduler_position=3,
        **common,
    )
    _assert_same(factory["loop"], factory["vmap"])
    constant = estimate_weights(engine="vmap", **common | {"scheduler_interval": None})
    # the schedule changes what the vmap copies learn (it is not ignored)
    assert constant.measurements["train_after"] != pytest.approx(
        replayed["vmap"].measurements["train_after"], rel=1e-6
    )


def test_vmap_skips_and_counts_empty_batches_like_the_loop():
    batches = make_batches(4)
    empty = tuple(t[:0] for t in batches[0])
    train = [empty, batches[0], batches[1], empty, batches[2], batches[3]]
    model = make_model()
    got = _both(
        model=model,
        loss_fn=loss_fn,
        train=train,
        holdout=make_batches(3, seed=1),
        optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
        steps=3,
    )
    _assert_same(got["loop"], got["vmap"])
    assert any("skipped 10 empty batches (2 while training" in n for n in got["vmap"].notes)


def test_vmap_rejects_a_loader_without_non_empty_batches():
    batches = make_batches(1)
    empty = tuple(t[:0] for t in batches[0])
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    training = retrain.CopyTraining(loss_fn, [empty], HEADS, retrain.TrainPlan(1, None), sgd)
    with pytest.raises(ValueError, match="no non-empty batch in a pass"):
        retrain.train_copies_vmap(model, HEADS, training)


def test_vmap_reports_a_diverged_copy_like_the_loop():
    model = make_model()
    groups = [
        {"params": list(model.enc_b.parameters()) + list(model.head_b.parameters()), "lr": 1e35},
        {"params": list(model.enc_a.parameters()) + list(model.head_a.parameters())},
        {"params": list(model.head_fused.parameters())},
    ]
    opt = torch.optim.SGD(groups, lr=0.05, momentum=0.9)  # copies b and fused blow up
    got = {}
    for engine in ("loop", "vmap"):
        with pytest.warns(
            blendopt.warnings.DivergedCopyWarning, match="head 'b': its copy diverged"
        ):
            got[engine] = estimate_weights(
                model,
                loss_fn,
                make_batches(4),
                make_batches(3, seed=1),
                optimizer=opt,
                epochs=2,
                engine=engine,
            )
    _assert_same(got["loop"], got["vmap"])
    vmap = got["vmap"]
    assert vmap.weights["b"] == 0.0
    assert vmap.weights["a"] > 0
    assert any(n.startswith("head 'b': its copy diverged (loss") for n in vmap.notes)


def test_vmap_notes_the_steps_it_skipped_for_a_copy():
    model = make_model()
    batches = make_batches(4)
    xa, xb, y = batches[2]
    batches[2] = (xa, torch.full_like(xb, float("nan")), y)  # heads b and fused non-finite
    with pytest.warns(blendopt.warnings.DivergedCopyWarning):
        est = estimate_weights(
            model,
            loss_fn,
            batches,
            make_batches(3, seed=1),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
            epochs=1,
            engine="vmap",
        )
    assert "head 'a': 1 steps of its copy were skipped by the vmap engine" in " ".join(est.notes)
    assert "head 'b': its copy diverged (loss nan at step 2, epoch 0)" in " ".join(est.notes)


def _blender_run(engine, name):
    model = make_model()
    estimator = blendopt.RetrainEstimator(
        model, loss_fn, make_batches(4), make_batches(3, seed=1), epochs=1, engine=engine
    )
    blender = blendopt.GradientBlender(
        OPTIMIZERS[name](model.parameters()), HEADS, estimator, schedule=blendopt.Online(every=1)
    )
    for _ in range(2):
        blender.start_epoch()
        for batch in make_batches(4, seed=3):
            blender.zero_grad()
            blender.backward(loss_fn(model, batch))
            blender.step()
    return blender, model


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_gradient_blender_with_retrain_estimator_engines_agree(name):
    loop, loop_model = _blender_run("loop", name)
    vmap, vmap_model = _blender_run("vmap", name)
    assert len(loop.history) == len(vmap.history) == 2
    for a, b in zip(loop.history, vmap.history, strict=True):
        assert a["kind"] == b["kind"]
        # float32 differences of the batched matmuls (~1e-7 on losses of ~1) reach dO ~1e-3
        # and, squared in w ∝ dG/dO², the weights at ~1e-4: tolerance 1e-3
        assert b["weights"] == pytest.approx(a["weights"], rel=1e-3, abs=1e-6)
    vmap_state = vmap_model.state_dict()
    for key, value in loop_model.state_dict().items():
        torch.testing.assert_close(vmap_state[key], value, atol=1e-5, rtol=1e-4, msg=key)
    assert "engine='vmap'" in repr(vmap._controller.estimator)


class _ItemNet(torch.nn.Module):
    """A forward that reads a value on the host: it cannot run under vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = make_model()

    def forward(self, xa, xb):
        out = self.inner(xa, xb)
        if out["a"].sum().item() > 1e9:
            return out
        return out


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("train_step", r"engine` is 'vmap' but `train_step=` is given"),
        ("distributed", r"engine` is 'vmap' but torch.distributed is initialized"),
        ("lbfgs", r"engine` is 'vmap' but LBFGS needs a closure"),
        ("forward", r"engine` is 'vmap' but the model's forward does not run under vmap"),
    ],
)
def test_vmap_refuses_what_it_does_not_support(case, match, monkeypatch):
    model = _ItemNet() if case == "forward" else make_model()
    opt = (
        torch.optim.LBFGS(model.parameters())
        if case == "lbfgs"
        else torch.optim.SGD(model.parameters(), lr=0.1)
    )
    kwargs = {}
    if case == "train_step":
        kwargs["train_step"] = lambda net, o, batch, head: loss_fn(net, batch)[head]
    if case == "distributed":
        monkeypatch.setattr(vmap_copies, "world_size", lambda: 2)
    with pytest.raises(ValueError, match=match) as error:
        estimate_weights(
            model,
            loss_fn,
            make_batches(2),
            make_batches(1, seed=1),
            optimizer=opt,
            epochs=1,
            engine="vmap",
            **kwargs,
        )
    assert "engine='loop'" in str(error.value)
    if case == "train_step":  # "auto" is the loop, which runs the custom step
        args = (model, loss_fn, make_batches(4), make_batches(3, seed=1))
        with warnings.catch_warnings():  # the step above trains nothing: a rejected estimate
            warnings.simplefilter("ignore", blendopt.BlendWarning)
            auto = estimate_weights(*args, optimizer=opt, epochs=1, **kwargs)
            loop = estimate_weights(*args, optimizer=opt, epochs=1, engine="loop", **kwargs)
        assert auto == loop


def test_bad_engine_values():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"`engine` should be one of .*Found 'gpu'"):
        estimate_weights(model, loss_fn, make_batches(2), make_batches(1), optimizer=opt, epochs=1,
                         engine="gpu")  # fmt: skip
    with pytest.raises(TypeError, match="`engine` should be one of"):
        blendopt.RetrainEstimator(model, loss_fn, make_batches(2), make_batches(1), engine=1)


def test_auto_chooses_the_loop_on_the_cpu(monkeypatch):
    def no_vmap(*args, **kwargs):
        raise AssertionError("the vmap engine should not run on the CPU under 'auto'")

    monkeypatch.setattr(retrain._estimate, "train_copies_vmap", no_vmap)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train, holdout = make_batches(4), make_batches(3, seed=1)
    auto = estimate_weights(model, loss_fn, train, holdout, optimizer=opt, epochs=1)
    loop = estimate_weights(model, loss_fn, train, holdout, optimizer=opt, epochs=1, engine="loop")
    assert auto == loop

    estimator = blendopt.RetrainEstimator(model, loss_fn, train, holdout, epochs=1)
    assert estimator.engine == "auto"
    assert estimator.engine_chosen is None
    blender = blendopt.GradientBlender(opt, HEADS, estimator, schedule=blendopt.Offline(1))
    blender.start_epoch()
    assert estimator.engine_chosen == "loop"
    assert estimator.state_dict() == {"engine_chosen": "loop"}
    fresh = blendopt.RetrainEstimator(model, loss_fn, train, holdout, epochs=1)
    fresh.load_state_dict({"engine_chosen": "vmap"})  # a choice made on a GPU is kept
    assert fresh.engine_chosen == "vmap"
    fresh.load_state_dict({})  # older checkpoints: choose again
    assert fresh.engine_chosen is None
    with pytest.raises(ValueError, match="engine_chosen='gpu'"):
        fresh.load_state_dict({"engine_chosen": "gpu"})


def test_auto_is_the_loop_and_a_saved_vmap_choice_is_kept(monkeypatch):
    engines = []
    real = retrain._estimate.resolve_engine

    def resolve(engine, model, training):
        engines.append(engine)
        return real(engine, model, training)

    monkeypatch.setattr(retrain._estimate, "resolve_engine", resolve)
    model = make_model()
    estimator = blendopt.RetrainEstimator(
        model, loss_fn, make_batches(4), make_batches(3, seed=1), epochs=1
    )
    blender = blendopt.GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.05),
        HEADS,
        estimator,
        schedule=blendopt.Online(every=1),
    )
    blender.start_epoch()
    assert estimator.engine_chosen == "loop"
    estimator.load_state_dict({"engine_chosen": "vmap"})  # chosen on a GPU by an older run
    blender.start_epoch()
    assert len(blender.history) == 2
    assert engines == ["loop", "vmap"]
    assert estimator.engine_chosen == "vmap"
