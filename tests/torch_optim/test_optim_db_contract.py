"""The torch.optim contract, over every optimizer of PyTorch's own ``optim_db`` (CPU, float32).

Every configuration that ``torch.testing._internal.common_optimizers`` generates for each
optimizer (its ``optim_inputs_func``, plus the foreach/fused variants it supports on the CPU)
runs twice: plain, and wrapped as ``GradientBlender(opt, heads=["x"], estimator={"x": 1.0})``.
The wrapped run must be indistinguishable from the plain one: same parameters and optimizer
state after every step (bit for bit), the standard state-dict layout and round trips, hooks that
fire like a plain optimizer's, pickling and deepcopy, schedulers, ``add_param_group`` and
``zero_grad``. (PyTorch's full ``test/test_optim.py`` runs wrapped with
``make test-torch-optim``; see docs/torch_optim_contract.md.)
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings
from typing import Any

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)
from torch.testing._internal.common_optimizers import (
    OptimizerInfo,
    _get_optim_inputs_including_global_cliquey_kwargs,
    optim_db,
)

from blendopt import GradientBlender

INFOS = {info.name: info for info in optim_db}
X = torch.linspace(-1.0, 1.0, 3)
HOOK_ATTRIBUTES = (
    "_optimizer_step_pre_hooks",
    "_optimizer_step_post_hooks",
    "_optimizer_state_dict_pre_hooks",
    "_optimizer_state_dict_post_hooks",
    "_optimizer_load_state_dict_pre_hooks",
    "_optimizer_load_state_dict_post_hooks",
)


def configs(info: OptimizerInfo) -> list[tuple[str, dict[str, Any]]]:
    """(description, kwargs) for every CPU configuration; ``differentiable`` is skipped as in
    torch's own tests (its in-place update of leaf parameters needs a non-leaf setup)."""
    inputs = _get_optim_inputs_including_global_cliquey_kwargs(
        "cpu", torch.float32, info, skip=("differentiable",)
    )
    return [(i.desc, i.kwargs) for i in inputs]


def make_params(info: OptimizerInfo, seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (2, 4)] if info.name == "Muon" else [(4, 3), (2, 4), (2,)]  # Muon: 2-D
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]


