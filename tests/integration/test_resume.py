"""Checkpoint, torch.load(weights_only=True), resume: identical to the uninterrupted run."""

import pytest
import torch

from blendopt import GradientBlender, Online, RetrainEstimator
from tests.helpers import HEADS, loss_fn, make_batches, make_model

EPOCHS = 4
TRAIN = make_batches(5)
HOLDOUT = make_batches(2, seed=1)


def _epoch_batches(epoch):
    g = torch.Generator().manual_seed(1000 + epoch)
    return [TRAIN[i] for i in torch.randperm(len(TRAIN), generator=g).tolist()]


def _build(seed):
    model = make_model(seed=seed, dropout=0.1)
    inner = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    estimator = RetrainEstimator(model, loss_fn, TRAIN, HOLDOUT, probe=TRAIN[:2], seed=3)
    opt = GradientBlender(inner, HEADS, estimator, schedule=Online(every=2, warmup=2))
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    return model, opt, sched


def _train(model, opt, sched, epochs):
    for epoch in epochs:
        opt.start_epoch()
        torch.manual_seed(epoch)  # the loop's own randomness (dropout), as a user would seed it
        for batch in _epoch_batches(epoch):
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
            sched.step()


@pytest.mark.filterwarnings("ignore::blendopt.warnings.ZeroedHeadWarning")
def test_resume_across_an_online_reestimation_is_exact(tmp_path):
    model, opt, sched = _build(seed=0)
    _train(model, opt, sched, range(EPOCHS))
    assert [r["epoch"] for r in opt.history] == [0, 2]  # estimates at epochs 0 and 2

    model_a, opt_a, sched_a = _build(seed=0)
    _train(model_a, opt_a, sched_a, range(2))
    path = tmp_path / "ckpt.pt"
    torch.save(
        {
            "model": model_a.state_dict(),
            "optimizer": opt_a.state_dict(),
            "sched": sched_a.state_dict(),
        },
        path,
    )

    ckpt = torch.load(path, weights_only=True)
    model_b, opt_b, sched_b = _build(seed=123)  # a fresh model with other initial weights
    model_b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["optimizer"])
    sched_b.load_state_dict(ckpt["sched"])
    assert opt_b.weights == opt_a.weights
    _train(model_b, opt_b, sched_b, range(2, EPOCHS))

    assert opt_b.weights == opt.weights
    assert [r["weights"] for r in opt_b.history] == [r["weights"] for r in opt.history]
    assert opt_b.statistics.history == opt.statistics.history
    for (name, p), q in zip(model.named_parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q), name
    for k, v in opt.optimizer.state_dict()["state"].items():
        assert torch.equal(
            opt_b.optimizer.state_dict()["state"][k]["momentum_buffer"], v["momentum_buffer"]
        )


def test_resume_mid_epoch_keeps_the_running_statistics(tmp_path):
    model = make_model()
    opt = GradientBlender(
        torch.optim.Adam(model.parameters(), lr=1e-2), HEADS, {"a": 0.5, "b": 0.2, "fused": 0.3}
    )
    opt.start_epoch()
    for batch in TRAIN[:3]:
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()
    running = opt.statistics.running_mean()
    torch.save(opt.state_dict(), tmp_path / "opt.pt")

    model2 = make_model()
    model2.load_state_dict(model.state_dict())
    opt2 = GradientBlender(
        torch.optim.Adam(model2.parameters(), lr=1e-2), HEADS, {"a": 0.2, "b": 0.2, "fused": 0.6}
    )
    opt2.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    assert opt2.weights == {"a": 0.5, "b": 0.2, "fused": 0.3}
    assert opt2.statistics.running_mean() == pytest.approx(running)
    for batch in TRAIN[3:]:
        for o, m in ((opt, model), (opt2, model2)):
            o.zero_grad()
            o.backward(loss_fn(m, batch))
            o.step()
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(p, q)
    opt.start_epoch()
    opt2.start_epoch()
    assert opt2.statistics.history == opt.statistics.history
    assert opt2.statistics.history[0]["steps"] == len(TRAIN)
