"""The opt-in vmap engine: K copies stacked, trained as ONE vmapped ensemble (one forward, one
backward of ``Σ_k L_k(θ_k)``, one element-wise optimizer). Unlike the loop, parameters a head's
loss misses get a zero gradient (slices a zero gradient moves are reset to the checkpoint);
copy k's non-finite loss zeroes its gradient and flags k on the device, and a step where
another head's loss is non-finite on copy k is skipped for k (0 * nan); one dropout stream
serves all copies. On the CPU the loop won on all embedded models (benchmarks/perf)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn, optim
from torch.optim import Optimizer

from blendopt._distributed import average_gradients_, unwrap_model, world_size
from blendopt._finite import NonFiniteRecord
from blendopt._measure import LossFn
from blendopt._rng import RngStream
from blendopt._weighting import check_keys
from blendopt.retrain._clone import clone_optimizer, copy_seed, optimizer_chain, replay_schedule
from blendopt.retrain._config import CopyTraining, OptimizerSpec, TrainStep
from blendopt.retrain._loop import TrainReport, drive, host_reads_free, step_schedulers

#: Optimizers whose update is element-wise, so one optimizer over K stacked copies equals K
#: optimizers (exact classes only: a subclass may override ``step``).
ELEMENTWISE_OPTIMIZERS: tuple[type[Optimizer], ...] = (
    optim.SGD,
    optim.Adam,
    optim.AdamW,
    optim.Adagrad,
    optim.RMSprop,
    optim.Adadelta,
    optim.Adamax,
    optim.NAdam,
    optim.RAdam,
    optim.ASGD,
    optim.Rprop,
)

#: Flags that change how an optimizer computes, not what (dropped for the zero-gradient probe).
_IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable", "differentiable")

_PREFIX = "model."


class _LossModule(nn.Module):
    """``forward(batch) = loss_fn(model, batch)`` (``functional_call`` on it: copy k's tensors)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, batch: Any) -> Mapping[str, torch.Tensor]:
        return self._loss_fn(self.model, batch)


@dataclass
class VmapCopies(TrainReport):
    """The :class:`TrainReport` of :func:`train_copies_vmap`, with per head the step (0-based)
    of its copy's first non-finite loss (``nonfinite``; its gradients zeroed from then on) and
    the steps ``skipped`` for it because ANOTHER head's loss was non-finite on it."""

    nonfinite: dict[str, int | None] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def check_finite(self) -> None:
        """Raise ``FloatingPointError`` naming the first head whose copy's loss was non-finite."""
        for head, step in self.nonfinite.items():
            if step is not None:
                raise FloatingPointError(
                    f"Head {head!r} got a non-finite loss at step {step} while training its "
                    "copy for the G-Blend estimate. Lower the learning rate, or check the "
                    "head's inputs."
                )

    def __repr__(self) -> str:
        bad = [h for h, s in self.nonfinite.items() if s is not None]
        return f"VmapCopies(heads={list(self.models)}, steps={self.steps}, nonfinite={bad})"


def _optimizer_problem(optimizer: OptimizerSpec, model: nn.Module) -> str:
    """Why one optimizer over the stack would not equal K optimizers ("" if it would)."""
    if isinstance(optimizer, Optimizer):
        cls: type = type(optimizer_chain(optimizer)[-1])
    elif callable(optimizer):
        # the factory only needs shapes to build its groups
        params = [nn.Parameter(torch.empty_like(p, device="meta")) for p in model.parameters()]
        try:
            cls = type(optimizer(params))
        except Exception as error:  # any failure means: use the loop
            return f"the optimizer factory failed on meta parameters ({error!r})"
    else:
        return f"`optimizer` is a {type(optimizer).__name__}, not an optimizer or a factory"
    if cls in ELEMENTWISE_OPTIMIZERS:
        return ""
    if issubclass(cls, torch.optim.LBFGS):
        return "LBFGS needs a closure and a line search over all parameters"
    return (
        f"{cls.__name__} is not a known element-wise optimizer (per-tensor norms or factored "
        f"statistics would mix the stacked copies); known: "
        f"{[c.__name__ for c in ELEMENTWISE_OPTIMIZERS]}"
    )


def _model_problem(model: nn.Module) -> str:
    """Why ``model``'s copies cannot be stacked ("" if they can)."""
    devices = set()
    for name, p in model.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            return f"parameter {name!r} is uninitialized (a lazy module)"
        devices.add(p.device)
    if len(devices) > 1:
        return f"parameters are on several devices {sorted(map(str, devices))}"
    for name, module in model.named_modules():
        if isinstance(module, nn.SyncBatchNorm):
            return f"module {name!r} is a SyncBatchNorm (collectives under vmap)"
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.sparse:
            return f"module {name!r} has sparse gradients"
    return ""


def supports_vmap(
    optimizer: OptimizerSpec,
    model: nn.Module,
    *,
    loss_fn: LossFn | None = None,
    batch: Any = None,
    heads: Sequence[str] | None = None,
    train_step: TrainStep | None = None,
) -> tuple[bool, str]:
    """``(True, "")`` if :func:`train_copies_vmap` can train ``model``'s copies exactly, else
    ``(False, reason)``: refused are a ``train_step``, ``torch.distributed``, an optimizer not of
    an exact element-wise ``torch.optim`` class, sparse gradients, lazy parameters,
    ``SyncBatchNorm``, several devices and (given ``loss_fn`` and ``batch``) a forward that fails
    vmapped over two copies (``.item()``, data-dependent control flow)."""
    if train_step is not None:
        return False, (
            "`train_step=` is given: a custom step per copy (its own backward and "
            "optimizer.step()) cannot run as one vmapped step"
        )
    if world_size() > 1:
        return False, (
            f"torch.distributed is initialized (world size {world_size()}): the vmap engine "
            "does not agree on empty batches and diverged copies across ranks"
        )
    if not isinstance(model, nn.Module):
        return False, f"`model` is a {type(model).__name__}, not an nn.Module"
    model = unwrap_model(model)
    problem = _optimizer_problem(optimizer, model) or _model_problem(model)
    if problem:
        return False, problem
    if loss_fn is not None and batch is not None:
        try:
            _trial_forward(model, loss_fn, batch, heads)
        except Exception as error:  # any failure means: use the loop
            return False, f"the model's forward does not run under vmap ({error!r})"
    return True, ""


def _trial_forward(
    model: nn.Module, loss_fn: LossFn, batch: Any, heads: Sequence[str] | None
) -> None:
    wrapper = _LossModule(model, loss_fn)
    params = {n: torch.stack([p.detach()] * 2) for n, p in wrapper.named_parameters()}
    buffers = {n: torch.stack([b] * 2) for n, b in wrapper.named_buffers()}

    def one(p: dict, b: dict) -> torch.Tensor:
        losses = torch.func.functional_call(wrapper, {**p, **b}, (batch,))
        return torch.stack([losses[h] for h in (list(losses) if heads is None else heads)])

    with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices()):
        torch.func.vmap(one, randomness="different")(params, buffers)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def _moves_without_gradient(cls: type[Optimizer], hyper: Mapping[str, Any]) -> bool:
    """Whether ``cls`` with ``hyper`` moves a parameter whose gradient is zero (a probe)."""
    clean = {k: v for k, v in hyper.items() if k not in _IMPLEMENTATION_FLAGS and k != "params"}
    probe = torch.ones(3, requires_grad=True)
    try:
        opt = cls([{"params": [probe], **clean}])
    except Exception:  # an unusual group: assume it moves, reset to be safe
        return True
    for _ in range(3):
        probe.grad = torch.zeros_like(probe)
        opt.step()
    return not torch.equal(probe.detach(), torch.ones(3))