def clone_params(params: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


class Run:
    """One optimizer, plain or wrapped, over its own copy of a small two-layer model."""

    def __init__(
        self,
        info: OptimizerInfo,
        kwargs: dict[str, Any],
        wrapped: bool,
        params: list[torch.nn.Parameter] | None = None,
    ) -> None:
        self.info = info
        self.params = make_params(info) if params is None else params
        self.extra: list[torch.nn.Parameter] = []
        self.inner = info.optim_cls(self.params, **copy.deepcopy(kwargs))
        self.opt = GradientBlender(self.inner, ["x"], {"x": 1.0}) if wrapped else self.inner
        self.wrapped = wrapped

    def loss(self) -> torch.Tensor:
        w1, w2, *bias = self.params
        y = w2 @ torch.tanh(w1 @ X)
        if bias:
            y = y + bias[0]
        loss = (y - 0.5).pow(2).sum()
        for p in self.extra:
            loss = loss + 0.5 * p.pow(2).sum()
        return loss

    def closure(self) -> torch.Tensor:
        self.opt.zero_grad()
        loss = self.loss()
        if self.wrapped:
            self.opt.backward({"x": loss})
        else:
            loss.backward()
        if self.info.only_supports_sparse_grads:  # SparseAdam
            for p in [*self.params, *self.extra]:
                p.grad = p.grad.to_sparse()
        return loss.detach()

    def step(self, use_closure: bool = False) -> Any:
        if use_closure or self.info.step_requires_closure:
            return self.opt.step(self.closure)
        self.closure()
        return self.opt.step()

    def all_params(self) -> list[torch.Tensor]:
        return [*self.params, *self.extra]


def assert_equal(a: Any, b: Any, where: str) -> None:
    """Exact, recursive equality of state-dict values (tensors compared bit for bit)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        assert isinstance(a, torch.Tensor), f"{where}: {a!r} vs a tensor"
        assert isinstance(b, torch.Tensor), f"{where}: a tensor vs {b!r}"
        if a.is_sparse:
            a, b = a.to_dense(), b.to_dense()
        assert a.dtype == b.dtype, f"{where}: dtype {a.dtype} vs {b.dtype}"
        assert torch.equal(a, b), f"{where}: {a} vs {b}"
    elif isinstance(a, dict):
        assert isinstance(b, dict), f"{where}: dict vs {type(b).__name__}"
        assert list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            assert_equal(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
        assert len(a) == len(b), f"{where}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def assert_same_run(plain: Run, wrapped: Run, where: str) -> None:
    for i, (p, q) in enumerate(zip(plain.all_params(), wrapped.all_params(), strict=True)):
        assert_equal(p.detach(), q.detach(), f"{where}: parameter {i}")
    ref = plain.opt.state_dict()
    got = wrapped.opt.state_dict()
    assert_equal(ref["state"], got["state"], f"{where}: state")
    assert_equal(ref["param_groups"], got["param_groups"], f"{where}: param_groups")


names = pytest.mark.parametrize("name", list(INFOS))


@names
def test_steps_match_the_plain_optimizer(name: str) -> None:
    info = INFOS[name]
    for desc, kwargs in configs(info):
        for use_closure in (False, True) if not info.step_requires_closure else (True,):
            where = f"{name} [{desc}] closure={use_closure}"
            plain, wrapped = Run(info, kwargs, False), Run(info, kwargs, True)
            for step in range(4):
                out_plain, out_wrapped = plain.step(use_closure), wrapped.step(use_closure)
                assert_equal(out_plain, out_wrapped, f"{where}: step {step} return value")
                assert_same_run(plain, wrapped, f"{where}: step {step}")
            # One statistics record per step, however often the optimizer calls the closure.
            assert wrapped.opt.statistics.steps == 4, where


@names
def test_state_dict_layout_and_round_trips(name: str) -> None:
    info = INFOS[name]
    for desc, kwargs in configs(info):
        where = f"{name} [{desc}]"
        plain, wrapped = Run(info, kwargs, False), Run(info, kwargs, True)
        for _ in range(3):
            plain.step()
            wrapped.step()
        saved = wrapped.opt.state_dict()
        assert list(saved) == ["state", "param_groups", "blender"], where
        reference = plain.opt.state_dict()
        assert_equal(reference["state"], saved["state"], f"{where}: state")
        assert_equal(reference["param_groups"], saved["param_groups"], f"{where}: groups")

        buffer = io.BytesIO()
        torch.save(saved, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=True)
        assert_equal(saved, loaded, f"{where}: torch.load(weights_only=True)")

        # blender -> blender over equal (not identical) parameters: same state dict, same steps.
        resumed = Run(info, kwargs, True, clone_params(wrapped.params))
        resumed.opt.load_state_dict(copy.deepcopy(loaded))
        assert_equal(saved, resumed.opt.state_dict(), f"{where}: reloaded state dict")
        # blender -> plain: torch.optim ignores the extra "blender" key.
        plain_from_blender = Run(info, kwargs, False, clone_params(plain.params))
        plain_from_blender.opt.load_state_dict(copy.deepcopy(loaded))
        # plain -> blender: the wrapped optimizer loads it; the blender keeps its own state.
        blender_from_plain = Run(info, kwargs, True, clone_params(plain.params))
        own_before = copy.deepcopy(blender_from_plain.opt.state_dict()["blender"])
        blender_from_plain.opt.load_state_dict(copy.deepcopy(plain.opt.state_dict()))
        assert_equal(own_before, blender_from_plain.opt.state_dict()["blender"], where)

        for step in range(2):
            for run in (plain, wrapped, resumed, plain_from_blender, blender_from_plain):
                run.step()
            assert_same_run(plain, wrapped, f"{where}: after {step + 1} steps")
            assert_same_run(wrapped, resumed, f"{where}: blender->blender {step + 1}")
            assert_same_run(plain, plain_from_blender, f"{where}: blender->plain {step + 1}")
            assert_same_run(plain, blender_from_plain, f"{where}: plain->blender {step + 1}")


def check_state_dict_hooks(run: Run, where: str) -> None:
    calls: list[tuple[str, Any]] = []

    def pre(opt: Any) -> None:
        calls.append(("pre", opt))
        opt.state["test"] = 1

    def post(opt: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        calls.append(("post", opt))
        assert state_dict["state"]["test"] == 1
        assert "blender" in state_dict  # post-hooks see the whole dict
        replaced = dict(state_dict)
        replaced["state"] = {k: v for k, v in state_dict["state"].items() if k != "test"}
        replaced["ran_post"] = True
        return replaced

    run.opt.register_state_dict_pre_hook(pre)
    run.opt.register_state_dict_post_hook(post)
    run.inner.register_state_dict_pre_hook(lambda opt: calls.append(("inner pre", opt)))
    saved = run.opt.state_dict()
    assert [(k, o is run.opt) for k, o in calls] == [
        ("pre", True),
        ("inner pre", False),
        ("post", True),
    ], where
    assert calls[1][1] is run.inner, where
    assert saved["ran_post"] is True, where
    assert "test" not in saved["state"], where
    del run.opt.state["test"]

    def load_pre_1(opt: Any, state_dict: dict[str, Any]) -> None:
        calls.append(("load pre 1", opt))
        assert "blender" in state_dict
        state_dict["param_groups"][0]["lr"] = 0.002

    def load_pre_2(opt: Any, state_dict: dict[str, Any]) -> dict[str, Any]:
        calls.append(("load pre 2", opt))
        replaced = copy.deepcopy(state_dict)
        replaced["param_groups"][0]["lr"] = 0.003
        return replaced

    def load_post(opt: Any) -> None:
        calls.append(("load post", opt))
        opt.state["ran_load_post"] = True

    calls.clear()
    run.opt.register_load_state_dict_pre_hook(load_pre_1)
    run.opt.register_load_state_dict_post_hook(load_post)
    run.opt.load_state_dict(run.opt.state_dict())
    assert run.opt.param_groups[0]["lr"] == 0.002, where
    run.opt.register_load_state_dict_pre_hook(load_pre_2, prepend=True)
    run.opt.load_state_dict(run.opt.state_dict())
    assert run.opt.param_groups[0]["lr"] == 0.002, where  # load_pre_1 ran after load_pre_2
    assert run.opt.state["ran_load_post"] is True, where
    assert all(o is run.opt for k, o in calls if k.startswith("load")), where
    kinds = [k for k, _ in calls if k.startswith("load")]
    assert kinds == ["load pre 1", "load post", "load pre 2", "load pre 1", "load post"]


@names
def test_state_dict_hooks_run_with_the_blender(name: str) -> None:
    info = INFOS[name]
    for desc, kwargs in configs(info):
        where = f"{name} [{desc}]"
        run = Run(info, kwargs, True)
        run.step()
        check_state_dict_hooks(run, where)


@names
def test_step_hooks_fire_once_like_a_plain_optimizer(name: str) -> None:
    info = INFOS[name]
    for index, (desc, kwargs) in enumerate(configs(info)):
        where = f"{name} [{desc}]"
        run = Run(info, kwargs, True)
        data: list[tuple[str, bool]] = []

        def hook(tag: str, run: Run = run, data: list = data) -> Any:
            return lambda opt, args, kwargs: data.append((tag, opt is run.opt))

        handles = [
            register_optimizer_step_pre_hook(hook("global pre")),
            register_optimizer_step_post_hook(hook("global post")),
            run.opt.register_step_pre_hook(hook("pre")),
            run.opt.register_step_post_hook(hook("post")),
            run.inner.register_step_pre_hook(hook("inner pre")),
            run.inner.register_step_post_hook(hook("inner post")),
        ]
        try:
            if index == 0:  # one profiler range per step, named after the blender
                with torch.autograd.profiler.profile() as prof:
                    run.step()
                ranges = [e.name for e in prof.function_events if e.name.startswith("Optimizer.")]
                assert ranges.count("Optimizer.step#GradientBlender.step") == 1, ranges
                assert not [
                    r for r in ranges if r.startswith("Optimizer.step#") and "Blender" not in r
                ]
            else:
                run.step()
            run.step()
        finally:
            for handle in handles:
                handle.remove()
        one_step = [
            ("global pre", True),
            ("pre", True),
            ("inner pre", False),
            ("inner post", False),
            ("post", True),
            ("global post", True),
        ]
        assert data == one_step * 2, where
        run.step()
        assert data == one_step * 2, f"{where}: removed hooks still fire"


@names
def test_pickle_and_deepcopy_drop_hooks_like_a_plain_optimizer(name: str) -> None:
    info = INFOS[name]
    for desc, kwargs in configs(info):
        where = f"{name} [{desc}]"
        plain, wrapped = Run(info, kwargs, False), Run(info, kwargs, True)
        for run in (plain, wrapped):
            run.step()
            run.opt.register_step_pre_hook(lambda *a: None)
            run.opt.register_step_post_hook(lambda *a: None)
            run.opt.register_state_dict_pre_hook(lambda o: None)
            run.opt.register_state_dict_post_hook(lambda o, s: None)
            run.opt.register_load_state_dict_pre_hook(lambda o, s: None)
            run.opt.register_load_state_dict_post_hook(lambda o: None)
        for copier in (lambda o: pickle.loads(pickle.dumps(o)), copy.deepcopy):
            plain_copy, wrapped_copy = copier(plain.opt), copier(wrapped.opt)
            for attribute in HOOK_ATTRIBUTES:
                assert len(getattr(wrapped_copy, attribute)) == len(
                    getattr(plain_copy, attribute)
                ), f"{where}: {attribute}"
            public = {k for k in vars(wrapped.opt) if not k.startswith("_")}
            assert public == {k for k in vars(wrapped_copy) if not k.startswith("_")}, where
            assert_equal(wrapped.opt.state_dict(), wrapped_copy.state_dict(), where)
            # The copies train on like the originals (or fail alike: a plain LBFGS copy has lost
            # its `_params` attribute, which `Optimizer.__getstate__` does not keep).
            resumed, outcomes = [], []
            for original, copied in ((plain, plain_copy), (wrapped, wrapped_copy)):
                run = Run(
                    info,
                    kwargs,
                    original.wrapped,
                    [p for g in copied.param_groups for p in g["params"]],
                )
                run.opt = copied
                try:
                    run.step()
                except AttributeError as error:
                    outcomes.append(str(error))
                else:
                    outcomes.append(None)
                resumed.append(run)
            assert outcomes[0] == outcomes[1], f"{where}: {outcomes}"
            if outcomes[1] is None:
                twin = Run(info, kwargs, True, clone_params(wrapped.params))
                twin.opt.load_state_dict(copy.deepcopy(wrapped.opt.state_dict()))
                twin.step()
                assert_same_run(twin, resumed[1], f"{where}: copy steps")


@names
def test_lr_schedulers_drive_the_blender_like_the_plain_optimizer(name: str) -> None:
    info = INFOS[name]
    for desc, kwargs in configs(info):
        for constructors in info.scheduler_inputs:
            where = f"{name} [{desc}]"
            runs = [Run(info, kwargs, False), Run(info, kwargs, True)]
            caught = []
            for run in runs:
                with warnings.catch_warnings(record=True) as record:
                    warnings.simplefilter("always")
                    schedulers = [make(run.opt) for make in constructors]
                    for _ in range(4):
                        loss = run.step()
                        for scheduler in schedulers:
                            if isinstance(scheduler, ReduceLROnPlateau):
                                scheduler.step(run.loss().item() if loss is None else loss)
                            else:
                                scheduler.step()
                caught.append(sorted(str(w.message) for w in record))
            assert caught[0] == caught[1], f"{where}: warnings differ"
            assert_same_run(runs[0], runs[1], f"{where}: {constructors}")


@names
def test_add_param_group_and_zero_grad(name: str) -> None:
    info = INFOS[name]
    for desc, kwargs in configs(info):
        where = f"{name} [{desc}]"
        plain, wrapped = Run(info, kwargs, False), Run(info, kwargs, True)
        for run in (plain, wrapped):
            run.step()
            if info.supports_param_groups:
                extra = torch.nn.Parameter(torch.full((2, 2), 0.5))
                run.extra.append(extra)
                run.opt.add_param_group({"params": [extra]})
            run.step()
            run.closure()
            run.opt.zero_grad(set_to_none=False)
        assert_same_run(plain, wrapped, where)
        for p, q in zip(plain.all_params(), wrapped.all_params(), strict=True):
            assert q.grad is not None, where
            assert_equal(p.grad, q.grad, f"{where}: zero_grad(set_to_none=False)")
        for run in (plain, wrapped):
            run.opt.zero_grad()
        assert all(q.grad is None for q in wrapped.all_params()), where
