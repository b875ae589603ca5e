"""Algorithm 1's model copies trained as ONE vmapped ensemble (the "vmap" engine).

The lockstep loop (:func:`blendopt._copies.train_copies`) runs K forward/backward passes and K
optimizer steps per batch, one per head's copy. Here the K copies' parameters are stacked
along a new leading dimension (``torch.func.stack_module_state`` layout) and one
``torch.func.vmap`` over ``torch.func.functional_call`` runs all K copies at once: one batched
forward, one backward of ``Σ_k L_k(θ_k)`` (copy k's loss is head k's loss, so each slice θ_k
receives exactly ∇L_k), and ONE optimizer of the wrapped optimizer's class and per-group
hyper-parameters over the stacked parameters.

Exactness: for element-wise optimizers (each entry's update depends only on that entry's
gradient and state, plus per-tensor step counters that are equal across copies) one optimizer
over the stack is K independent optimizers. Optimizers with per-tensor norms, line searches or
factored moments (LBFGS, Adafactor, Muon, SparseAdam) are refused by :func:`supports_vmap`.
Two places where the stack would differ from the loop are handled:

- **Parameters a head's loss does not reach.** In the loop they get no gradient and the
  optimizer skips them; in the stack their slice gets a zero gradient. For optimizers that
  move a parameter with a zero gradient (``weight_decay``, AdamW's decoupled decay, ASGD's
  decay; detected by a tiny probe, not by a list) those slices are reset to the checkpoint
  after every step, so they stay frozen as in the loop.
- **Non-finite losses.** Copy k's gradient is zeroed and k is flagged, all on the device (no
  per-step host synchronization; on the CPU, where reading a flag costs nothing, the masking
  runs only once a flag is set); :attr:`VmapCopies.nonfinite` is read once at the end. A
  step where another head's loss is non-finite on copy k is skipped for copy k (zero
  gradient; counted in :attr:`VmapCopies.skipped`): the loop would step it, but under vmap
  the other head's 0 * nan gradient reaches copy k through the shared batched graph.

Randomness: ``vmap(randomness="different")``, so dropout draws differ per copy but come from
one stream for all copies instead of one stream per copy: results then differ from the loop
engine in the random draws (equal in distribution). Without randomness in the model the
copies match the loop's to float tolerance (tested). BatchNorm running statistics are stacked
buffers updated in place under vmap (tested on torch 2.13, CPU).

Cost: the vmap engine saves Python and kernel-launch overhead (one pass instead of K), but its
backward runs every head's graph for every copy (the graph is shared by the batched copies,
so it cannot be pruned per copy), where the loop backpropagates only head k's graph in copy
k (for late fusion about 2 full backwards in all, against K). Which wins depends on the model
and the device, so ``engine="auto"`` is :func:`choose_engine`, a short timed trial. Measured
on the CPU (1 thread, ``benchmarks/perf/exact_engines.py``) the loop won on all three embedded
late-fusion models; 2-D weights are stored transposed (see ``_stack``), which took vmap from
1.75x to 1.2x the loop's step on synthetic_av.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from blendopt._copies import TrainStep
from blendopt._distributed import average_gradients_, world_size
from blendopt._measure import check_heads, is_empty_batch
from blendopt._replay import Interval, SchedulerSpec, scheduler_for_copy
from blendopt._retrain import (
    LossFn,
    OptimizerSpec,
    _inner_optimizer,
    remap_param_groups,
    unwrap_model,
)
from blendopt._rng import RngStream

logger = logging.getLogger("blendopt")

#: Optimizers whose update is element-wise, so one optimizer over K stacked copies equals K
#: optimizers (exact classes only: a subclass may override ``step``).
ELEMENTWISE_OPTIMIZERS: tuple[type[Optimizer], ...] = (
    torch.optim.SGD,
    torch.optim.Adam,
    torch.optim.AdamW,
    torch.optim.Adagrad,
    torch.optim.RMSprop,
    torch.optim.Adadelta,
    torch.optim.Adamax,
    torch.optim.NAdam,
    torch.optim.RAdam,
    torch.optim.ASGD,
    torch.optim.Rprop,
)

#: Flags that change how an optimizer computes, not what (dropped for the zero-gradient probe).
_IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable", "differentiable")

_PREFIX = "model."


class _LossModule(nn.Module):
    """``forward(batch) = loss_fn(model, batch)`` with ``model`` a submodule.

    ``functional_call`` on this wrapper swaps the model's own parameters and buffers for the
    vmapped ones for the duration of the call, so ``loss_fn`` gets the user's module (any
    attribute or method it uses sees copy k's tensors), not a stand-in.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, batch: Any) -> Mapping[str, torch.Tensor]:
        return self._loss_fn(self.model, batch)


