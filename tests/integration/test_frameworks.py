"""Frameworks that call backward themselves: PyTorch Lightning, Hugging Face Accelerate, AMP.

Each framework run is compared with the plain loop (``blender.backward`` + ``step``) on the same
model, seed and batches: same final parameters, same weights, same estimate epochs.
"""

import copy
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import accelerate
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

import blendopt
from blendopt import GradientBlender, Online, RetrainEstimator
from blendopt.integrations.lightning import GradientBlendCallback
from tests.helpers import HEADS, loss_fn, make_batches, make_model

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = {"a": 0.5, "b": 0.2, "fused": 0.3}
EPOCHS = 3
TIGHT = {"rtol": 1e-6, "atol": 1e-7}

# Lightning's own advice (few DataLoader workers, a deprecation inside its pytree helper) is noise
# here; blendopt's warnings still fail the tests (pyproject's filterwarnings).
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:pytorch_lightning"),
    pytest.mark.filterwarnings("ignore::UserWarning:lightning_fabric"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pytorch_lightning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:lightning_fabric"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def _sgd(params):
    return torch.optim.SGD(params, lr=0.1, momentum=0.9)


def _online_estimator(model):
    return RetrainEstimator(
        model, loss_fn, make_batches(3, seed=1), make_batches(2, seed=2), epochs=1, seed=3
    )


def _plain_run(*, estimator="fixed", scheduler=False, epochs=EPOCHS, batches=None):
    """The reference: the documented plain loop."""
    batches = make_batches(4) if batches is None else batches
    model = make_model()
    if estimator == "fixed":
        blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    else:
        blender = GradientBlender(
            _sgd(model.parameters()),
            HEADS,
            _online_estimator(model),
            schedule=Online(every=2, warmup=1),
        )
    sched = torch.optim.lr_scheduler.StepLR(blender, 1, 0.5) if scheduler else None
    for _ in range(epochs):
        blender.start_epoch()
        for batch in batches:
            blender.zero_grad()
            blender.backward(loss_fn(model, batch))
            blender.step()
        if sched is not None:
            sched.step()
    return model, blender


def _assert_same_statistics(got, want):
    """Per-head train-loss statistics recorded by ``blend``: closed epochs and the open one."""
    assert got.statistics.history == want.statistics.history
    assert got.statistics.steps == want.statistics.steps
    assert got.statistics.running_mean() == pytest.approx(want.statistics.running_mean(), rel=1e-9)


def _history(blender):
    """``blender.history`` without the wall-clock seconds."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in blender.history]


def _assert_same_parameters(got, want):
    for (name, p), q in zip(got.named_parameters(), want.parameters(), strict=True):
        torch.testing.assert_close(p, q, **TIGHT, msg=lambda m, n=name: f"{n}: {m}")


# -- PyTorch Lightning ----------------------------------------------------------------------------


class BlendModule(pl.LightningModule):
    """Automatic optimization: ``training_step`` returns the blended loss, Lightning backprops.

    ``via``: ``"blender"`` blends with the blender itself; ``"wrapper"`` with
    ``self.optimizers()`` (Lightning's ``LightningOptimizer``) and also starts the epochs through
    it from the module's own ``on_train_epoch_start`` hook instead of the callback.
    """

    def __init__(self, *, estimator="fixed", scheduler=False, via="blender"):
        super().__init__()
        self.net = make_model()
        self.estimator_kind = estimator
        self.scheduler = scheduler
        self.via = via

    def on_train_epoch_start(self):
        if self.via == "wrapper":
            self.optimizers().start_epoch()

    def training_step(self, batch, batch_idx):
        blender = self.optimizers() if self.via == "wrapper" else self.blender
        return blender.blend(loss_fn(self.net, batch))

    def configure_optimizers(self):
        if self.estimator_kind == "fixed":
            self.blender = GradientBlender(_sgd(self.parameters()), HEADS, WEIGHTS)
        else:
            self.blender = GradientBlender(
                _sgd(self.parameters()),
                HEADS,
                _online_estimator(self.net),
                schedule=Online(every=2, warmup=1),
            )
        if not self.scheduler:
            return self.blender
        sched = torch.optim.lr_scheduler.StepLR(self.blender, 1, 0.5)
        return {"optimizer": self.blender, "lr_scheduler": sched}


def _fit(module, *, epochs=EPOCHS, callbacks=None, batches=None, ckpt_path=None, **trainer_kwargs):
    batches = make_batches(4) if batches is None else batches
    settings = {
        "max_epochs": epochs,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
        "callbacks": [GradientBlendCallback()] if callbacks is None else callbacks,
    }
    trainer = pl.Trainer(**{**settings, **trainer_kwargs})
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None), ckpt_path=ckpt_path)
    return trainer


@pytest.mark.parametrize("scheduler", [False, True], ids=["no_scheduler", "steplr"])
def test_lightning_automatic_optimization_matches_plain_loop(scheduler):
    module = BlendModule(scheduler=scheduler)
    _fit(module)
    ref_model, ref = _plain_run(scheduler=scheduler)
    _assert_same_parameters(module.net, ref_model)
    assert module.blender._controller.steps == ref._controller.steps == EPOCHS * 4
    assert module.blender.param_groups[0]["lr"] == pytest.approx(ref.param_groups[0]["lr"])
    # the statistics recorded by `blend` inside Lightning's closure match the plain loop's
    _assert_same_statistics(module.blender, ref)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
def test_lightning_online_estimates_at_scheduled_epochs():
    module = BlendModule(estimator="online")
    _fit(module, epochs=5)
    ref_model, ref = _plain_run(estimator="online", epochs=5)
    got = [(r["kind"], r["epoch"]) for r in module.blender.history]
    assert got == [(r["kind"], r["epoch"]) for r in ref.history]
    assert [epoch for _, epoch in got] == [0, 1, 3]  # Online(every=2, warmup=1)
    assert module.blender.weights == pytest.approx(ref.weights, rel=1e-6)
    assert module.blender.weights != pytest.approx(blendopt.functional.uniform_weights(HEADS))
    _assert_same_parameters(module.net, ref_model)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
def test_lightning_optimizer_wrapper_forwards_to_the_blender():
    # `self.optimizers()` is a LightningOptimizer that imitates the blender's class: its
    # `start_epoch` and `blend` must update the blender itself (weights, counters, history),
    # not attributes of the wrapper.
    module = BlendModule(estimator="online", via="wrapper")
    _fit(module, epochs=5, callbacks=[])
    ref_model, ref = _plain_run(estimator="online", epochs=5)
    blender = module.blender
    assert [r["epoch"] for r in blender.history] == [r["epoch"] for r in ref.history]
    assert blender._controller.epochs_started == 5
    assert blender.weights == pytest.approx(ref.weights, rel=1e-6)
    wrapper = module.trainer.strategy._lightning_optimizers[0]
    assert set(vars(wrapper)) <= {"_optimizer", "_strategy", "_on_before_step", "_on_after_step"}
    assert wrapper.weights == blender.weights
    assert repr(wrapper) == "Lightning" + repr(blender)  # as for a plain optimizer
    assert str(wrapper.state_dict()) == str(blender.state_dict())  # not nested in itself
    _assert_same_parameters(module.net, ref_model)


def test_lightning_optimizer_repr_is_lightning_plus_the_optimizers_as_for_torch_optim():
    # Optimizer.__repr__ uses `self.__class__.__name__`, so LightningOptimizer(opt) shows as
    # "Lightning" + repr(opt); blendopt used to hard-code the name (and forward repr).
    model = make_model()
    plain = _sgd(model.parameters())
    blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    assert str(LightningOptimizer(plain)) == "Lightning" + str(plain)
    assert str(LightningOptimizer(blender)) == "Lightning" + str(blender)
    assert str(blender).startswith("GradientBlender(SGD, heads=['a', 'b', 'fused'], weights=")


def test_lightning_optimizer_forwarding_is_only_on_lightnings_wrapper_classes():
    class MyBlender(GradientBlender):
        pass

    assert "blend" not in vars(MyBlender)
    assert "blend" in vars(
        type(LightningOptimizer(MyBlender(_sgd(make_model().parameters()), HEADS)))
    )


class _PlainModule(BlendModule):
    """The same module trained by the plain optimizer on the summed loss."""

    def training_step(self, batch, batch_idx):
        return sum(loss_fn(self.net, batch).values())

    def configure_optimizers(self):
        optimizer = _sgd(self.parameters())
        if not self.scheduler:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5),
        }


@pytest.mark.parametrize("scheduler", [False, True], ids=["no_scheduler", "steplr"])
def test_lightning_lr_monitor_logs_a_blender_under_the_plain_optimizers_key_once(
    tmp_path, scheduler
):
    # LearningRateMonitor names a scheduler after `scheduler.optimizer` (the blender) and then
    # unwraps optimizers with an `.optimizer` attribute: it used to log "lr-GradientBlender"
    # and "lr-SGD". The plain SGD logs ["lr-SGD"] in both cases.
    monitors = {}
    for kind, module in (("plain", _PlainModule), ("blender", BlendModule)):
        monitors[kind] = LearningRateMonitor(log_momentum=True)
        _fit(
            module(scheduler=scheduler),
            epochs=2,
            callbacks=[GradientBlendCallback(), monitors[kind]]
            if kind == "blender"
            else [monitors[kind]],
            logger=CSVLogger(tmp_path / kind),
            log_every_n_steps=1,
        )
    assert list(monitors["plain"].lrs) == ["lr-SGD"]
    assert monitors["blender"].lrs == monitors["plain"].lrs
    assert monitors["blender"].last_momentum_values == monitors["plain"].last_momentum_values


def test_lightning_step_keyword_arguments_reach_the_wrapped_optimizer():
    # Lightning's precision plugins call `optimizer.step(closure=closure, **kwargs)` with the
    # keywords given to `LightningOptimizer.step`; torch's own step wrappers pass them on.
    class TaggedSGD(torch.optim.SGD):
        def step(self, closure=None, *, tag=None):
            self.tags.append(tag)
            return super().step(closure)

    class ManualModule(BlendModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def configure_optimizers(self):
            inner = TaggedSGD(self.parameters(), lr=0.1)
            inner.tags = []
            self.blender = GradientBlender(inner, HEADS, WEIGHTS)
            return self.blender

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(opt.blend(loss_fn(self.net, batch)))
            opt.step(tag=batch_idx)

    module = ManualModule()
    _fit(module, epochs=1)
    assert module.blender.optimizer.tags == [0, 1, 2, 3]
    assert module.blender._controller.steps == 4


def test_lightning_callback_finds_no_blender():
    class PlainModule(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make_model()

        def training_step(self, batch, batch_idx):
            return sum(loss_fn(self.net, batch).values())

        def configure_optimizers(self):
            return _sgd(self.parameters())

    with pytest.raises(ValueError, match="no GradientBlender"):
        _fit(PlainModule(), epochs=1)


def test_lightning_callback_explicit_blender_and_bad_type():
    model = make_model()
    blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    callback = GradientBlendCallback(blender)
    assert "GradientBlendCallback(blender=GradientBlender(SGD" in repr(callback)
    assert repr(GradientBlendCallback()) == "GradientBlendCallback(blender=None)"
    with pytest.raises(TypeError, match=r"`blender` should be a blendopt\.GradientBlender"):
        GradientBlendCallback(_sgd(model.parameters()))


def test_lightning_callback_starts_each_epoch_once_after_a_mid_epoch_resume():
    # A checkpoint taken mid-epoch holds epochs_started = epoch + 1; Lightning resumes inside that
    # epoch and calls on_train_epoch_start again: the callback must not start it twice.
    model = make_model()
    blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    callback = GradientBlendCallback(blender)

    class FakeTrainer:
        current_epoch = 0

    trainer = FakeTrainer()
    callback.on_train_epoch_start(trainer, None)
    assert blender._controller.epochs_started == 1
    callback.on_train_epoch_start(trainer, None)  # resumed inside epoch 0
    assert blender._controller.epochs_started == 1
    trainer.current_epoch = 1
    callback.on_train_epoch_start(trainer, None)
    assert blender._controller.epochs_started == 2


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
def test_lightning_step_schedule_estimates_inside_lightning_step():
    # unit="step": the blender estimates in step(), which Lightning calls with its closure.
    def blender_for(model):
        return GradientBlender(
            _sgd(model.parameters()),
            HEADS,
            _online_estimator(model),
            schedule=Online(every=5, warmup=3, unit="step"),
        )

    class StepModule(BlendModule):
        def configure_optimizers(self):
            self.blender = blender_for(self.net)
            return self.blender

    module = StepModule()
    _fit(module, epochs=2)
    ref_model = make_model()
    ref = blender_for(ref_model)
    for _ in range(2):
        ref.start_epoch()
        for batch in make_batches(4):
            ref.zero_grad()
            ref.backward(loss_fn(ref_model, batch))
            ref.step()
    assert [r["step"] for r in module.blender.history] == [0, 3, 8]
    assert _history(module.blender) == _history(ref)
    _assert_same_parameters(module.net, ref_model)


def test_lightning_gradient_accumulation_matches_plain_loop():
    module = BlendModule()
    _fit(module, accumulate_grad_batches=2)
    ref_model = make_model()
    ref = GradientBlender(_sgd(ref_model.parameters()), HEADS, WEIGHTS)
    for _ in range(EPOCHS):
        ref.start_epoch()
        for i, batch in enumerate(make_batches(4)):
            (ref.blend(loss_fn(ref_model, batch)) / 2).backward()
            if i % 2 == 1:
                ref.step()
                ref.zero_grad()
    assert module.blender._controller.steps == ref._controller.steps == EPOCHS * 2
    _assert_same_statistics(module.blender, ref)
    _assert_same_parameters(module.net, ref_model)


def test_lightning_manual_optimization_matches_plain_loop():
    class ManualModule(BlendModule):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(opt.blend(loss_fn(self.net, batch)))
            opt.step()

    module = ManualModule()
    _fit(module)
    ref_model, ref = _plain_run()
    assert module.blender._controller.steps == ref._controller.steps
    _assert_same_statistics(module.blender, ref)
    _assert_same_parameters(module.net, ref_model)


def test_blender_with_lr_scheduler_pickles_and_copies_after_lightning_fit():
    # configure_optimizers' {"optimizer": blender, "lr_scheduler": StepLR(blender)}: the scheduler
    # wraps `blender.step` on the instance; copies must step themselves, not the original.
    module = BlendModule(scheduler=True)
    _fit(module, epochs=1)
    blender = module.blender
    for clone in (pickle.loads(pickle.dumps(blender)), copy.deepcopy(blender)):
        assert clone._controller.steps == blender._controller.steps == 4
        assert clone.weights == blender.weights
        clone.blend({h: torch.tensor(1.0, requires_grad=True) for h in HEADS})
        clone.step()
        assert (clone._controller.steps, blender._controller.steps) == (5, 4)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
def test_lightning_checkpoint_resume_matches_uninterrupted_run(tmp_path):
    # Lightning saves blender.state_dict() in its checkpoint and loads it on `ckpt_path=`; the
    # callback then starts epoch 2 as the uninterrupted run does (estimates at 0, 1, 3).
    first = BlendModule(estimator="online", scheduler=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    callbacks = [GradientBlendCallback(), checkpoint]
    _fit(first, epochs=2, callbacks=callbacks, enable_checkpointing=True)
    resumed = BlendModule(estimator="online", scheduler=True)
    _fit(resumed, epochs=5, ckpt_path=tmp_path / "last.ckpt")
    ref = BlendModule(estimator="online", scheduler=True)
    _fit(ref, epochs=5)
    assert [r["epoch"] for r in resumed.blender.history] == [0, 1, 3]
    assert _history(resumed.blender) == _history(ref.blender)
    assert resumed.blender.weights == ref.blender.weights
    assert resumed.blender.param_groups[0]["lr"] == ref.blender.param_groups[0]["lr"]
    _assert_same_parameters(resumed.net, ref.net)


def _run_bounded(command, env, timeout=300):
    """Run a multi-process command in its own session; on a timeout, end the whole group."""
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{command} did not finish in {timeout} s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]


@pytest.mark.slow
def test_lightning_ddp_two_processes_estimate_identically(tmp_path):
    # strategy="ddp_spawn" on 2 CPU processes (gloo): the callback starts each epoch on every
    # rank, the estimates (on each rank's share) reduce to the same weights everywhere.
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "GLOO_SOCKET_IFNAME": "lo",
        "OMP_NUM_THREADS": "1",
    }
    _run_bounded([sys.executable, "-m", "tests.integration._lightning_ddp", str(tmp_path)], env)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["epochs"] == r1["epochs"] == [0, 1, 3]
    assert r0["kinds"] == ["estimate"] * 3
    assert (
        r0["weights"] == r1["weights"] != pytest.approx(blendopt.functional.uniform_weights(HEADS))
    )
    for p, q in zip(r0["parameters"], r1["parameters"], strict=True):
        assert torch.equal(p, q)


def test_lightning_bf16_mixed_matches_plain_autocast_loop():
    module = BlendModule()
    _fit(module, precision="bf16-mixed")
    model = make_model()
    blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    for _ in range(EPOCHS):
        blender.start_epoch()
        for batch in make_batches(4):
            blender.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                losses = loss_fn(model, batch)
            blender.backward(losses)
            blender.step()
    _assert_same_parameters(module.net, model)


# -- Hugging Face Accelerate ----------------------------------------------------------------------


def _reset_accelerate():
    # Accelerate keeps its settings in process-wide singletons: an Accelerator made earlier in
    # the process (e.g. the bf16 one of docs/integrations.md) would set this one's precision.
    accelerate.state.AcceleratorState._reset_state(reset_partial_state=True)
    accelerate.state.GradientState._reset_state()


def _new_accelerator(**kwargs):
    _reset_accelerate()
    return accelerate.Accelerator(cpu=True, **kwargs)


@pytest.fixture
def accelerator():
    yield _new_accelerator()
    _reset_accelerate()


@pytest.mark.parametrize("scheduler", [False, True], ids=["no_scheduler", "steplr"])
def test_accelerate_matches_plain_loop(accelerator, scheduler):
    model = make_model()
    blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    sched = torch.optim.lr_scheduler.StepLR(blender, 1, 0.5)
    loader = DataLoader(make_batches(4), batch_size=None)
    if scheduler:
        model, optimizer, loader, sched = accelerator.prepare(model, blender, loader, sched)
    else:
        model, optimizer, loader = accelerator.prepare(model, blender, loader)
    assert isinstance(optimizer, accelerate.optimizer.AcceleratedOptimizer)
    for _ in range(EPOCHS):
        blender.start_epoch()
        for batch in loader:
            optimizer.zero_grad()
            accelerator.backward(blender.blend(loss_fn(model, batch)))
            optimizer.step()
        if scheduler:
            sched.step()
    ref_model, ref = _plain_run(scheduler=scheduler)
    _assert_same_parameters(accelerator.unwrap_model(model), ref_model)
    assert blender._controller.steps == ref._controller.steps
    _assert_same_statistics(blender, ref)
    assert set(optimizer.state_dict()) == set(blender.state_dict())


def _accelerate_run(accelerator, epochs, *, save=None, load=None):
    model = make_model()
    blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    sched = torch.optim.lr_scheduler.StepLR(blender, 1, 0.5)
    model, optimizer, loader, sched = accelerator.prepare(
        model, blender, DataLoader(make_batches(4), batch_size=None), sched
    )
    if load is not None:
        accelerator.load_state(load)
    for _ in range(epochs):
        blender.start_epoch()
        for batch in loader:
            optimizer.zero_grad()
            accelerator.backward(blender.blend(loss_fn(model, batch)))
            optimizer.step()
        sched.step()
    if save is not None:
        accelerator.save_state(save)
    return accelerator.unwrap_model(model), blender


def test_accelerate_save_state_and_load_state_resume_exactly(accelerator, tmp_path):
    # save_state writes blender.state_dict() with torch.save; load_state reads it back through
    # AcceleratedOptimizer.load_state_dict.
    _accelerate_run(accelerator, 2, save=tmp_path / "state")
    fresh = _new_accelerator()
    resumed_model, resumed = _accelerate_run(fresh, 1, load=tmp_path / "state")
    ref_model, ref = _plain_run(scheduler=True)
    assert resumed._controller.epochs_started == ref._controller.epochs_started == EPOCHS
    assert resumed._controller.steps == ref._controller.steps
    assert resumed.param_groups[0]["lr"] == pytest.approx(ref.param_groups[0]["lr"])
    _assert_same_statistics(resumed, ref)
    _assert_same_parameters(resumed_model, ref_model)


def test_accelerate_gradient_accumulation_matches_plain_loop():
    accelerator = _new_accelerator(gradient_accumulation_steps=2)
    try:
        model = make_model()
        blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
        model, optimizer, loader = accelerator.prepare(
            model, blender, DataLoader(make_batches(4), batch_size=None)
        )
        for _ in range(EPOCHS):
            blender.start_epoch()
            for batch in loader:
                with accelerator.accumulate(model):
                    accelerator.backward(blender.blend(loss_fn(model, batch)))
                    optimizer.step()
                    optimizer.zero_grad()
    finally:
        _reset_accelerate()

    ref_model = make_model()
    ref = GradientBlender(_sgd(ref_model.parameters()), HEADS, WEIGHTS)
    for _ in range(EPOCHS):
        ref.start_epoch()
        for i, batch in enumerate(make_batches(4)):
            (ref.blend(loss_fn(ref_model, batch)) / 2).backward()
            if i % 2 == 1:
                ref.step()
                ref.zero_grad()
    _assert_same_parameters(accelerator.unwrap_model(model), ref_model)
    assert blender._controller.steps == ref._controller.steps == EPOCHS * 2


@pytest.mark.slow
def test_accelerate_two_processes_estimate_identically(tmp_path):
    # torchrun, 2 CPU processes (gloo): prepared (sharded) loaders for the run and the estimate.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo"}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    command += ["2", "-m", "tests.integration._accelerate_ddp", str(tmp_path)]
    _run_bounded(command, env)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == 2
    assert r0["epochs"] == r1["epochs"] == [0, 1, 3]
    assert (
        r0["weights"] == r1["weights"] != pytest.approx(blendopt.functional.uniform_weights(HEADS))
    )
    for p, q in zip(r0["parameters"], r1["parameters"], strict=True):
        assert torch.equal(p, q)


def test_accelerated_optimizer_grad_scaler_path_matches_plain_optimizer(accelerator):
    # With fp16 on CUDA, Accelerate's AcceleratedOptimizer patches the wrapped optimizer's
    # `step` and calls scaler.step(blender); on CPU Accelerate makes no scaler, so hand one in.
    def run(use_blender):
        model = make_model()
        inner = _sgd(model.parameters())
        opt = GradientBlender(inner, HEADS, WEIGHTS) if use_blender else inner
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        wrapped = accelerate.optimizer.AcceleratedOptimizer(opt, scaler=scaler)
        skipped = []
        for i, batch in enumerate(make_batches(4)):
            wrapped.zero_grad()
            losses = loss_fn(model, batch)
            loss = opt.blend(losses) if use_blender else sum(WEIGHTS[h] * losses[h] for h in HEADS)
            scaler.scale(loss).backward()
            if i == 2:  # an overflow: the scaler must skip this step
                next(model.parameters()).grad[0, 0] = float("inf")
            wrapped.step()
            skipped.append(wrapped.step_was_skipped)
        return model, skipped, opt

    ref, ref_skipped, _ = run(False)
    got, got_skipped, blender = run(True)
    assert got_skipped == ref_skipped == [False, False, True, False]
    assert blender._controller.steps == 3
    _assert_same_parameters(got, ref)


# -- torch.amp: autocast and GradScaler ------------------------------------------------------------


def test_blend_under_bf16_autocast_is_float32_with_exact_weights():
    # Under autocast, matmul runs in bf16: the blend must not round the weights or the loss.
    model = make_model()
    weights = {"a": 0.630, "b": 0.014, "fused": 0.356}  # the paper's Table 4 weights
    blender = GradientBlender(_sgd(model.parameters()), HEADS, weights)
    batch = make_batches(1)[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = loss_fn(model, batch)
        leaves = {h: v.detach().float().requires_grad_() for h, v in losses.items()}
        blended = blender.blend(leaves)
    assert blended.dtype == torch.float32
    expected = sum(weights[h] * leaves[h].detach() for h in HEADS)
    torch.testing.assert_close(blended.detach(), expected, rtol=1e-6, atol=0)
    blended.backward()
    for h in HEADS:
        assert leaves[h].grad.item() == pytest.approx(weights[h], rel=1e-6), h


def test_blend_of_bf16_losses_is_float32():
    model = make_model()
    blender = GradientBlender(_sgd(model.parameters()), HEADS, WEIGHTS)
    losses = {
        h: torch.tensor(v, dtype=torch.bfloat16, requires_grad=True)
        for h, v in zip(HEADS, [2.25, 1.5, 0.75], strict=True)
    }
    blended = blender.blend(losses)
    assert blended.dtype == torch.float32
    assert blended.item() == pytest.approx(0.5 * 2.25 + 0.2 * 1.5 + 0.3 * 0.75, rel=1e-6)


@pytest.mark.parametrize("enabled", [False, True], ids=["scaler_disabled", "scaler_cpu"])
def test_autocast_and_grad_scaler_loop_matches_plain_optimizer(enabled):
    """The docs' AMP loop (bf16 autocast; GradScaler as on CUDA) against plain torch.optim."""
    batches = make_batches(4)

    def run(use_blender):
        model = make_model()
        inner = _sgd(model.parameters())
        opt = GradientBlender(inner, HEADS, WEIGHTS) if use_blender else inner
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, enabled=enabled)
        for _ in range(EPOCHS):
            if use_blender:
                opt.start_epoch()
            for batch in batches:
                opt.zero_grad()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    losses = loss_fn(model, batch)
                    loss = (
                        opt.blend(losses)
                        if use_blender
                        else sum(WEIGHTS[h] * losses[h].float() for h in HEADS)
                    )
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        return model

    _assert_same_parameters(run(True), run(False))


# -- import hygiene --------------------------------------------------------------------------------


def test_import_blendopt_imports_no_framework():
    code = (
        "import sys, blendopt, blendopt.integrations\n"
        "print(sorted(m for m in ('pytorch_lightning', 'lightning', 'lightning_fabric', "
        "'accelerate', 'transformers') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out == "[]\n"
