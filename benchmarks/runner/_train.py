"""Train one method (any multi-head model, any batches) and run one cell of the main job.

:func:`train_method` carries out a :class:`Method` on a multi-head model through the blender's
public API (``backward``/``blend``, ``set_weights``, ``register_step_pre_hook``, ``history``,
``weights``) and logs one record per epoch in ``_plots``'s schema; it knows nothing of the
embedded data, so ``python -m benchmarks train`` reuses it. :func:`run_one` is the embedded
main job's cell: split, train, evaluate every predictor.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import blendopt
from benchmarks.data.embedded import MultiModalTensorDataset
from benchmarks.runner._baselines import (
    OGMGE,
    UncertaintyWeighting,
    early_stop_steps,
)
from benchmarks.runner._batches import Batch, TensorBatches
from benchmarks.runner._methods import (
    EstimatorContext,
    Method,
    make_optimizer,
    online_schedule,
)
from benchmarks.runner._predictors import Outputs, choose
from benchmarks.runner._setups import DatasetSetup

__all__ = [
    "BATCH_SIZE",
    "HOLDOUT",
    "PREDICTORS",
    "RunResult",
    "Trained",
    "evaluate",
    "loss_fn",
    "online_schedule",
    "predict",
    "run_one",
    "train_method",
]

#: Default share of the official training split held out as G-Blend's V. The paper held out
#: 8%; the embedded datasets are small (1000-2400 training samples), so 10% keeps V above 100.
HOLDOUT = 0.10
BATCH_SIZE = 64

#: The predictors of a multi-head method, in report order (see the report's legend).
PREDICTORS = ("fused", "ensemble", "ensemble_avg")


@dataclass
class RunResult:
    """The outcome of one run (one method, dataset, optimizer and seed).

    ``accuracy`` is the method's own predictor on the test split: its modality head (single),
    the averaged single-modality models (ensemble), else the fused head. For multi-head methods
    ``ensemble_accuracy`` / ``ensemble_avg_accuracy`` are the ensembles of the heads weighted by
    the last / time-averaged blend weights, ``uniform_accuracy`` with uniform weights, and
    ``prediction`` / ``selection`` record the choices on V (never on test) of the prediction
    weights (accuracy ``prediction_accuracy``) and of the predictor (``selected``,
    ``selected_accuracy``; :mod:`benchmarks.runner._predictors`). ``cross`` holds the ensemble
    read with other G-Blend runs' weights; ``outputs`` (logits, not saved) make that possible.
    """

    dataset: str
    method: str
    optimizer: str
    seed: int
    accuracy: float
    head_accuracy: dict[str, float]
    ensemble_accuracy: float | None
    weights: dict[str, float]
    selected: str | None = None
    selected_accuracy: float | None = None
    ensemble_avg_accuracy: float | None = None
    average_weights: dict[str, float] | None = None
    weight_history: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    diverged: str | None = None
    cpu_seconds: float = 0.0  # process CPU time of the run (the cost measure; see _report)
    uniform_accuracy: float | None = None
    prediction: dict[str, Any] | None = None
    prediction_accuracy: float | None = None
    selection: dict[str, Any] | None = None
    cross: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: Outputs | None = field(default=None, repr=False, compare=False)

    def predictor(self, name: str) -> float | None:
        """Test accuracy of predictor ``name`` (``own``, ``fused``, ``ensemble``,
        ``ensemble_avg``, ``selected``), ``None`` where the method has no such predictor."""
        return {
            "own": self.accuracy,
            "fused": self.head_accuracy.get("fused")
            if self.ensemble_accuracy is not None
            else None,
            "ensemble": self.ensemble_accuracy,
            "ensemble_avg": self.ensemble_avg_accuracy,
            "ensemble_uniform": self.uniform_accuracy,
            "prediction": self.prediction_accuracy,
            "selected": self.selected_accuracy,
        }[name]

    @property
    def best_on_v(self) -> float:
        """The method's result with its predictor chosen on V (its own one if it has one)."""
        return self.selected_accuracy if self.selected_accuracy is not None else self.accuracy

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "outputs"}


