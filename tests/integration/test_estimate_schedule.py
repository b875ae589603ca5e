"""The copies of Algorithm 1 train along the run's learning-rate schedule (issue 7 item 3)."""

import copy

import pytest
import torch
from torch.optim.lr_scheduler import OneCycleLR, ReduceLROnPlateau, StepLR

import blendopt
from blendopt import GradientBlender, Online, RetrainEstimator, estimate_weights
from tests.helpers import HEADS, loss_fn, make_batches, make_model

pytestmark = [
    pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning"),
    pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning"),
]


class LrRecorder:
    """A ``train_step`` that records the copy's learning rate at each step, then steps."""

    def __init__(self):
        self.lrs = {h: [] for h in HEADS}

    def __call__(self, model, optimizer, batch, head):
        self.lrs[head].append(optimizer.param_groups[0]["lr"])
        loss = loss_fn(model, batch)[head]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()


def _main_run(scheduler_factory, interval, schedule, epochs, batches):
    """A blended run; returns the learning rate of every step and the copies' recorded ones."""
    model = make_model()
    train, holdout = make_batches(batches), make_batches(2, seed=1)
    recorder = LrRecorder()
    estimates = []

    def record(model, optimizer, batch, head):
        return recorder(model, optimizer, batch, head)

    est = RetrainEstimator(
        model,
        loss_fn,
        train,
        holdout,
        scheduler=scheduler_factory,
        scheduler_interval=interval,
        train_step=record,
    )
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), HEADS, est, schedule=schedule
    )
    scheduler = scheduler_factory(opt)
    lrs = []
    for _ in range(epochs):
        if opt.start_epoch() is not None:
            estimates.append((len(lrs), copy.deepcopy(recorder.lrs)))
            recorder.lrs = {h: [] for h in HEADS}
        for batch in train:
            lrs.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
            if interval == "step":
                scheduler.step()
        if interval == "epoch":
            scheduler.step()
    return lrs, estimates


def test_copies_follow_onecyclelr_per_step():
    epochs, batches = 6, 3

    def factory(opt):
        return OneCycleLR(opt, max_lr=0.5, total_steps=epochs * batches)

    lrs, estimates = _main_run(factory, "step", Online(every=2), epochs, batches)
    assert [start for start, _ in estimates] == [0, 6, 12]
    for start, copies in estimates:
        for h in HEADS:
            assert copies[h] == lrs[start : start + 2 * batches], (start, h)
    assert lrs[0] == pytest.approx(0.5 / 25)  # warm-up: the old copies stayed here
    assert max(lrs[:6]) > 0.4


def test_copies_follow_steplr_per_epoch():
    epochs, batches = 5, 2

    def factory(opt):
        return StepLR(opt, step_size=1, gamma=0.5)

    lrs, estimates = _main_run(factory, "epoch", Online(every=2, warmup=1), epochs, batches)
    assert [start for start, _ in estimates] == [0, 2, 6]
    horizons = [1, 2, 2]
    for (start, copies), n in zip(estimates, horizons, strict=True):
        for h in HEADS:
            assert copies[h] == lrs[start : start + n * batches], (start, h)
    assert lrs[2] == 0.05


def test_replaying_the_runs_scheduler_mid_run():
    model = make_model()
    train, holdout = make_batches(3), make_batches(2, seed=1)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = OneCycleLR(sgd, max_lr=0.4, total_steps=12)
    for batch in train:  # one epoch of the run
        sgd.zero_grad()
        sum(loss_fn(model, batch).values()).backward()
        sgd.step()
        scheduler.step()
    state = copy.deepcopy(scheduler.state_dict())
    group = dict(sgd.param_groups[0])
    recorder = LrRecorder()
    estimate_weights(
        model,
        loss_fn,
        train,
        holdout,
        optimizer=sgd,
        epochs=2,
        scheduler=scheduler,
        scheduler_interval="step",
        train_step=recorder,
    )
    # The run's scheduler and optimizer are untouched ...
    assert scheduler.state_dict() == state
    assert {k: v for k, v in sgd.param_groups[0].items() if k != "params"} == {
        k: v for k, v in group.items() if k != "params"
    }
    # ... and the copies took the rates the run takes next.
    expected = []
    for _ in range(6):
        expected.append(sgd.param_groups[0]["lr"])
        sgd.step()
        scheduler.step()
    for h in HEADS:
        assert recorder.lrs[h] == expected


def test_a_factory_fast_forwards_to_the_given_position():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    recorder = LrRecorder()

    def factory(opt):
        return StepLR(opt, step_size=2, gamma=0.1)

    estimate_weights(
        model,
        loss_fn,
        make_batches(2),
        make_batches(1, seed=1),
        optimizer=sgd,
        epochs=3,
        scheduler=factory,
        scheduler_interval="epoch",
        scheduler_position=1,
        train_step=recorder,
        heads=HEADS,
    )
    # StepLR from 0.1: epochs 1, 2, 3 of the run have 0.1, 0.01, 0.01 (two batches each).
    assert recorder.lrs["a"] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.01], rel=1e-12)
    assert sgd.param_groups[0]["lr"] == 0.1


