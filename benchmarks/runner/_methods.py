"""The method registry: every training method of the comparison, by name (paper §3.3, Table 5).

A :class:`Method` says how to configure the model and the blender; ``_train.train_method``
carries it out on any multi-head model, so the embedded main job and ``python -m benchmarks
train`` share it. Adding a G-Blend estimator to the comparison is one entry::

    register_method(
        Method(
            "gblend_rolling_loss",
            "gblend",
            estimator=lambda ctx: blendopt.RollingEstimator(
                ctx.model, ctx.loss_fn, ctx.holdout, probe=ctx.probe, mode="loss"
            ),
            schedule=rolling_schedule,
            summary="G-Blend, rolling estimator, loss mode",
        )
    )

where the estimator factory takes an :class:`EstimatorContext`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

import blendopt
from benchmarks.runner._batches import TensorBatches

Kind = Literal[
    "single",
    "naive",
    "dropout",
    "pretrain",
    "early_stop",
    "auxiliary",
    "uncertainty",
    "ensemble",
    "ogm_ge",
    "gblend",
]
OPTIMIZERS = ("sgd", "adam", "adagrad")


@dataclass(frozen=True)
class EstimatorContext:
    """What a G-Blend estimator factory gets to build its estimator.

    Attributes:
        model: the multi-head model being trained.
        loss_fn: ``loss_fn(model, batch) -> {head: loss}``.
        train: the training batches T (re-iterable).
        holdout: the holdout batches V.
        probe: the train probe T' (same size as V).
        predict: ``predict(model, batch) -> ({head: logits}, target)`` for the top-1 metric.
        metric: ``"error"`` (1 - top-1) or ``"loss"``.
        holdout_size: |V| in samples.
        seed: the run's seed.
    """

    model: nn.Module
    loss_fn: Callable[[nn.Module, Any], dict[str, torch.Tensor]]
    train: Iterable[Any]
    holdout: Iterable[Any]
    probe: Iterable[Any]
    predict: Callable[[nn.Module, Any], tuple[dict[str, torch.Tensor], torch.Tensor]]
    metric: str
    holdout_size: int
    seed: int


EstimatorFactory = Callable[[EstimatorContext], blendopt.Estimator]
ScheduleFactory = Callable[[int], "blendopt.Schedule | None"]  # None: the estimator's default


def retrain_estimator(ctx: EstimatorContext) -> blendopt.RetrainEstimator:
    """Algorithm 1 (``blendopt.RetrainEstimator``) measuring ``ctx.metric`` on V.

    An error measured on n samples moves in steps of 1/n, so a dO below 1/n is noise, not "no
    overfitting": with the error metric dO² is floored at (1/|V|)² (``resolution``, an absolute
    floor) besides the default relative ``eps``.
    """
    error = ctx.metric == "error"
    return blendopt.RetrainEstimator(
        ctx.model,
        ctx.loss_fn,
        ctx.train,
        ctx.holdout,
        probe=ctx.probe,
        metric=blendopt.top1_error(ctx.predict) if error else "loss",
        resolution=1.0 / ctx.holdout_size if error else None,
        seed=ctx.seed,
    )


def rolling_estimator(ctx: EstimatorContext, **options: Any) -> blendopt.RollingEstimator:
    """``blendopt.RollingEstimator`` with its defaults (gradient-level Proposition 1 from the
    run's own per-head gradients, no model copies; see docs/estimators.md) unless ``options``
    change them, V and T' in batches of the training batch's size, as a user's loaders give
    them."""
    holdout, probe = (_as_train_batches(b, ctx.train) for b in (ctx.holdout, ctx.probe))
    return blendopt.RollingEstimator(
        ctx.model, ctx.loss_fn, holdout, probe=probe, seed=ctx.seed, **options
    )


def _as_train_batches(batches: Iterable[Any], train: Iterable[Any]) -> Iterable[Any]:
    """In-memory ``batches`` re-cut (shuffled) to ``train``'s batch size; others as they are."""
    if isinstance(batches, TensorBatches) and isinstance(train, TensorBatches):
        return TensorBatches(batches.dataset, train.batch_size, shuffle=True)
    return batches


def rolling_schedule(epochs: int) -> None:
    """``None``: the rolling estimator's own default schedule (first estimate once its window
    is full, then every 50 steps; any ``epochs``)."""
    del epochs


def offline_schedule(epochs: int) -> blendopt.Offline:
    """Algorithm 2: one estimate at the start, looking ahead the whole run."""
    return blendopt.Offline(horizon=epochs)


def online_schedule(epochs: int) -> blendopt.Online:
    """The paper's Kinetics schedule (warm-up 10, then every 5, of 45), scaled to ``epochs``."""
    return blendopt.Online(every=max(1, round(epochs / 9)), warmup=max(1, round(2 * epochs / 9)))


@dataclass(frozen=True)
class Method:
    """One way of training the multi-head model (a row of the comparison).

    Attributes:
        name: the row name (``"single:audio"``, ``"naive"``, ``"gblend_offline"``...).
        kind: what ``train_method`` does (see :data:`METHODS` for one entry per kind).
        modality: the modality of a ``single`` method.
        fraction: ``early_stop``: the share of each epoch's iterations that is run.
        head_weight: ``auxiliary``: ``"one"`` (every head at 1, the paper's auxiliary-loss
            baseline) or ``"mean"`` (every head at 1/k).
        alpha: ``ogm_ge``: the modulation strength α.
        estimator: ``gblend``: builds the estimator from an :class:`EstimatorContext`.
        schedule: ``gblend``: ``schedule(epochs)``, when to estimate.
        summary: one line for the report's legend.
    """

    name: str
    kind: Kind
    modality: str | None = None
    fraction: float = 1.0
    head_weight: Literal["one", "mean"] = "mean"
    alpha: float = 0.1
    estimator: EstimatorFactory | None = None
    schedule: ScheduleFactory | None = None
    summary: str = ""

    @property
    def evaluated_head(self) -> str | None:
        """The head whose test accuracy is the method's own result (``None``: the fused head)."""
        return self.modality if self.kind == "single" else None

    @property
    def is_multihead(self) -> bool:
        """Whether several heads are trained at the end, so the ensemble of heads is meaningful."""
        return self.kind in ("auxiliary", "uncertainty", "gblend")

    @property
    def is_blend(self) -> bool:
        """Alias of :attr:`is_multihead` (the name of the first landing)."""
        return self.is_multihead

    def __repr__(self) -> str:
        return f"Method(name={self.name!r}, kind={self.kind!r})"


#: The registered methods (besides the per-modality ``single:<m>`` ones), in report order.
METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` to :data:`METHODS` (one entry adds a row to every comparison).

    Raises:
        ValueError: the name is taken, or starts with ``single``.
        TypeError: ``method`` is not a :class:`Method`.
    """
    if not isinstance(method, Method):
        raise TypeError(f"Parameter `method` should be a Method. Found {type(method).__name__}.")
    if method.name in METHODS or method.name.startswith("single"):
        raise ValueError(
            f"Method name {method.name!r} is taken (or reserved for single modalities); "
            "pick another name."
        )
    if method.kind == "gblend" and (method.estimator is None or method.schedule is None):
        raise ValueError(
            f"Method {method.name!r} of kind 'gblend' needs `estimator` and `schedule`."
        )
    METHODS[method.name] = method
    return method


for _method in (
    Method("naive", "naive", summary="naive late fusion: the fused head's loss only"),
    Method("dropout", "dropout", summary="naive with dropout 0.5 at the concatenation (Table 5)"),
    Method(
        "pretrain",
        "pretrain",
        summary="uni-modal pre-training (first half of the epochs), then fine-tuning the "
        "fused model on the fused loss (Table 5)",
    ),
    *(
        Method(
            f"early_stop_{p}",
            "early_stop",
            fraction=p / 100,
            summary=f"naive, {p}% of each epoch's iterations (appendix G.2)",
        )
        for p in (25, 50, 75)
    ),
    Method(
        "auxiliary_1",
        "auxiliary",
        head_weight="one",
        summary="auxiliary losses, every head at weight 1 (Table 5's baseline)",
    ),
    Method(
        "auxiliary", "auxiliary", head_weight="mean", summary="auxiliary losses, every head at 1/k"
    ),
    Method(
        "uncertainty",
        "uncertainty",
        summary="learned loss weights by homoscedastic uncertainty (Kendall et al. CVPR 2018)",
    ),
    Method(
        "ensemble",
        "ensemble",
        summary="ensemble of separately trained single-modality models (probabilities averaged)",
    ),
    Method(
        "ogm_ge",
        "ogm_ge",
        alpha=0.1,
        summary="OGM-GE (Peng et al. CVPR 2022), α = 0.1, gradient modulation + noise",
    ),
    Method(
        "gblend_offline",
        "gblend",
        estimator=retrain_estimator,
        schedule=offline_schedule,
        summary="G-Blend offline (Algorithm 2, Algorithm 1 estimate)",
    ),
    Method(
        "gblend_online",
        "gblend",
        estimator=retrain_estimator,
        schedule=online_schedule,
        summary="G-Blend online (Algorithm 3, Algorithm 1 estimates)",
    ),
    Method(
        "gblend_rolling",
        "gblend",
        estimator=rolling_estimator,
        schedule=rolling_schedule,
        summary="G-Blend, blendopt.RollingEstimator defaults (per-head gradients, no copies)",
    ),
):
    register_method(_method)


def single_method(modality: str) -> Method:
    """The ``single:<modality>`` method: that modality's head alone."""
    return Method(
        f"single:{modality}",
        "single",
        modality,
        summary=f"the {modality} modality alone (its own head)",
    )


def method_named(name: str) -> Method:
    """The registered method ``name``, or ``single:<modality>``."""
    if name.startswith("single:"):
        return single_method(name.split(":", 1)[1])
    return METHODS[name]


def all_methods(modalities: Sequence[str]) -> list[Method]:
    """Every single modality, then every registered method."""
    return [*(single_method(m) for m in modalities), *METHODS.values()]


def method_choices() -> list[str]:
    """The names accepted by ``--methods``: ``single``, ``single:<modality>`` and the registry."""
    return ["single", "single:<modality>", *METHODS]


def select_methods(modalities: Sequence[str], names: Iterable[str] | None) -> list[Method]:
    """The methods named in ``names`` (``"single"`` selects every single modality).

    Raises:
        ValueError: an unknown name.
    """
    methods = all_methods(modalities)
    if names is None:
        return methods
    names = list(names)
    known = {m.name for m in methods} | {"single"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"Unknown method {unknown[0]!r}; choose from {sorted(known)}.")
    return [m for m in methods if m.name in names or (m.kind == "single" and "single" in names)]


def make_optimizer(
    name: str, params: Iterable[nn.Parameter], sgd_lr: float
) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 at ``sgd_lr``, Adam at 1e-3, AdaGrad at 0.05 (paper Table 3)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=sgd_lr, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=0.05)
    raise ValueError(f"Unknown optimizer {name!r}; choose from {list(OPTIMIZERS)}.")
