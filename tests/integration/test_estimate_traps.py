"""Algorithm 1 must not change the run it estimates for (issue 7 item 2, estimator side):
data order, heads discovery, empty batches, diverging copies."""

import pytest
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    TensorDataset,
)

import blendopt
from blendopt import GradientBlender, Offline, RetrainEstimator, estimate_weights
from tests.helpers import HEADS, loss_fn, make_batches, make_model


def _dataset(n=48, seed=0):
    batches = make_batches(1, batch=n, seed=seed)
    return TensorDataset(*batches[0])


def _labels(loader):
    return [b[2].tolist() for b in loader]


def _main_run_batches(make_loader, estimate, epochs=3):
    """The batches a main run sees over ``epochs``, with an estimate at epoch 1 or not."""
    train = make_loader()
    holdout = make_batches(2, seed=1)
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    for epoch in range(epochs):
        if epoch == 1 and estimate is not None:
            estimate_weights(model, loss_fn, train, holdout, optimizer=sgd, epochs=2, **estimate)
        seen.append(_labels(train))
    return seen


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
@pytest.mark.parametrize("heads", [None, HEADS])
@pytest.mark.parametrize("where", ["loader", "sampler", "batch-sampler"])
def test_estimate_leaves_the_main_runs_batches_unchanged(heads, where):
    data = _dataset()

    def make_loader():
        g = torch.Generator().manual_seed(123)
        if where == "loader":
            return DataLoader(data, batch_size=8, shuffle=True, generator=g)
        if where == "sampler":
            return DataLoader(data, batch_size=8, sampler=RandomSampler(data, generator=g))
        batches = BatchSampler(RandomSampler(data, generator=g), 8, drop_last=False)
        return DataLoader(data, batch_size=None, sampler=batches)

    without = _main_run_batches(make_loader, None)
    with_estimate = _main_run_batches(make_loader, {"heads": heads, "fraction": 0.5})
    assert with_estimate == without
    assert without[1] != without[2]  # the loader does shuffle


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
def test_discovering_heads_changes_nothing():
    # BatchNorm in train mode: a discovery forward pass would move the copies' statistics; a
    # shuffling loader: a discovery batch would advance the generator.
    data = _dataset()
    results = []
    for heads in (None, HEADS):
        model = make_model(batchnorm=True).train()
        g = torch.Generator().manual_seed(5)
        train = DataLoader(data, batch_size=8, shuffle=True, generator=g)
        sgd = torch.optim.SGD(model.parameters(), lr=0.05)
        est = estimate_weights(
            model, loss_fn, train, make_batches(2, seed=1), optimizer=sgd, epochs=1, heads=heads
        )
        results.append(est)
    assert results[0].heads == HEADS
    assert results[0].measurements == results[1].measurements
    assert results[0].weights == results[1].weights