def test_per_step_scheduler_steps_once_per_optimizer_step_under_accumulation():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def accumulate(model, optimizer, batch, head):
        seen.append(optimizer.param_groups[0]["lr"])
        loss = loss_fn(model, batch)[head]
        (loss / 2).backward()
        if len(seen) % 2 == 0:
            optimizer.step()
            optimizer.zero_grad()
        return loss.detach()

    estimate_weights(
        model,
        loss_fn,
        make_batches(4),
        make_batches(1, seed=1),
        optimizer=sgd,
        epochs=1,
        heads=["a"],
        scheduler=lambda opt: StepLR(opt, step_size=1, gamma=0.5),
        scheduler_interval="step",
        train_step=accumulate,
        metric=lambda m, b: {"a": loss_fn(m, b)["a"]},
    )
    assert seen == pytest.approx([0.1, 0.1, 0.05, 0.05])


def test_without_a_scheduler_the_copies_keep_the_current_rate():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    recorder = LrRecorder()
    estimate_weights(
        model, loss_fn, make_batches(2), make_batches(1), optimizer=sgd, epochs=2,
        train_step=recorder,
    )  # fmt: skip
    assert recorder.lrs["fused"] == [0.1] * 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"scheduler": lambda o: StepLR(o, 1)}, ValueError, "`scheduler_interval` should be"),
        ({"scheduler_interval": "step"}, ValueError, "no `scheduler` was given"),
        ({"scheduler": "onecycle", "scheduler_interval": "step"}, TypeError, "LRScheduler"),
        ({"train_step": 3}, TypeError, "`train_step` should be callable"),
    ],
)
def test_bad_scheduler_arguments_raise(kwargs, error, match):
    model = make_model()
    args = {"optimizer": torch.optim.SGD(model.parameters(), lr=0.1), "epochs": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        estimate_weights(model, loss_fn, make_batches(2), make_batches(1), **args)
    if "train_step" not in kwargs:
        with pytest.raises(error, match=match):
            RetrainEstimator(model, loss_fn, make_batches(2), make_batches(1), **kwargs)


def test_reduce_on_plateau_and_bad_factory_are_refused():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        estimate_weights(
            model, loss_fn, make_batches(2), make_batches(1), optimizer=sgd, epochs=1,
            scheduler=ReduceLROnPlateau(sgd), scheduler_interval="epoch",
        )  # fmt: skip
    with pytest.raises(TypeError, match="built on the optimizer it is given"):
        estimate_weights(
            model, loss_fn, make_batches(2), make_batches(1), optimizer=sgd, epochs=1,
            scheduler=lambda opt: StepLR(sgd, 1), scheduler_interval="epoch",
        )  # fmt: skip


def test_repr_names_the_scheduler():
    est = RetrainEstimator(
        make_model(), loss_fn, [], [], scheduler=lambda o: StepLR(o, 1), scheduler_interval="epoch"
    )
    assert "scheduler_interval='epoch'" in repr(est)
    assert blendopt.RetrainEstimator(make_model(), loss_fn, [], []).scheduler is None


def test_replaying_a_sequential_scheduler_bound_to_the_blender():
    # The run's own scheduler object, set on the estimator after the blender is built; a
    # composite scheduler whose children are bound to the blender too.
    epochs, batches = 4, 3
    model = make_model()
    train, holdout = make_batches(batches), make_batches(2, seed=1)
    recorder = LrRecorder()
    est = RetrainEstimator(model, loss_fn, train, holdout, train_step=recorder)
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est, schedule=Online(every=2)
    )
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=4)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=8)
    scheduler = torch.optim.lr_scheduler.SequentialLR(opt, [warmup, cosine], milestones=[4])
    est.scheduler, est.scheduler_interval = scheduler, "step"
    lrs, copies = [], []
    for _ in range(epochs):
        if opt.start_epoch() is not None:
            copies.append((len(lrs), recorder.lrs))
            recorder.lrs = {h: [] for h in HEADS}
        for batch in train:
            lrs.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
            scheduler.step()
    assert [start for start, _ in copies] == [0, 6]
    for start, recorded in copies:
        for h in HEADS:
            assert recorded[h] == pytest.approx(lrs[start : start + 2 * batches], rel=1e-12)
    assert len(set(lrs)) > 6


@pytest.mark.parametrize("replay", ["factory", "object"])
def test_step_unit_estimates_inside_step_follow_the_next_rates(replay):
    # Estimates due by steps run inside optimizer.step(), before the run's scheduler.step():
    # the copies must start at the rate of the run's next step, not the one just used.
    model = make_model()
    train, holdout = make_batches(4), make_batches(2, seed=1)
    recorder = LrRecorder()

    def factory(opt):
        return OneCycleLR(opt, max_lr=0.5, total_steps=20)

    est = RetrainEstimator(model, loss_fn, train, holdout, train_step=recorder)
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        est,
        schedule=Online(every=3, unit="step"),
    )
    scheduler = factory(opt)
    est.scheduler = factory if replay == "factory" else scheduler
    est.scheduler_interval = "step"
    lrs, copies = [], []
    for _ in range(3):
        for batch in train:
            lrs.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
            if recorder.lrs["a"]:
                copies.append((opt.history[-1]["step"], recorder.lrs))
                recorder.lrs = {h: [] for h in HEADS}
            scheduler.step()
    for _ in range(3):  # the rates the run would take next
        lrs.append(opt.param_groups[0]["lr"])
        scheduler.step()
    assert [start for start, _ in copies] == [0, 3, 6, 9, 12]
    for start, recorded in copies:
        assert recorded["fused"] == lrs[start : start + 3], start