def loss_fn(model: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """Cross-entropy of every head."""
    inputs, target = batch
    return {head: F.cross_entropy(logits, target) for head, logits in model(inputs).items()}


def predict(model: nn.Module, batch: Batch) -> tuple[dict[str, Tensor], Tensor]:
    """Logits of every head and the target (for the top-1 error metric)."""
    inputs, target = batch
    return model(inputs), target


@dataclass
class Trained:
    """What :func:`train_method` returns.

    Attributes:
        models: the trained model (key ``""``), or one model per modality (``ensemble``).
        weights: the blend weights at the end (the ensemble-of-heads weights).
        average_weights: the blend weights averaged over the steps.
        epochs: one record per epoch (``_plots`` schema).
        history: the blender's history (weight changes).
        steps: optimizer steps taken.
        diverged: where training stopped on a non-finite loss (``None``: it did not).
    """

    models: dict[str, nn.Module]
    weights: dict[str, float]
    average_weights: dict[str, float]
    epochs: list[dict[str, Any]]
    history: list[dict[str, Any]]
    steps: int
    diverged: str | None = None


@torch.no_grad()
def _head_errors(model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
    was_training = model.training
    model.eval()
    wrong: dict[str, int] = {}
    n = 0
    for inputs, target in batches:
        for head, z in model(inputs).items():
            wrong[head] = wrong.get(head, 0) + int((z.argmax(1) != target).sum())
        n += len(target)
    model.train(was_training)
    return {h: w / n for h, w in wrong.items()}


def _fixed_weights(method: Method, heads: list[str], fused: str) -> dict[str, float] | None:
    if method.kind == "single":
        return {h: float(h == method.modality) for h in heads}
    if method.kind in ("naive", "dropout", "early_stop", "ogm_ge"):
        return {h: float(h == fused) for h in heads}
    if method.kind == "pretrain":  # phase 1: every modality head, not the fused one
        return {h: float(h != fused) for h in heads}
    if method.kind in ("auxiliary", "uncertainty"):
        if method.kind == "auxiliary" and method.head_weight == "mean":
            return blendopt.functional.uniform_weights(heads)
        return dict.fromkeys(heads, 1.0)
    return None  # gblend: estimated


def train_method(
    method: Method,
    build_model: Callable[[float], nn.Module],
    make_inner: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    train: Iterable[Batch],
    *,
    epochs: int,
    seed: int = 0,
    holdout: Iterable[Batch] | None = None,
    probe: Iterable[Batch] | None = None,
    holdout_size: int = 0,
    metric: str = "error",
    losses: Callable[[nn.Module, Batch], dict[str, Tensor]] = loss_fn,
) -> Trained:
    """Train ``method`` for ``epochs`` epochs on the batches ``train``.

    Args:
        method: the method (see :data:`benchmarks.runner.METHODS`).
        build_model: ``build_model(fusion_dropout) -> model`` with ``head_names``,
            ``fused_head`` and ``modalities`` (a ``MultiHeadModel``); called after seeding.
        make_inner: ``make_inner(params) -> torch.optim.Optimizer``.
        train: re-iterable training batches (shuffled from torch's global generator).
        epochs: epochs (the same for every method).
        seed: seeds the model, the batches and G-Blend's estimates.
        holdout, probe, holdout_size: V, T' and |V| (G-Blend; V also feeds the epoch log).
        metric: what G-Blend measures, ``"error"`` or ``"loss"``.
        losses: ``losses(model, batch) -> {head: loss}``.

    Returns:
        The trained model(s), weights and logs (:class:`Trained`).
    """
    if method.kind == "ensemble":
        return _train_ensemble(method, build_model, make_inner, train, epochs=epochs, seed=seed)
    torch.manual_seed(seed)
    model = build_model(0.5 if method.kind == "dropout" else 0.0)
    heads, fused = list(model.head_names), model.fused_head
    inner = make_inner(model.parameters())
    fixed = _fixed_weights(method, heads, fused)
    if fixed is not None:
        with warnings.catch_warnings():
            # auxiliary_1 (every head at 1, the paper's baseline) and uncertainty weighting
            # (which scales the losses itself) sum to k on purpose.
            warnings.simplefilter("ignore", blendopt.warnings.WeightSumWarning)
            blender = blendopt.GradientBlender(inner, heads, fixed)
    else:
        if holdout is None or probe is None:
            raise ValueError(f"Method {method.name!r} needs `holdout` and `probe` batches.")
        if method.estimator is None or method.schedule is None:
            raise ValueError(f"Method {method.name!r} needs `estimator` and `schedule`.")
        context = EstimatorContext(
            model, losses, train, holdout, probe, predict, metric, holdout_size, seed
        )
        blender = blendopt.GradientBlender(
            inner, heads, method.estimator(context), schedule=method.schedule(epochs)
        )

    step_losses: Callable[[Batch], dict[str, Tensor]] = lambda batch: losses(model, batch)  # noqa: E731
    ogm = uncertainty = None
    if method.kind == "ogm_ge":
        ogm = OGMGE(model, alpha=method.alpha)
        blender.register_step_pre_hook(ogm.hook)
        step_losses = ogm.losses
    if method.kind == "uncertainty":
        uncertainty = UncertaintyWeighting(heads)
        blender.add_param_group({"params": list(uncertainty.parameters())})
    per_epoch = (
        early_stop_steps(len(train), method.fraction) if method.kind == "early_stop" else None  # type: ignore[arg-type]
    )
    records: list[dict[str, Any]] = []
    steps = 0
    weighted_sum = dict.fromkeys(heads, 0.0)  # uncertainty: Σ_steps effective weights
    diverged = None
    with warnings.catch_warnings():
        # Zeroed heads are expected (a modality that only overfits); the history records them.
        warnings.simplefilter("ignore", blendopt.warnings.ZeroedHeadWarning)
        warnings.simplefilter("ignore", blendopt.warnings.FlooredOverfittingWarning)
        # Rejected estimates are outcomes too: `weight_history` records them (kind "rejected").
        warnings.simplefilter("ignore", blendopt.warnings.RejectedEstimateWarning)
        for epoch in range(epochs):
            start = time.perf_counter()
            if method.kind == "pretrain" and epoch == epochs // 2:
                blender.set_weights({h: float(h == fused) for h in heads})  # fine-tune fused
            if ogm is not None:
                ogm.epoch = epoch
            blender.start_epoch()
            model.train()
            total = torch.zeros(len(heads))
            done = 0
            for index, batch in enumerate(train):
                if per_epoch is not None and index >= per_epoch:
                    break
                blender.zero_grad()
                values = step_losses(batch)
                detached = torch.stack([values[h].detach() for h in heads])
                if not bool(torch.isfinite(detached).all()):
                    # A diverged run is a result (e.g. weight 1 on every head triples the
                    # step of an LR tuned for weights summing to 1): stop and report it.
                    diverged = f"non-finite loss in epoch {epoch + 1}, step {steps + done + 1}"
                    break
                if uncertainty is not None:
                    (
                        blender.blend(uncertainty.scale(values)) + uncertainty.regularizer()
                    ).backward()
                else:
                    blender.backward(values)
                blender.step()
                total += detached
                done += 1
            steps += done
            weights = uncertainty.weights() if uncertainty is not None else blender.weights
            if uncertainty is not None:
                for h in heads:
                    weighted_sum[h] += done * weights[h]
            records.append(
                {
                    "epoch": epoch + 1,
                    "step": steps,
                    "train_loss": dict(zip(heads, (total / max(done, 1)).tolist(), strict=True)),
                    "holdout": _head_errors(model, holdout) if holdout is not None else {},
                    "holdout_metric": "top1_error",
                    "weights": weights,
                    "seconds": time.perf_counter() - start,
                }
            )
            if diverged is not None:
                break
    if uncertainty is not None:
        final = uncertainty.weights()
        averaged = {h: s / max(steps, 1) for h, s in weighted_sum.items()}
    else:
        final = blender.weights
        averaged = blender.average_weights
    return Trained({"": model}, final, averaged, records, list(blender.history), steps, diverged)


def _train_ensemble(
    method: Method,
    build_model: Callable[[float], nn.Module],
    make_inner: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    train: Iterable[Batch],
    *,
    epochs: int,
    seed: int,
) -> Trained:
    """One single-modality model per modality, each exactly the ``single:<m>`` run."""
    modalities = list(build_model(0.0).modalities)
    models: dict[str, nn.Module] = {}
    steps = 0
    diverged = []
    for m in modalities:
        single = Method(f"single:{m}", "single", m)
        trained = train_method(single, build_model, make_inner, train, epochs=epochs, seed=seed)
        models[m] = trained.models[""]
        steps += trained.steps
        if trained.diverged:
            diverged.append(f"{m}: {trained.diverged}")
    weights = {m: 1.0 / len(modalities) for m in modalities}
    return Trained(models, weights, dict(weights), [], [], steps, "; ".join(diverged) or None)


@torch.no_grad()
def _logits(model: nn.Module, data: MultiModalTensorDataset) -> dict[str, Tensor]:
    model.eval()
    parts: dict[str, list[Tensor]] = {}
    for inputs, _ in TensorBatches(data, 512, shuffle=False):
        for head, z in model(inputs).items():
            parts.setdefault(head, []).append(z)
    return {h: torch.cat(z) for h, z in parts.items()}


def _accuracy(scores: Tensor, target: Tensor) -> float:
    return float((scores.argmax(1) == target).float().mean())


@torch.no_grad()
def evaluate(
    model: nn.Module, data: MultiModalTensorDataset, weights: Mapping[str, float]
) -> tuple[dict[str, float], float]:
    """Test top-1 of every head, and of the ensemble of heads weighted by ``weights``."""
    logits = _logits(model, data)
    heads = {h: _accuracy(z, data.targets) for h, z in logits.items()}
    return heads, _accuracy(
        blendopt.functional.ensemble_probabilities(logits, dict(weights)), data.targets
    )


def _predictors(
    trained: Trained, method: Method, data: MultiModalTensorDataset, fused: str
) -> dict[str, float]:
    """Accuracy on ``data`` of every head and predictor of the trained method."""
    if method.kind == "ensemble":
        per_model = {m: _logits(model, data)[m] for m, model in trained.models.items()}
        probs = blendopt.functional.ensemble_probabilities(per_model, trained.weights)
        out = {m: _accuracy(z, data.targets) for m, z in per_model.items()}
        out["own"] = _accuracy(probs, data.targets)
        return out
    logits = _logits(trained.models[""], data)
    out = {h: _accuracy(z, data.targets) for h, z in logits.items()}
    out["own"] = out[method.evaluated_head or fused]
    if method.is_multihead:
        for name, w in (("ensemble", trained.weights), ("ensemble_avg", trained.average_weights)):
            out[name] = _accuracy(
                blendopt.functional.ensemble_probabilities(logits, w), data.targets
            )
    return out


def run_one(
    setup: DatasetSetup,
    method: Method,
    *,
    optimizer: str = "sgd",
    seed: int = 0,
    epochs: int | None = None,
    data: tuple[MultiModalTensorDataset, MultiModalTensorDataset] | None = None,
    metric: str = "error",
) -> RunResult:
    """Train ``method`` on ``setup``'s dataset from seed ``seed`` and evaluate on its test split.

    Every method trains on the same data T (the training split minus the holdout V) for the
    same epochs; only G-Blend looks at V (and at the train probe T') during training; V also
    picks the predictor of multi-head methods. G-Blend measures ``metric``: ``"error"``
    (1 - top-1, which the paper found as effective as the loss, §2.4) or ``"loss"``.
    """
    if metric not in ("error", "loss"):
        raise ValueError(f"Parameter `metric` should be 'error' or 'loss'. Found {metric!r}.")
    start, cpu_start = time.perf_counter(), time.process_time()
    epochs = setup.epochs if epochs is None else epochs
    train_full, test = data if data is not None else setup.load_pair(seed)
    split = blendopt.holdout_split(
        len(train_full), holdout=setup.holdout, labels=train_full.targets, seed=seed
    )
    train, holdout, probe = (
        train_full.subset(split.train),
        train_full.subset(split.holdout),
        train_full.subset(split.probe),
    )
    trained = train_method(
        method,
        lambda dropout: setup.build_model(train, fusion_dropout=dropout),
        lambda params: make_optimizer(optimizer, params, setup.lr),
        TensorBatches(train, BATCH_SIZE, shuffle=True),
        epochs=epochs,
        seed=seed,
        holdout=TensorBatches(holdout, 512, shuffle=False),
        probe=TensorBatches(probe, 512, shuffle=False),
        holdout_size=len(holdout),
        metric=metric,
    )
    fused = "fused"
    if "" in trained.models:
        fused = trained.models[""].fused_head
    on_test = _predictors(trained, method, test, fused)
    outputs = None
    picked: dict[str, Any] = {}
    if method.is_multihead:
        model = trained.models[""]
        outputs = {
            "holdout": (_logits(model, holdout), holdout.targets),
            "test": (_logits(model, test), test.targets),
        }
        training = {"ensemble": trained.weights, "ensemble_avg": trained.average_weights}
        picked = choose(outputs, training, fused)
    head_accuracy = {k: v for k, v in on_test.items() if k not in ("own", *PREDICTORS[1:])}
    return RunResult(
        dataset=setup.name,
        method=method.name,
        optimizer=optimizer,
        seed=seed,
        accuracy=on_test["own"],
        head_accuracy=head_accuracy,
        ensemble_accuracy=on_test.get("ensemble"),
        weights=trained.weights,
        selected=picked["predictor"]["chosen"] if picked else None,
        selected_accuracy=picked.get("predictor_accuracy"),
        ensemble_avg_accuracy=on_test.get("ensemble_avg"),
        average_weights=trained.average_weights if method.is_multihead else None,
        weight_history=[
            {"epoch": r["epoch"], "step": r["step"], "kind": r["kind"], "weights": r["weights"]}
            for r in trained.history
        ],
        epochs=trained.epochs,
        steps=trained.steps,
        seconds=time.perf_counter() - start,
        diverged=trained.diverged,
        cpu_seconds=time.process_time() - cpu_start,
        uniform_accuracy=picked.get("uniform"),
        prediction=picked.get("weights"),
        prediction_accuracy=picked.get("weights_accuracy"),
        selection=picked.get("predictor"),
        outputs=outputs,
    )
