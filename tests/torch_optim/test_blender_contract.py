"""GradientBlender-specific parts of the torch.optim contract (layouts, closures, inner hooks)."""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping
from typing import Any
from unittest import mock

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from blendopt import Estimator, FixedWeights, GradientBlender
from blendopt._blender import _STATE_VERSION
from tests.helpers import HEADS, loss_fn, make_batches, make_model

WEIGHTS = {"a": 0.25, "b": 0.25, "fused": 0.5}


def _trained(steps: int = 3) -> tuple[torch.nn.Module, GradientBlender]:
    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), HEADS)
    for batch in make_batches(steps):
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()
    opt.set_weights(WEIGHTS)
    return model, opt


def test_state_dict_version_2_layout() -> None:
    _, opt = _trained()
    saved = opt.state_dict()
    assert list(saved) == ["state", "param_groups", "blender"]
    assert saved["blender"]["version"] == _STATE_VERSION == 2
    assert saved["blender"]["controller"]["steps"] == 3
    assert saved["blender"]["weighting"]["weights"] == [WEIGHTS[h] for h in HEADS]
    plain = opt.optimizer.state_dict()
    assert saved["param_groups"] == plain["param_groups"]
    assert saved["state"].keys() == plain["state"].keys()


def test_plain_state_dict_loads_and_the_blender_keeps_its_own_state() -> None:
    _, opt = _trained()
    plain_state = copy.deepcopy(opt.optimizer.state_dict())
    plain_state["param_groups"][0]["lr"] = 0.01
    fresh = GradientBlender(torch.optim.SGD(make_model().parameters(), lr=0.1), HEADS, WEIGHTS)
    own = copy.deepcopy(fresh.state_dict()["blender"])
    fresh.load_state_dict(plain_state)
    assert fresh.param_groups[0]["lr"] == 0.01
    assert set(fresh.state_dict()["state"]) == set(plain_state["state"])
    assert fresh.state_dict()["blender"] == own  # weights, steps, statistics, history kept


def test_blender_checkpoint_loads_into_the_plain_optimizer() -> None:
    _, opt = _trained()
    plain = torch.optim.SGD(make_model().parameters(), lr=0.5, momentum=0.9)
    plain.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert plain.param_groups[0]["lr"] == 0.1
    assert "blender" not in plain.state_dict()
    assert plain.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


class _CountingEstimator(FixedWeights):
    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__(weights)
        self.observed: list[tuple[int, float]] = []

    def observe(self, losses: Mapping[str, torch.Tensor], *, step: int) -> None:
        self.observed.append((step, float(losses["x"].detach())))


def test_lbfgs_closure_records_statistics_and_observes_once_per_step() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4))
    estimator = _CountingEstimator({"x": 1.0})
    assert isinstance(estimator, Estimator)
    opt = GradientBlender(torch.optim.LBFGS([w], lr=0.5, max_iter=5), ["x"], estimator)
    evaluations: list[float] = []

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (w - 1.0).pow(2).sum()
        evaluations.append(loss.item())
        opt.backward({"x": loss})
        return loss

    first_losses = []
    for _ in range(3):
        start = len(evaluations)
        opt.step(closure)
        first_losses.append(evaluations[start])
    assert len(evaluations) > 3  # LBFGS evaluated the closure several times per step
    assert opt.statistics.steps == 3
    assert [s for s, _ in estimator.observed] == [0, 1, 2]
    assert [v for _, v in estimator.observed] == pytest.approx(first_losses)
    assert opt.statistics.running_mean()["x"] == pytest.approx(sum(first_losses) / 3)
    # Outside a closure step, every blend records again.
    opt.zero_grad()
    opt.backward({"x": (w - 1.0).pow(2).sum()})
    assert opt.statistics.steps == 4