@dataclass
class VmapCopies:
    """The result of :func:`train_copies_vmap`.

    Attributes:
        models: head -> its trained copy (an ordinary module, measured like the loop's copies).
        nonfinite: head -> the step (0-based) at which its copy's loss first became non-finite,
            or ``None``; that copy's gradients were zeroed from then on.
        steps: the optimizer steps taken.
        skipped: head -> steps at which its copy's gradient was zeroed because ANOTHER head's
            loss was non-finite on that copy (under vmap its 0 * nan gradient would reach the
            copy through the shared graph; the loop engine would have stepped it).
        epochs: passes over the loader started.
        empty_batches: empty batches skipped (never passed to the model).
        nonfinite_epoch: head -> the pass (0-based) of its first non-finite loss, or ``None``.
        nonfinite_loss: head -> that first non-finite loss (the mean over its elements).
    """

    models: dict[str, nn.Module]
    nonfinite: dict[str, int | None] = field(default_factory=dict)
    steps: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    epochs: int = 0
    empty_batches: int = 0
    nonfinite_epoch: dict[str, int | None] = field(default_factory=dict)
    nonfinite_loss: dict[str, float] = field(default_factory=dict)

    def diverged(self) -> dict[str, str]:
        """head -> why its copy is discarded, in the lockstep loop's words
        (``TrainReport.diverged``): its loss became non-finite; weight 0 in the estimate.

        The vmap engine zeroes such a copy's gradient from that step on (the loop stops
        training it); either way the copy is not measured.
        """
        out = {}
        for head, step in self.nonfinite.items():
            if step is not None:
                out[head] = (
                    f"head {head!r}: its copy diverged (loss {self.nonfinite_loss.get(head)} at "
                    f"step {step}, epoch {self.nonfinite_epoch.get(head)}) and stopped training; "
                    "weight 0"
                )
        return out

    def skip_notes(self) -> list[str]:
        """One note per copy whose steps were skipped (see :attr:`skipped`)."""
        return [
            f"head {head!r}: {n} steps of its copy were skipped by the vmap engine (another "
            "head's loss was non-finite on that copy; its gradient would carry 0 * nan)"
            for head, n in self.skipped.items()
            if n and self.nonfinite.get(head) is None
        ]

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


def _optimizer_class(optimizer: OptimizerSpec, model: nn.Module) -> tuple[type | None, str]:
    if isinstance(optimizer, Optimizer):
        return type(_inner_optimizer(optimizer)), ""
    if callable(optimizer):
        params = [
            nn.Parameter(torch.empty_like(p, device="meta")) for p in model.parameters()
        ]  # the factory only needs shapes to build its groups
        try:
            made = optimizer(params)
        except Exception as error:  # any failure means: use the loop
            return None, f"the optimizer factory failed on meta parameters ({error!r})"
        return type(made), ""
    return None, f"`optimizer` is a {type(optimizer).__name__}, not an optimizer or a factory"


