"""Algorithm 1's settings (:class:`RetrainConfig`) and what the engines train by
(:class:`TrainPlan`, :class:`CopyTraining`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from blendopt._math import DEFAULT_EPS
from blendopt._measure import LossFn, MetricFn
from blendopt._rng import derive_seed

if TYPE_CHECKING:
    from blendopt._rng import SamplerEpochs

#: ``train_step(model, optimizer, batch, head) -> loss``: a copy's training step.
TrainStep = Callable[[nn.Module, Optimizer, Any, str], torch.Tensor]
#: An optimizer whose class and hyper-parameters the copies reuse, or ``params -> Optimizer``.
OptimizerSpec = Optimizer | Callable[[list[nn.Parameter]], Optimizer]
Engine = Literal["auto", "loop", "vmap"]
ENGINES = ("auto", "loop", "vmap")
#: The run's scheduler (replayed on each copy) or a factory ``optimizer -> LRScheduler``.
SchedulerSpec = LRScheduler | Callable[[Optimizer], LRScheduler]
Interval = Literal["step", "epoch"]


def check_scheduler(spec: SchedulerSpec | None, interval: Interval | None) -> None:
    """Validate ``scheduler``/``scheduler_interval`` (both or neither)."""
    if spec is None:
        if interval is not None:
            raise ValueError(
                f"Parameter `scheduler_interval` is {interval!r} but no `scheduler` was given. "
                "Pass the run's scheduler (or a factory `optimizer -> LRScheduler`), or drop "
                "`scheduler_interval`."
            )
        return
    if isinstance(spec, ReduceLROnPlateau):
        raise ValueError(
            "Parameter `scheduler` is a ReduceLROnPlateau: it steps on the run's validation "
            "metric, which the copies do not have. Pass a factory `optimizer -> LRScheduler` "
            "giving the rates the copies should follow, or no scheduler (constant rate)."
        )
    if not isinstance(spec, LRScheduler) and not callable(spec):
        raise TypeError(
            "Parameter `scheduler` should be an LRScheduler (replayed on each copy) or a factory "
            f"`optimizer -> LRScheduler`. Found {type(spec).__name__}."
        )
    if interval not in ("step", "epoch"):
        raise ValueError(
            f"Parameter `scheduler_interval` should be 'step' (the run calls scheduler.step() "
            f"after every optimizer step) or 'epoch' (once per epoch). Found {interval!r}."
        )


def check_model(model: object) -> None:
    """Raise ``TypeError`` unless ``model`` is an ``nn.Module``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"Parameter `model` should be an nn.Module. Found {type(model).__name__}.")


def _is_count(v: object) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)


def _is_positive(v: object) -> bool:
    return v is None or (isinstance(v, (int, float)) and math.isfinite(v) and v > 0)


#: field -> (valid?, what it should be): the value checks of :class:`RetrainConfig`.
_VALUE_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "epochs": (_is_count, "an int >= 1"),
    "steps": (_is_count, "an int >= 1"),
    "copies_at_once": (_is_count, "an int >= 1"),
    "fraction": (lambda f: isinstance(f, (int, float)) and 0.0 < f <= 1.0, "in (0, 1]"),
    "resolution": (_is_positive, "a finite number > 0 (the metric's smallest step) or None"),
}