class _RecordingSampler(DistributedSampler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def set_epoch(self, epoch):
        self.calls.append(epoch)
        super().set_epoch(epoch)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
def test_copies_epochs_call_set_epoch_and_the_epoch_is_restored():
    data = _dataset()
    sampler = _RecordingSampler(data, num_replicas=1, rank=0, shuffle=True, seed=3)
    train = DataLoader(data, batch_size=8, sampler=sampler)
    sampler.set_epoch(7)  # the main run is at its epoch 7
    before = _labels(train)
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    estimate_weights(
        model, loss_fn, train, make_batches(2, seed=1), optimizer=sgd, epochs=3, seed=11
    )
    plan = blendopt.retrain.TrainPlan(epochs=3, steps=None, seed=11)
    copy_epochs = [plan.sampler_epoch(e) for e in range(3)]
    assert sampler.calls == [7, *copy_epochs, 7]
    assert len(set(copy_epochs)) == 3
    assert sampler.epoch == 7
    assert _labels(train) == before


EMPTY = (torch.empty(0, 6), torch.empty(0, 5), torch.empty(0, dtype=torch.long))


def _strict_loss(model, batch):
    if batch[2].numel() == 0:
        raise RuntimeError("the model got an empty batch")
    return loss_fn(model, batch)


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
def test_empty_batches_are_skipped_and_counted():
    model = make_model()
    train, holdout, probe = make_batches(4), make_batches(2, seed=1), make_batches(2, seed=2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    kwargs = {"optimizer": sgd, "epochs": 2, "metric": _strict_loss}
    clean = estimate_weights(model, _strict_loss, train, holdout, probe=probe, **kwargs)
    est = estimate_weights(
        model,
        _strict_loss,
        [EMPTY, *train[:2], EMPTY, *train[2:]],
        [*holdout, EMPTY],
        probe=[EMPTY, *probe],
        **kwargs,
    )
    assert est.measurements == clean.measurements
    assert est.weights == clean.weights
    # 2 per epoch while training; 1 + 1 per measurement of T' and V, before and after (4 times)
    assert any("skipped 12 empty batches (4 while training" in n for n in est.notes)
    assert not any("empty" in n for n in clean.notes)


def test_only_empty_batches_raise_a_clear_error():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.raises(ValueError, match="no non-empty batch"):
        estimate_weights(
            model, _strict_loss, [EMPTY, EMPTY], make_batches(1), optimizer=sgd, epochs=1
        )


def _diverging_loss(head, after):
    """loss_fn whose ``head`` loss becomes inf after ``after`` training calls."""
    calls = {"n": 0}

    def fn(model, batch):
        losses = loss_fn(model, batch)
        if model.training:
            calls["n"] += 1
            if calls["n"] > after:
                losses[head] = losses[head] * float("inf")
        return losses

    return fn, calls


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
@pytest.mark.parametrize("eager", [True, False])
def test_a_diverging_copy_gets_weight_zero_and_the_estimate_goes_on(monkeypatch, eager):
    # eager=False runs the accelerator path (device-side counters, read once per epoch) on CPU:
    # the host no longer reads a loss for free.
    if not eager:
        monkeypatch.setattr(blendopt.retrain._loop, "host_reads_free", lambda device: False)
    model = make_model()
    train, holdout = make_batches(4), make_batches(3, seed=1)
    fn, _ = _diverging_loss("b", after=0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.warns(
        blendopt.warnings.DivergedCopyWarning, match="head 'b': its copy diverged"
    ) as rec:
        est = estimate_weights(
            model, fn, train, holdout, optimizer=sgd, epochs=3, heads=HEADS, copies_at_once=1
        )
    assert est.weights["b"] == 0.0
    assert est.accepted
    assert sum(est.weights.values()) == pytest.approx(1.0)
    assert est.generalization["b"] != est.generalization["b"]  # nan: not measured
    note = next(n for n in est.notes if "'b'" in n and "diverged" in n)
    expected = "loss inf at step 0, epoch 0" if eager else "4 non-finite losses in 4 steps"
    assert expected in note
    assert sum(issubclass(w.category, blendopt.warnings.DivergedCopyWarning) for w in rec) == 1
    # The healthy heads are measured as in an estimate where b never diverged.
    clean = estimate_weights(
        model, loss_fn, train, holdout, optimizer=sgd, epochs=3, heads=HEADS, copies_at_once=1
    )
    for h in ("a", "fused"):
        assert est.measurements["holdout_after"][h] == clean.measurements["holdout_after"][h]


def test_a_diverged_copy_stops_training():
    model = make_model()
    calls = {"n": 0}

    def fn(m, b):
        calls["n"] += m.training
        loss = loss_fn(m, b)["a"]
        return {"a": loss * float("inf") if calls["n"] > 1 and m.training else loss}

    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    with pytest.warns(blendopt.warnings.DivergedCopyWarning):
        estimate_weights(
            model, fn, make_batches(4), make_batches(1), optimizer=sgd, epochs=3, heads=["a"]
        )
    assert calls["n"] == 2  # one finite step, the non-finite one, then no more


def test_every_copy_diverging_rejects_the_estimate():
    model = make_model()
    sgd = torch.optim.SGD(model.parameters(), lr=1e6)
    with pytest.warns(blendopt.warnings.DivergedCopyWarning):
        est = estimate_weights(
            model,
            loss_fn,
            make_batches(8),
            make_batches(1),
            optimizer=sgd,
            epochs=3,
            fallback={"a": 0.5, "b": 0.25, "fused": 0.25},
        )
    assert not est.accepted
    assert est.weights == {"a": 0.5, "b": 0.25, "fused": 0.25}
    assert sum("its copy diverged" in n for n in est.notes) == 3
    assert "every head's copy diverged" in est.notes[-1]


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
@pytest.mark.filterwarnings("ignore::blendopt.warnings.FlooredOverfittingWarning")
def test_a_diverging_copy_does_not_abort_the_users_run():
    model = make_model()
    fn, _ = _diverging_loss("fused", after=2)
    train, holdout = make_batches(4), make_batches(2, seed=1)
    est = RetrainEstimator(model, fn, train, holdout)
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.05), HEADS, est, schedule=Offline(horizon=2)
    )
    with pytest.warns(blendopt.warnings.DivergedCopyWarning) as caught:
        record = opt.start_epoch()
    # One warning for the event, from the blender, at this file's call (not two).
    about_fused = [w for w in caught if "'fused'" in str(w.message)]
    assert [w.category for w in about_fused] == [blendopt.warnings.DivergedCopyWarning]
    assert about_fused[0].filename == __file__
    assert "estimate 0" in str(about_fused[0].message)
    assert record["weights"]["fused"] == 0.0
    assert any("'fused': its copy diverged" in n for n in record["estimate"]["notes"])
    for batch in train:  # the run goes on
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()


@pytest.mark.filterwarnings("ignore::blendopt.BlendWarning")
@pytest.mark.parametrize("engine", ["loop", "vmap"])
def test_diverged_copies_and_skipped_batches_are_fields(engine):
    model = make_model()
    train = [EMPTY, *make_batches(4)]
    fn, _ = _diverging_loss("b", after=0)
    sgd = torch.optim.SGD(model.parameters(), lr=0.05)
    est = estimate_weights(
        model, fn, train, make_batches(3, seed=1), optimizer=sgd, epochs=2, heads=HEADS,
        engine=engine,
    )  # fmt: skip
    assert est.diverged == {"b": "loss inf at step 0, epoch 0"}
    # 2 while training (one per pass), 3 while measuring T' = train (the checkpoint and the
    # two healthy copies; the diverged one is not measured)
    assert est.skipped_batches == 5
    if engine == "loop":  # under vmap the inf poisons every copy's steps (skipped, noted)
        assert est.weights["b"] == 0.0