def supports_vmap(
    optimizer: OptimizerSpec,
    model: nn.Module,
    *,
    loss_fn: LossFn | None = None,
    batch: Any = None,
    heads: Sequence[str] | None = None,
    train_step: TrainStep | None = None,
) -> tuple[bool, str]:
    """Whether :func:`train_copies_vmap` can train ``model``'s copies exactly, and why not.

    Checks the options the engine lacks (a ``train_step`` hook, a ``torch.distributed`` run),
    the optimizer (an exact element-wise ``torch.optim`` class), the model (no sparse
    gradients, lazy or uninitialized parameters, ``SyncBatchNorm``, or parameters on several
    devices) and, given ``loss_fn`` and ``batch``, that one vmapped forward of two copies runs
    (data-dependent Python control flow, ``.item()`` or in-place writes to unbatched tensors
    fail there).

    Args:
        optimizer: the optimizer (a ``GradientBlender`` is unwrapped) or a factory.
        model: the model whose copies are trained.
        loss_fn: optional ``loss_fn(model, batch) -> {head: loss}`` for the trial forward.
        batch: optional batch for the trial forward.
        heads: the heads (defaults to the keys ``loss_fn`` returns).
        train_step: the copies' custom step, if any (refused: it runs per copy).

    Returns:
        ``(True, "")`` or ``(False, reason)``.
    """
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
    cls, reason = _optimizer_class(optimizer, model)
    if cls is None:
        return False, reason
    if cls not in ELEMENTWISE_OPTIMIZERS:
        if issubclass(cls, torch.optim.LBFGS):
            return False, "LBFGS needs a closure and a line search over all parameters"
        return False, (
            f"{cls.__name__} is not a known element-wise optimizer (per-tensor norms or factored "
            f"statistics would mix the stacked copies); known: "
            f"{[c.__name__ for c in ELEMENTWISE_OPTIMIZERS]}"
        )
    devices = set()
    for name, p in model.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            return False, f"parameter {name!r} is uninitialized (a lazy module)"
        devices.add(p.device)
    if len(devices) > 1:
        return False, f"parameters are on several devices {sorted(map(str, devices))}"
    for name, module in model.named_modules():
        if isinstance(module, nn.SyncBatchNorm):
            return False, f"module {name!r} is a SyncBatchNorm (collectives under vmap)"
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.sparse:
            return False, f"module {name!r} has sparse gradients"
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
        names = list(losses) if heads is None else list(heads)
        return torch.stack([losses[h] for h in names])

    with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices()):
        torch.func.vmap(one, randomness="different")(params, buffers)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def _moves_without_gradient(cls: type[Optimizer], hyper: Mapping[str, Any]) -> bool:
    """Whether ``cls`` with ``hyper`` changes a parameter whose gradient is zero (probe)."""
    clean = {k: v for k, v in hyper.items() if k not in _IMPLEMENTATION_FLAGS}
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
    wrapper: _LossModule,
    batch: Any,
    heads: Sequence[str],
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


def _stacked_optimizer(
    optimizer: OptimizerSpec,
    source: nn.Module,
    names: Sequence[str],
    reference_params: Sequence[nn.Parameter],
    stacked: Mapping[str, torch.Tensor],
) -> tuple[Optimizer, list[tuple[list[str], bool]]]:
    """One optimizer over the stacked parameters; per group: (names, moves with zero grad)."""
    if isinstance(optimizer, Optimizer):
        inner, named = remap_param_groups(optimizer, source, names)  # by position
        groups = [
            {"params": [stacked[n] for n in group_names], **hyper} for group_names, hyper in named
        ]
        info = [
            (group_names, _moves_without_gradient(type(inner), hyper))
            for group_names, hyper in named
        ]
        return type(inner)(groups), info
    pairs = zip(names, reference_params, strict=True)
    made = optimizer([stacked[n] for n, p in pairs if p.requires_grad])
    if not isinstance(made, Optimizer):
        raise TypeError(
            f"The optimizer factory should return a torch.optim.Optimizer. Found "
            f"{type(made).__name__}."
        )
    name_of = {id(stacked[n]): n for n in names}
    info = []
    for group in made.param_groups:
        hyper = {k: v for k, v in group.items() if k != "params"}
        info.append(
            ([name_of[id(p)] for p in group["params"]], _moves_without_gradient(type(made), hyper))
        )
    return made, info