def _reached_parameters(
    wrapper: _LossModule, batch: Any, heads: Sequence[str]
) -> dict[str, set[str]]:
    """head -> names of the parameters its loss reaches (autograd graph walk, one forward)."""
    params = dict(wrapper.named_parameters())
    by_id = {id(p): n for n, p in params.items()}
    scratch = {n: b.clone() for n, b in wrapper.named_buffers()}  # running stats untouched
    with torch.random.fork_rng(devices=_cuda_devices()):
        losses = torch.func.functional_call(wrapper, {**params, **scratch}, (batch,))
    reached: dict[str, set[str]] = {}
    for head in heads:
        found: set[str] = set()
        seen: set[int] = set()
        stack = [losses[head].grad_fn]
        while stack:
            node = stack.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            variable = getattr(node, "variable", None)
            if variable is not None and id(variable) in by_id:
                found.add(by_id[id(variable)])
            stack.extend(fn for fn, _ in node.next_functions)
        reached[head] = found
    return reached


class VmapEngine:
    """K copies of ``reference`` stacked and trained as one vmapped ensemble (see :func:`drive`);
    copy k trains on ``heads[k]``'s loss."""

    name = "vmap"

    def __init__(self, reference: nn.Module, heads: Sequence[str], training: CopyTraining) -> None:
        self.heads, self.expected, self.training_ = list(heads), list(training.heads), training
        if not self.heads or len(set(self.heads)) != len(self.heads):
            raise ValueError(f"Parameter `heads` should name distinct heads. Found {self.heads!r}.")
        missing = [h for h in self.heads if h not in self.expected]
        if missing:
            raise ValueError(
                f"The training's `heads` should include every trained head. Found {missing[0]!r} "
                f"missing from {self.expected!r}."
            )
        reference = unwrap_model(reference)
        source = reference if training.source is None else unwrap_model(training.source)
        k = len(self.heads)
        self.wrapper = _LossModule(reference, training.loss_fn)
        named = list(self.wrapper.named_parameters())
        self.stacked = {n: _stack(p.detach(), k).requires_grad_(p.requires_grad) for n, p in named}
        self.buffers = {
            n: _stack(b.detach(), k, transpose=False) for n, b in self.wrapper.named_buffers()
        }
        self.opt = clone_optimizer(training.optimizer, source, list(self.stacked.values()))  # type: ignore[arg-type]
        # the parameters a zero gradient moves (weight decay): reset where a loss misses them
        self.moving = [
            n
            for group in self.opt.param_groups
            if _moves_without_gradient(type(self.opt), group)
            for n, t in self.stacked.items()
            if any(t is p for p in group["params"])
        ]
        self.sched = replay_schedule(training, self.opt)
        self.trainable_names = [n for n, p in named if p.requires_grad]
        self.trainable = [self.stacked[n] for n in self.trainable_names]
        self.grad_shapes = [(k, *([1] * (p.dim() - 1))) for p in self.trainable]
        device = named[0][1].device if named else None
        self.index = torch.tensor([self.expected.index(h) for h in self.heads], device=device)
        self.device = self.index.device
        self.nonfinite = NonFiniteRecord(k)  # copy k's own loss, on the device
        self.epoch_starts: list[int] = []  # the step each pass began at (host side)
        self.skipped = torch.zeros(k, dtype=torch.long, device=self.device)
        self.all_bad = False
        self.eager = training.eager_checks and host_reads_free(self.device)
        self.stream = RngStream(copy_seed(training.plan.seed, self.expected, self.heads[0]))
        self.resets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.unreached: torch.Tensor | None = None  # (trainable params, K): copy k's loss misses
        self.vmapped = torch.func.vmap(
            self._one_copy, in_dims=(0, 0, 0, None), randomness="different"
        )
        self.modes = {m: m.training for m in self.wrapper.modules()}
        self.wrapper.train()
        self.report = VmapCopies()

    def _one_copy(
        self,
        params: dict[str, torch.Tensor],
        bufs: dict[str, torch.Tensor],
        which: torch.Tensor,
        batch: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        losses = torch.func.functional_call(self.wrapper, {**params, **bufs}, (batch,))
        check_keys(losses, self.expected, "loss_fn", returned=True)
        every = torch.stack([losses[h] for h in self.expected])
        return every[which], torch.isfinite(every.detach()).all()

    def training(self) -> bool:
        return not self.all_bad

    def _find_reached(self, batch: Any) -> None:
        reached = _reached_parameters(self.wrapper, batch, self.heads)
        self.unreached = torch.tensor(
            [[n not in reached[h] for h in self.heads] for n in self.trainable_names],
            dtype=torch.bool,
            device=self.device,
        ).reshape(len(self.trainable_names), len(self.heads))
        for n in self.moving:  # (param, copy rows, checkpoint rows) to reset after each step
            rows = [i for i, h in enumerate(self.heads) if n not in reached[h]]
            if rows:
                target = self.stacked[n].detach()
                index = torch.tensor(rows, device=target.device)
                self.resets.append((target, index, target[index].clone()))

    def step(self, batch: Any, *, step: int, epoch: int) -> None:
        if self.unreached is None:
            self._find_reached(batch)
        with self.stream.active():
            losses, clean = self.vmapped(self.stacked, self.buffers, self.index, batch)
        self.opt.zero_grad(set_to_none=True)
        with self.stream.active():
            losses.sum().backward()
        if epoch == len(self.epoch_starts):
            self.epoch_starts.append(step)
        self.nonfinite.record(torch.isfinite(losses.detach()), step, values=losses.detach())
        bad = self.nonfinite.flagged
        spoiled = ~clean & ~bad  # another head's non-finite loss: 0 * nan reaches copy k
        self.skipped += spoiled
        # Zero the gradients of flagged, spoiled and unreached slices on the device (no sync);
        # on the CPU only once a loss is non-finite (unreached slices get exact zeros).
        if not self.eager or bool((bad | spoiled).any()):
            drop = self.unreached | (bad | spoiled)
            for i, p in enumerate(self.trainable):
                if p.grad is not None:
                    p.grad.masked_fill_(drop[i].view(self.grad_shapes[i]), 0.0)
        average_gradients_(self.trainable)
        self.opt.step()
        with torch.no_grad():
            for target, rows, checkpoint in self.resets:
                target.index_copy_(0, rows, checkpoint)
        step_schedulers([self.sched], self.training_, "step")

    def end_epoch(self, epoch: int) -> None:
        step_schedulers([self.sched], self.training_, "epoch")
        self.all_bad = bool(self.nonfinite.flagged.all())  # one read per pass: all diverged

    def finish(self) -> None:
        for m, mode in self.modes.items():
            m.training = mode
        read = self.nonfinite.read()  # the host syncs, at the end
        report, skipped = self.report, self.skipped.tolist()
        report.models = {h: self._module(i) for i, h in enumerate(self.heads)}
        for i, h in enumerate(self.heads):
            report.nonfinite[h], report.skipped[h] = read.first[i], skipped[i]
            if read.first[i] is not None:
                epoch = max(e for e, s in enumerate(self.epoch_starts) if s <= read.first[i])
                report.diverged[h] = (
                    f"loss {read.first_value[i]} at step {read.first[i]}, epoch {epoch}"
                )
            elif skipped[i]:
                report.notes.append(
                    f"head {h!r}: {skipped[i]} steps of its copy were skipped by the vmap engine "
                    "(another head's loss was non-finite on that copy; its gradient would carry "
                    "0 * nan)"
                )

    def _module(self, i: int) -> nn.Module:
        """Copy ``i`` as an ordinary module."""
        net = copy.deepcopy(self.wrapper.model)
        net.train()
        with torch.no_grad():
            for n, t in net.named_parameters():
                t.copy_(self.stacked[_PREFIX + n][i])
                t.grad = None
            for n, t in net.named_buffers():
                t.copy_(self.buffers[_PREFIX + n][i])
        return net


def train_copies_vmap(
    reference: nn.Module, heads: Sequence[str], training: CopyTraining
) -> VmapCopies:
    """:func:`train_copies` as one vmapped ensemble (check :func:`supports_vmap` first): copy k
    of ``reference`` (left untouched) trains on ``heads[k]``'s loss, a subset of
    ``training.heads``; one dropout stream, seeded like the loop's copy of ``heads[0]``.

    Raises:
        ValueError: no or duplicate heads, an empty ``train``, ``loss_fn`` returning the wrong
            heads, or an optimizer over other parameters.
    """
    return drive(VmapEngine(reference, heads, training), training)


def _stack(tensor: torch.Tensor, k: int, transpose: bool = True) -> torch.Tensor:
    """K copies of ``tensor`` along a new dim 0; with ``transpose`` a 2-D weight is stored as
    ``(K, in, out)`` and returned transposed, so vmapped ``linear``'s weight gradient lands in
    its own layout (measured: the largest cost of a vmapped MLP step on the CPU)."""
    if transpose and tensor.dim() == 2:
        return tensor.t().unsqueeze(0).repeat(k, 1, 1).transpose(1, 2)
    return tensor.unsqueeze(0).repeat(k, *([1] * tensor.dim()))