def test_a_scheduler_built_on_the_wrapped_optimizer_still_sees_its_steps() -> None:
    model = make_model()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(inner, step_size=1, gamma=0.5)
    opt = GradientBlender(inner, HEADS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()"
        for batch in make_batches(2):
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
            scheduler.step()
    assert inner.param_groups[0]["lr"] == pytest.approx(0.025)


def test_wrapped_optimizer_step_hooks_may_replace_arguments_and_are_checked() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    inner = torch.optim.SGD([w], lr=1.0)
    opt = GradientBlender(inner, ["x"])
    seen: list[Any] = []

    def closure() -> torch.Tensor:
        seen.append("replacement")
        return torch.tensor(0.0)

    handle = inner.register_step_pre_hook(lambda o, args, kwargs: ((o, closure), kwargs))
    w.grad = torch.ones(2)
    assert opt.step() == torch.tensor(0.0)
    assert seen == ["replacement"]
    handle.remove()
    inner.register_step_pre_hook(lambda o, args, kwargs: "bad")
    with pytest.raises(RuntimeError, match=r"pre-hook of the wrapped SGD must return None or"):
        opt.step()


def test_an_instance_level_step_on_the_wrapped_optimizer_is_called() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    inner = torch.optim.SGD([w], lr=1.0)
    calls = []
    original = inner.step

    def patched(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    inner.step = patched  # type: ignore[method-assign]
    opt = GradientBlender(inner, ["x"])
    w.grad = torch.ones(2)
    opt.step()
    assert calls == [()]
    torch.testing.assert_close(w.detach(), torch.zeros(2))


FUSED_ON_CPU = [torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad]


@pytest.mark.parametrize("cls", FUSED_ON_CPU, ids=lambda c: c.__name__)
def test_grad_scaler_takes_the_fused_path_of_the_wrapped_optimizer(cls: type) -> None:
    runs = []
    for wrapped in (False, True):
        w = torch.nn.Parameter(torch.linspace(-1.0, 1.0, 5))
        inner = cls([w], lr=0.1, fused=True)
        opt = GradientBlender(inner, ["x"]) if wrapped else inner
        fused_path: list[bool] = []
        inner.register_step_pre_hook(
            lambda o, a, k, seen=fused_path: seen.append(getattr(o, "grad_scale", None) is not None)
        )
        scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
        for step in range(4):
            opt.zero_grad()
            loss = (w - 0.5).pow(2).sum() * (math.inf if step == 1 else 1.0)  # step 1 skipped
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        runs.append((w.detach(), inner.state_dict()["state"], scaler.get_scale(), fused_path))
        assert not hasattr(inner, "grad_scale")  # GradScaler removed them after the step
    (w_plain, s_plain, scale_plain, path_plain), (w_wrapped, s_wrapped, scale_wrapped, path) = runs
    assert path == path_plain == [True] * 4  # the fused kernel unscales, and skips step 1
    torch.testing.assert_close(w_wrapped, w_plain, rtol=0, atol=0)
    assert scale_wrapped == scale_plain == 128.0
    assert s_wrapped.keys() == s_plain.keys()
    for index, state in s_plain.items():
        for key, value in state.items():
            torch.testing.assert_close(s_wrapped[index][key], value, rtol=0, atol=0)


@pytest.mark.parametrize("cls", FUSED_ON_CPU, ids=lambda c: c.__name__)
def test_fused_wrapped_optimizer_does_not_step_if_found_inf(cls: type) -> None:
    # PyTorch's test_fused_does_not_step_if_foundinf, which is CUDA-only upstream, on the CPU.
    params = [torch.ones(1) for _ in range(3)]
    for p in params:
        p.grad = torch.ones_like(p)
    opt = GradientBlender(cls(params, lr=0.1, fused=True), ["x"])
    opt.grad_scale = torch.ones(1)
    opt.found_inf = torch.ones(())
    assert opt.optimizer.found_inf is opt.found_inf
    opt.step()
    for p in params:
        torch.testing.assert_close(p, torch.ones(1), rtol=0, atol=0)
        if "step" in opt.state[p]:
            torch.testing.assert_close(opt.state[p]["step"], torch.zeros(()))
    del opt.grad_scale, opt.found_inf
    assert not hasattr(opt.optimizer, "grad_scale")
    assert not hasattr(opt, "found_inf")


# 0.5: visibly not the default
@pytest.mark.filterwarnings("ignore::blendopt.warnings.WeightSumWarning")
def test_distributed_checkpoint_helpers_round_trip_the_wrapped_optimizer_state() -> None:
    from torch.distributed.checkpoint.state_dict import (
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    def build(lr: float) -> tuple[torch.nn.Module, GradientBlender]:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        return model, GradientBlender(torch.optim.Adam(model.parameters(), lr=lr), ["x"])

    def train(model: torch.nn.Module, opt: GradientBlender, steps: int) -> None:
        g = torch.Generator().manual_seed(steps)
        for _ in range(steps):
            opt.zero_grad()
            opt.backward({"x": model(torch.randn(4, 3, generator=g)).pow(2).mean()})
            opt.step()

    model, opt = build(0.1)
    train(model, opt, 3)
    saved = get_optimizer_state_dict(model, opt)
    assert set(saved) == {"state", "param_groups"}  # keyed by parameter name; no "blender"
    assert set(saved["state"]) == {"weight", "bias"}
    model2, opt2 = build(0.5)
    model2.load_state_dict(model.state_dict())
    set_optimizer_state_dict(model2, opt2, copy.deepcopy(saved))  # torch aliases tensors
    assert opt2.param_groups[0]["lr"] == 0.1
    # The G-Blend part travels beside it (docs/torch_optim_contract.md).
    opt.set_weights({"x": 0.5})
    opt2.load_state_dict({**opt2.optimizer.state_dict(), "blender": opt.state_dict()["blender"]})
    assert opt2.weights == {"x": 0.5}
    assert opt2.state_dict()["blender"]["controller"]["steps"] == 3
    train(model, opt, 2)
    train(model2, opt2, 2)
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0)


def test_a_twice_patched_step_still_fires_the_global_hooks_once() -> None:
    class TwicePatched(torch.optim.SGD):
        pass

    w = torch.nn.Parameter(torch.ones(2))
    TwicePatched([w], lr=0.1)  # torch patches the class's step once (marked `hooked`)
    TwicePatched.step = torch.optim.Optimizer.profile_hook_step(TwicePatched.step)
    opt = GradientBlender(TwicePatched([w], lr=0.1), ["x"])
    fired: list[str] = []
    handle = register_optimizer_step_pre_hook(
        lambda o, args, kwargs: fired.append(type(o).__name__)
    )
    try:
        opt.zero_grad()
        opt.backward({"x": w.sum()})
        opt.step()
    finally:
        handle.remove()
    assert fired == ["GradientBlender"]


def test_step_keyword_arguments_reach_the_wrapped_optimizer_and_its_hooks() -> None:
    # As torch's step wrappers (profiling hook, LR scheduler tracker) do: `step(closure, **kw)`.
    class Tagged(torch.optim.SGD):
        def step(self, closure=None, *, tag=None):  # type: ignore[override]
            self.tags.append(tag)
            return None if closure is None else closure()

    inner = Tagged(make_model().parameters(), lr=0.1)
    inner.tags = []  # type: ignore[attr-defined]
    hooked: list[dict[str, Any]] = []
    inner.register_step_pre_hook(lambda _opt, _args, kwargs: hooked.append(dict(kwargs)))
    blender = GradientBlender(inner, HEADS)
    assert blender.step(tag="a") is None
    assert blender.step(closure=lambda: 2.0, tag="b") == 2.0
    assert inner.tags == ["a", "b"]  # type: ignore[attr-defined]
    assert [sorted(kwargs) for kwargs in hooked] == [["tag"], ["closure", "tag"]]  # as given
    inner.step = lambda closure=None, **kwargs: inner.tags.append(kwargs)  # an instance override
    blender.step(tag="c")
    assert inner.tags[-1] == {"tag": "c"}  # type: ignore[attr-defined]


def test_a_mock_patched_wrapped_step_records_only_the_step_call() -> None:
    # Lightning's tests patch `torch.optim.SGD.step` and compare its `mock_calls` with the plain
    # run's: looking for torch's hook marks must not show up there (no truth test on the mock).
    blender = GradientBlender(torch.optim.SGD(make_model().parameters(), lr=0.1), HEADS)
    with mock.patch.object(torch.optim.SGD, "step") as step:
        blender.step(closure=lambda: 1.0, optim="sgd")
        blender.step()
    assert step.mock_calls == [mock.call(closure=mock.ANY, optim="sgd"), mock.call()]