def train_copies_vmap(
    reference: nn.Module,
    heads: Sequence[str],
    loss_fn: LossFn,
    optimizer: OptimizerSpec,
    train: Iterable[Any],
    *,
    epochs: int | None = None,
    steps: int | None = None,
    per_epoch: int | None = None,
    seed: int = 0,
    source: nn.Module | None = None,
    all_heads: Sequence[str] | None = None,
    progress: bool = False,
    scheduler: SchedulerSpec | None = None,
    scheduler_interval: Interval | None = None,
    scheduler_position: int | None = None,
    on_epoch: Callable[[int], None] | None = None,
) -> VmapCopies:
    """Train one copy of ``reference`` per head on that head's loss, as one vmapped ensemble.

    The vmap counterpart of the lockstep loop of Algorithm 1 (GB-Estimate): copy k starts from
    ``reference``'s parameters and buffers, is trained in train mode on ``loss_fn(...)[heads[k]]``
    alone with a fresh optimizer (no state) of ``optimizer``'s class and per-group
    hyper-parameters, for ``epochs`` passes over ``train`` (at most ``per_epoch`` batches each)
    or ``steps`` batches. ``reference`` itself (parameters, buffers, mode) is left untouched.
    Empty batches are skipped and counted, as in the loop. Check :func:`supports_vmap` first.

    Args:
        reference: the checkpoint to copy (unwrapped).
        heads: the heads; copy k trains on ``heads[k]``.
        loss_fn: ``loss_fn(model, batch) -> {head: scalar loss}``; it gets ``reference`` with
            its tensors swapped for copy k's under vmap.
        optimizer: an optimizer over ``source``'s parameters (class and hyper-parameters are
            reused; a ``GradientBlender`` is unwrapped), or a factory ``params -> Optimizer``
            (it receives the stacked parameters).
        train: the training batches T.
        epochs: passes over ``train``.
        steps: alternatively, the number of batches.
        per_epoch: at most this many batches per pass.
        seed: seed of the copies' random stream (dropout; ``randomness="different"``).
        source: the model ``optimizer`` holds, mapped to ``reference`` by parameter position
            (defaults to ``reference``).
        all_heads: every head ``loss_fn`` returns (defaults to ``heads``; pass it when
            training a subset of the heads' copies, as ``copies_at_once`` does; the vmapped
            copies hold K sets of activations at once, so grouping also bounds memory).
        progress: show a tqdm progress bar (if tqdm is installed); epochs are always logged
            at INFO level to the ``blendopt`` logger.
        scheduler: the run's learning-rate scheduler or a factory, replayed on the stacked
            optimizer (:func:`blendopt._replay.scheduler_for_copy`; every copy follows the
            same rates, as each loop copy's own scheduler would).
        scheduler_interval: ``"step"`` (after every optimizer step) or ``"epoch"`` (after
            every pass); required with ``scheduler``.
        scheduler_position: the run's scheduler steps so far (fast-forward), or ``None``.
        on_epoch: called with the pass number before each pass (epoch-aware samplers).

    Returns:
        :class:`VmapCopies`: the K trained modules and per-head non-finite flags.

    Raises:
        ValueError: no or duplicate heads, both or neither of ``epochs``/``steps``, an empty
            ``train``, ``loss_fn`` returning the wrong heads, or an optimizer over other
            parameters.
    """
    heads = list(heads)
    if not heads or len(set(heads)) != len(heads):
        raise ValueError(f"Parameter `heads` should name distinct heads. Found {heads!r}.")
    if (epochs is None) == (steps is None):
        raise ValueError(
            f"Pass exactly one of `epochs` and `steps`. Found epochs={epochs!r}, steps={steps!r}."
        )
    reference = unwrap_model(reference)
    source = reference if source is None else unwrap_model(source)
    expected = heads if all_heads is None else list(all_heads)
    missing = [h for h in heads if h not in expected]
    if missing:
        raise ValueError(
            f"Parameter `all_heads` should include every trained head. Found {missing[0]!r} "
            f"missing from {expected!r}."
        )
    k = len(heads)
    wrapper = _LossModule(reference, loss_fn)
    named = list(wrapper.named_parameters())
    names = [n for n, _ in named]
    ref_params = [p for _, p in named]
    stacked: dict[str, torch.Tensor] = {}
    for n, p in named:
        stacked[n] = _stack(p.detach(), k).requires_grad_(p.requires_grad)
    buffers = {
        n: b.detach().unsqueeze(0).repeat(k, *([1] * b.dim())) for n, b in wrapper.named_buffers()
    }
    opt, group_info = _stacked_optimizer(optimizer, source, names, ref_params, stacked)
    sched = (
        None
        if scheduler is None
        else scheduler_for_copy(scheduler, opt, position=scheduler_position)
    )
    trainable_names = [n for n, p in named if p.requires_grad]
    trainable = [stacked[n] for n in trainable_names]
    grad_shapes = [(k, *([1] * (p.dim() - 1))) for p in trainable]
    index = torch.tensor(
        [expected.index(h) for h in heads], device=ref_params[0].device if ref_params else None
    )
    device = index.device
    bad = torch.zeros(k, dtype=torch.bool, device=device)
    first_bad = torch.full((k,), -1, dtype=torch.long, device=device)
    first_loss = torch.zeros(k, device=device)
    skipped = torch.zeros(k, dtype=torch.long, device=device)
    stream = RngStream(seed)
    resets: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    unreached: torch.Tensor | None = None  # (trainable params, K): copy k's loss misses it
    moving = [n for group_names, moves in group_info if moves for n in group_names]

    def one_copy(
        params: dict[str, torch.Tensor],
        bufs: dict[str, torch.Tensor],
        which: torch.Tensor,
        batch: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        losses = torch.func.functional_call(wrapper, {**params, **bufs}, (batch,))
        check_heads("loss_fn", losses, expected)
        every = torch.stack([losses[h] for h in expected])
        return every[which], torch.isfinite(every.detach()).all()

    vmapped = torch.func.vmap(one_copy, in_dims=(0, 0, 0, None), randomness="different")
    bar = _progress_bar(steps, epochs, per_epoch, f"G-Blend estimate (vmap) {heads}", progress)
    modes = {m: m.training for m in wrapper.modules()}
    wrapper.train()
    done = epoch = empty = 0
    epoch_starts: list[int] = []  # the step each pass began at (host side, for the notes)
    start = time.perf_counter()
    try:
        while epochs is None or epoch < epochs:
            if on_epoch is not None:
                on_epoch(epoch)
            epoch_starts.append(done)
            seen = 0
            for batch in train:
                if per_epoch is not None and seen >= per_epoch:
                    break
                if steps is not None and done >= steps:
                    break
                if is_empty_batch(batch):
                    empty += 1
                    continue
                if unreached is None:
                    reached = _reached_parameters(wrapper, batch, heads)
                    unreached = torch.tensor(
                        [[n not in reached[h] for h in heads] for n in trainable_names],
                        dtype=torch.bool,
                        device=device,
                    ).reshape(len(trainable_names), k)
                    resets = _frozen_slices(heads, reached, stacked, moving)
                with stream.active():
                    losses, clean = vmapped(stacked, buffers, index, batch)
                opt.zero_grad(set_to_none=True)
                with stream.active():
                    losses.sum().backward()
                finite = torch.isfinite(losses.detach())
                first_bad = torch.where(~finite & ~bad, done, first_bad)
                first_loss = torch.where(~finite & ~bad, losses.detach().float(), first_loss)
                bad |= ~finite
                # Another head's non-finite loss reaches copy k's gradient as 0 * nan through
                # the shared batched graph (the loop never backpropagates it): skip that step.
                spoiled = ~clean & ~bad
                skipped += spoiled
                # Zero the gradient of flagged and spoiled copies and of the slices a copy's
                # loss does not reach, on the device: no host synchronization.
                # On the CPU reading a flag costs no synchronization, and masking is only needed
                # once a loss is non-finite (unreached slices get exact zeros otherwise).
                if not _host_reads_free(device) or bool((bad | spoiled).any()):
                    drop = unreached | (bad | spoiled)
                    for i, p in enumerate(trainable):
                        if p.grad is not None:
                            p.grad.masked_fill_(drop[i].view(grad_shapes[i]), 0.0)
                average_gradients_(trainable)
                opt.step()
                with torch.no_grad():
                    for target, rows, checkpoint in resets:
                        target.index_copy_(0, rows, checkpoint)
                if sched is not None and scheduler_interval == "step":
                    sched.step()
                seen += 1
                done += 1
                if bar is not None:
                    bar.update(1)
            if seen == 0:
                raise ValueError(
                    f"Parameter `train` yielded no non-empty batch in a pass ({empty} empty "
                    "batches skipped). Pass a non-empty loader."
                )
            if sched is not None and scheduler_interval == "epoch":
                sched.step()
            epoch += 1
            logger.info(
                "G-Blend estimate (vmap): heads %s, epoch %d done (%d steps, %.1f s)",
                heads,
                epoch,
                done,
                time.perf_counter() - start,
            )
            if steps is not None and done >= steps:
                break
            if bool(bad.all()):  # one read per pass: every copy diverged, as the loop stops
                break
    finally:
        for m, mode in modes.items():
            m.training = mode
        if bar is not None:
            bar.close()
    models = {}
    for i, head in enumerate(heads):
        net = copy.deepcopy(wrapper.model)
        net.train()
        with torch.no_grad():
            for n, t in net.named_parameters():
                t.copy_(stacked[_PREFIX + n][i])
                t.grad = None
            for n, t in net.named_buffers():
                t.copy_(buffers[_PREFIX + n][i])
        models[head] = net
    steps_bad = first_bad.tolist()  # the host synchronizations, at the end
    nonfinite = {h: (s if s >= 0 else None) for h, s in zip(heads, steps_bad, strict=True)}
    return VmapCopies(
        models=models,
        nonfinite=nonfinite,
        steps=done,
        skipped=dict(zip(heads, skipped.tolist(), strict=True)),
        epochs=epoch,
        empty_batches=empty,
        nonfinite_epoch={
            h: None if s is None else max(e for e, b in enumerate(epoch_starts) if b <= s)
            for h, s in nonfinite.items()
        },
        nonfinite_loss={
            h: v
            for (h, s), v in zip(nonfinite.items(), first_loss.tolist(), strict=True)
            if s is not None
        },
    )


def _progress_bar(
    steps: int | None, epochs: int | None, per_epoch: int | None, desc: str, enabled: bool
) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional; logging still reports progress
        return None
    total = steps if steps is not None else (epochs or 0) * (per_epoch or 0)
    return tqdm(total=total or None, desc=desc, leave=False)


def _host_reads_free(device: torch.device) -> bool:
    """Whether reading a device flag on the host costs no synchronization (the CPU)."""
    return device.type == "cpu"


def _stack(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """K copies of ``tensor`` along a new dim 0.

    A 2-D weight is stored as ``(K, in, out)`` and returned as its ``(K, out, in)`` transposed
    view: vmapped ``linear`` runs ``bmm(x, W^T)``, whose weight gradient then lands in the
    parameter's own layout (autograd keeps a gradient's strides equal to its parameter's)
    instead of being copied into a transposed one every step (measured: the largest cost of
    a vmapped MLP step on the CPU).
    """
    if tensor.dim() == 2:
        return tensor.t().unsqueeze(0).repeat(k, 1, 1).transpose(1, 2)
    return tensor.unsqueeze(0).repeat(k, *([1] * tensor.dim()))


def _frozen_slices(
    heads: Sequence[str],
    reached: Mapping[str, set[str]],
    stacked: Mapping[str, torch.Tensor],
    moving: Sequence[str],
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(stacked param, copy rows, checkpoint rows) to reset after each step.

    Only for parameters in groups whose optimizer moves zero-gradient entries, and only the
    copies whose head's loss does not reach them (in the loop those get no gradient at all).
    """
    out = []
    for n in moving:
        rows = [i for i, h in enumerate(heads) if n not in reached[h]]
        if rows:
            target = stacked[n]
            index = torch.tensor(rows, device=target.device)
            checkpoint = target.detach()[index].clone()
            out.append((target.detach(), index, checkpoint))
    return out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_engines(
    model: nn.Module,
    optimizer: OptimizerSpec,
    loss_fn: LossFn,
    batch: Any,
    heads: Sequence[str],
    *,
    steps: int = 3,
    engines: Sequence[str] = ("loop", "vmap"),
    repeats: int = 1,
) -> dict[str, float]:
    """Seconds per copy-training step of each engine on repeats of ``batch``.

    A step is one batch through all K copies: for the loop, each copy's forward, its head's
    backward and its optimizer step (as ``estimate_weights`` runs them); for vmap, one of
    each over the stack. Set-up (copying, stacking) is excluded: the loop's by timing after
    it, vmap's as ``t(1 + steps) - t(1)``, after a warm-up run. Runs in an isolated random
    state; ``model`` is not changed.

    Args:
        model, optimizer, loss_fn, batch, heads: as for :func:`train_copies_vmap`.
        steps: timed steps per engine.
        engines: which engines to time (``"loop"``, ``"vmap"``).
        repeats: time the engines this many times, alternating, and keep each one's fastest
            (the minimum is robust to load spikes on a shared machine).

    Returns:
        engine -> seconds per step.
    """
    model = unwrap_model(model)
    device = next(model.parameters()).device
    heads = list(heads)
    unknown = [e for e in engines if e not in ("loop", "vmap")]
    if unknown:
        raise ValueError(f"Parameter `engines` should hold 'loop' or 'vmap'. Found {unknown[0]!r}.")

    def clock() -> float:
        _synchronize(device)
        return time.perf_counter()

    def loop() -> float:
        copies = {h: copy.deepcopy(model) for h in heads}
        if isinstance(optimizer, Optimizer):
            from blendopt._retrain import clone_optimizer

            opts = {h: clone_optimizer(optimizer, model, net) for h, net in copies.items()}
        else:
            opts = {h: optimizer(list(net.parameters())) for h, net in copies.items()}
        for net in copies.values():
            net.train()
        start = 0.0
        for i in range(steps + 1):  # step 0 is a warm-up (optimizer state, allocations)
            if i == 1:
                start = clock()
            for h, net in copies.items():
                opts[h].zero_grad(set_to_none=True)
                loss_fn(net, batch)[h].backward()
                opts[h].step()
        return (clock() - start) / steps

    def vmapped() -> float:
        def run(n: int) -> float:
            start = clock()
            train_copies_vmap(model, heads, loss_fn, optimizer, [batch] * n, epochs=1)
            return clock() - start

        run(1)  # warm-up
        return max(run(1 + steps) - run(1), 0.0) / steps

    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=_cuda_devices()):
        for r in range(max(1, repeats)):
            for name in engines if r % 2 == 0 else list(reversed(engines)):
                seconds = loop() if name == "loop" else vmapped()
                out[name] = min(out.get(name, seconds), seconds)
    return out


def choose_engine(
    model: nn.Module,
    optimizer: OptimizerSpec,
    loss_fn: LossFn,
    batch: Any,
    heads: Sequence[str],
    *,
    steps: int = 3,
    repeats: int = 3,
    margin: float = 0.9,
    trial_on_cpu: bool = False,
    train_step: TrainStep | None = None,
) -> str:
    """The rule for ``engine="auto"``: ``"vmap"`` where it is exact and measurably faster.

    ``"loop"`` if :func:`supports_vmap` refuses the model or optimizer (with a trial forward
    on ``batch``), or on the CPU unless ``trial_on_cpu`` (measured with
    ``benchmarks/perf/exact_engines.py``, 1 thread: vmap took 0.98-1.31x the loop's step
    with SGD-momentum and 1.21-1.93x with Adam on the three embedded models, as its backward
    and optimizer step cover every head's parameters in every copy). Otherwise both engines
    are timed on ``steps`` repeats of ``batch``, ``repeats`` times alternating, keeping each
    one's fastest (:func:`time_engines`), and ``"vmap"`` is kept only if its step takes less
    than ``margin`` times the loop's (the loop is the reference, and its dropout draws are the
    documented ones). The trial costs about ``repeats * (3 * steps + 5)`` steps of copy
    training; call it once per run and reuse the answer (the per-step cost does not change
    between estimates). ``batch`` is not read on the CPU without ``trial_on_cpu`` (it may be
    ``None`` there). A ``train_step`` or a ``torch.distributed`` run keeps the loop.

    Returns:
        ``"vmap"`` or ``"loop"``.
    """
    device = next(unwrap_model(model).parameters()).device
    if device.type == "cpu" and not trial_on_cpu:
        return "loop"  # measured: the loop won on every embedded model on the CPU (see above)
    ok, _ = supports_vmap(
        optimizer, model, loss_fn=loss_fn, batch=batch, heads=heads, train_step=train_step
    )
    if not ok:
        return "loop"
    times = time_engines(model, optimizer, loss_fn, batch, heads, steps=steps, repeats=repeats)
    return "vmap" if times["vmap"] < margin * times["loop"] else "loop"