@dataclass(frozen=True)
class RetrainConfig:
    """The settings of an Algorithm-1 estimate (see :func:`blendopt.estimate_weights`).

    Attributes:
        epochs: n, the epochs between the two checkpoints (overrides the schedule's horizon).
        steps: alternatively, the number of batches between the two checkpoints.
        metric: ``"loss"`` or ``metric(model, batch) -> {head: value}`` (e.g. ``top1_error``).
        higher_is_better: ``metric`` is a score (accuracy, mAP); it is negated.
        fraction: train each epoch on this fraction of the training loader's batches.
        eps: relative floor of dO² (see :func:`blendopt.functional.blend_estimate`).
        resolution: the metric's smallest step (e.g. 1/|V| for an error on V): dO² is floored
            at resolution² (heads recorded in ``floored``); ``None``: no absolute floor.
        seed: seed of the estimate's own random state (shuffling, dropout, augmentation).
        copies_at_once: train at most this many copies at a time (memory); default all.
        progress: show a tqdm progress bar (if tqdm is installed).
        engine: ``"loop"``, ``"vmap"`` (one vmapped ensemble) or ``"auto"`` (the loop).
        noise_aware: per-sample measurements with paired standard errors.
        scheduler: the run's ``LRScheduler`` (or factory), replayed on each copy; ``None``: none.
        scheduler_interval: ``"step"`` or ``"epoch"``, how the run steps ``scheduler``.
        scheduler_position: how many times the run has stepped its scheduler.
        train_step: ``(model, optimizer, batch, head) -> loss``, a copy's step (e.g. clipping).
        heads: the heads to blend; ``None``: the keys ``loss_fn`` returns on the first batch.
        fallback: the weights returned if the estimate is rejected; ``None``: uniform.

    Raises:
        ValueError: a bad value of a field, or a ``ReduceLROnPlateau`` scheduler.
        TypeError: a bad type of ``engine``/``scheduler``/``train_step``/``metric``.
    """

    epochs: int | None = None
    steps: int | None = None
    metric: Literal["loss"] | MetricFn = "loss"
    higher_is_better: bool = False
    fraction: float = 1.0
    eps: float = DEFAULT_EPS
    resolution: float | None = None
    seed: int = 0
    copies_at_once: int | None = None
    progress: bool = False
    engine: Engine = "auto"
    noise_aware: bool = False
    scheduler: SchedulerSpec | None = None
    scheduler_interval: Interval | None = None
    scheduler_position: int | None = None
    train_step: TrainStep | None = None
    heads: tuple[str, ...] | None = None
    fallback: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        for name, (valid, what) in _VALUE_CHECKS.items():
            if not valid(getattr(self, name)):
                raise ValueError(
                    f"Parameter `{name}` should be {what}. Found {getattr(self, name)!r}."
                )
        if self.engine not in ENGINES:
            error = ValueError if isinstance(self.engine, str) else TypeError
            found = repr(self.engine) if error is ValueError else type(self.engine).__name__
            raise error(f"Parameter `engine` should be one of {list(ENGINES)}. Found {found}.")
        check_scheduler(self.scheduler, self.scheduler_interval)
        if self.train_step is not None and not callable(self.train_step):
            raise TypeError(
                "Parameter `train_step` should be callable `(model, optimizer, batch, head) -> "
                f"loss`. Found {type(self.train_step).__name__}."
            )
        if not callable(self.metric) and (
            not isinstance(self.metric, str) or self.metric != "loss"
        ):
            raise (ValueError if isinstance(self.metric, str) else TypeError)(
                f"Parameter `metric` should be 'loss' or a callable `(model, batch) -> {{head: "
                f"value}}`. Found {self.metric!r}; for top-1 error use "
                "`blendopt.top1_error(predict)`."
            )
        if self.resolution is not None and self.noise_aware:
            raise ValueError(
                "Parameter `resolution` floors the plain rule's dO²; with `noise_aware=True` "
                "σ² = dO² + SE(dO)² is floored by the measured noise. Drop one of them."
            )
        if self.heads is not None:
            object.__setattr__(self, "heads", tuple(self.heads))

    @classmethod
    def build(cls, config: RetrainConfig | None, settings: Mapping[str, Any]) -> RetrainConfig:
        """``config`` (default: the defaults) with the keyword ``settings`` replaced.

        Raises:
            TypeError: ``config`` is no ``RetrainConfig``, or a setting is not a field of it.
        """
        if config is not None and not isinstance(config, RetrainConfig):
            raise TypeError(
                f"Parameter `config` should be a blendopt.retrain.RetrainConfig. Found "
                f"{type(config).__name__}."
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - fields)
        if unknown:
            raise TypeError(
                f"Unknown setting `{unknown[0]}`; the settings are the fields of RetrainConfig: "
                f"{sorted(fields)}."
            )
        return dataclasses.replace(config or cls(), **settings)


@dataclass(frozen=True)
class TrainPlan:
    """How long and how the copies train: ``epochs`` passes or ``steps`` batches (exactly one),
    at most ``per_epoch`` batches a pass, schedulers stepping per ``interval``, from ``seed``.

    Raises:
        ValueError: neither or both of ``epochs`` and ``steps``.
    """

    epochs: int | None
    steps: int | None
    per_epoch: int | None = None
    interval: Interval | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(
                f"Pass exactly one of `epochs` and `steps`. Found epochs={self.epochs!r}, "
                f"steps={self.steps!r}."
            )

    def total(self) -> int:
        """Planned batches, 0 when unknown (a loader without a length)."""
        if self.steps is not None:
            return self.steps
        return 0 if self.per_epoch is None else self.epochs * self.per_epoch  # type: ignore[operator]

    def sampler_epoch(self, epoch: int) -> int:
        """The ``set_epoch`` number of pass ``epoch``, drawn from the seed (reproducible)."""
        return derive_seed(self.seed, 4, epoch) % 2**31


@dataclass(frozen=True)
class CopyTraining:
    """What trains the copies, one object through both engines: ``loss_fn`` on loader
    ``train`` returning every head of ``heads``, for ``plan``, with optimizers like
    ``optimizer`` (over ``source``, default the reference model), the run's ``scheduler``
    replayed to ``scheduler_position``, an optional ``train_step``, the loaders' own
    ``generators`` and epoch-aware ``samplers``, a tqdm bar with ``progress``; with
    ``eager_checks`` a loss is checked at once where the host reads it for free (the CPU, one
    process), else device-side flags are read once per epoch."""

    loss_fn: LossFn
    train: Iterable[Any]
    heads: Sequence[str]
    plan: TrainPlan
    optimizer: OptimizerSpec | None = None
    source: nn.Module | None = None
    scheduler: SchedulerSpec | None = None
    scheduler_position: int | None = None
    train_step: TrainStep | None = None
    generators: Sequence[torch.Generator] = ()
    samplers: SamplerEpochs | None = None
    progress: bool = False
    eager_checks: bool = True
