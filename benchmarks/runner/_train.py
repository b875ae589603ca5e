"""One run of the main job: train one method on one dataset with one seed, then evaluate."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import blendopt
from benchmarks.data.embedded import MultiModalTensorDataset
from benchmarks.runner._batches import Batch, TensorBatches
from benchmarks.runner._methods import Method, make_optimizer
from benchmarks.runner._setups import DatasetSetup

#: Share of the official training split held out as G-Blend's V. The paper held out 8%; the
#: embedded datasets are small (1000-2400 training samples), so 10% keeps V above 100 samples.
HOLDOUT = 0.10
BATCH_SIZE = 64


@dataclass
class RunResult:
    """The outcome of one run."""

    dataset: str
    method: str
    optimizer: str
    seed: int
    accuracy: float  # test top-1 of the method's head (its modality head, or the fused head)
    head_accuracy: dict[str, float]
    ensemble_accuracy: float | None  # weight-averaged ensemble of the heads (blends only)
    weights: dict[str, float]
    # Blends only: the predictor (fused head or ensemble) with the better accuracy on the
    # holdout V, and its test accuracy. A choice made without looking at the test split.
    selected: str | None = None
    selected_accuracy: float | None = None
    weight_history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def loss_fn(model: nn.Module, batch: Batch) -> dict[str, Tensor]:
    """Cross-entropy of every head."""
    inputs, target = batch
    return {head: F.cross_entropy(logits, target) for head, logits in model(inputs).items()}


def predict(model: nn.Module, batch: Batch) -> tuple[dict[str, Tensor], Tensor]:
    """Logits of every head and the target (for the top-1 error metric)."""
    inputs, target = batch
    return model(inputs), target


def _weights_for(method: Method, heads: list[str], fused: str) -> dict[str, float] | None:
    if method.kind == "single":
        return {h: float(h == method.modality) for h in heads}
    if method.kind in ("naive", "dropout"):
        return {h: float(h == fused) for h in heads}
    if method.kind == "auxiliary":
        return blendopt.uniform_weights(heads)
    return None  # G-Blend: estimated


def online_schedule(epochs: int) -> blendopt.Online:
    """The paper's Kinetics schedule (warm-up 10, then every 5, of 45), scaled to ``epochs``."""
    return blendopt.Online(every=max(1, round(epochs / 9)), warmup=max(1, round(2 * epochs / 9)))


@torch.no_grad()
def evaluate(
    model: nn.Module, data: MultiModalTensorDataset, weights: dict[str, float]
) -> tuple[dict[str, float], float]:
    """Test top-1 of every head, and of the weight-averaged ensemble."""
    model.eval()
    correct: dict[str, int] = {}
    ensemble_correct = 0
    for inputs, target in TensorBatches(data, 512, shuffle=False):
        logits = model(inputs)
        for head, z in logits.items():
            correct[head] = correct.get(head, 0) + int((z.argmax(1) == target).sum())
        probs = blendopt.ensemble_probabilities(logits, weights)
        ensemble_correct += int((probs.argmax(1) == target).sum())
    n = len(data)
    return {h: c / n for h, c in correct.items()}, ensemble_correct / n


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

    Every method trains on the same data T (the training split minus the holdout V); only
    G-Blend looks at V (and at the train probe T'). G-Blend measures ``metric``: ``"error"``
    (1 - top-1, which the paper found as effective as the loss, §2.4) or ``"loss"``.
    """
    if metric not in ("error", "loss"):
        raise ValueError(f"Parameter `metric` should be 'error' or 'loss'. Found {metric!r}.")
    start = time.perf_counter()
    epochs = setup.epochs if epochs is None else epochs
    train_full, test = (
        data if data is not None else (setup.load("train", seed), setup.load("test", seed))
    )
    split = blendopt.holdout_split(
        len(train_full), holdout=HOLDOUT, labels=train_full.targets, seed=seed
    )
    train, holdout, probe = (
        train_full.subset(split.train),
        train_full.subset(split.holdout),
        train_full.subset(split.probe),
    )

    torch.manual_seed(seed)
    model = setup.build_model(train, fusion_dropout=0.5 if method.kind == "dropout" else 0.0)
    heads, fused = model.head_names, model.fused_head
    inner = make_optimizer(optimizer, model.parameters(), setup.lr)
    train_batches = TensorBatches(train, BATCH_SIZE, shuffle=True)

    fixed = _weights_for(method, heads, fused)
    if fixed is not None:
        blender = blendopt.GradientBlender(inner, heads, fixed)
    else:
        estimator = blendopt.RetrainEstimator(
            model,
            loss_fn,
            train_batches,
            TensorBatches(holdout, 512, shuffle=False),
            probe=TensorBatches(probe, 512, shuffle=False),
            metric=blendopt.top1_error(predict) if metric == "error" else "loss",
            # An error measured on n samples moves in steps of 1/n, so a dO below 1/n is
            # noise, not "no overfitting": floor dO² there instead of at the default 1e-8.
            eps=(1.0 / len(holdout)) ** 2 if metric == "error" else blendopt.DEFAULT_EPS,
            seed=seed,
        )
        schedule = (
            blendopt.Offline(horizon=epochs)
            if method.kind == "offline"
            else online_schedule(epochs)
        )
        blender = blendopt.GradientBlender(inner, heads, estimator, schedule=schedule)

    with warnings.catch_warnings():
        # Zeroed heads are expected here (a modality that only overfits); the history records them.
        warnings.simplefilter("ignore", blendopt.ZeroedHeadWarning)
        for _ in range(epochs):
            blender.start_epoch()
            model.train()
            for batch in train_batches:
                blender.zero_grad()
                blender.backward(loss_fn(model, batch))
                blender.step()

    head_accuracy, ensemble = evaluate(model, test, blender.weights)
    evaluated = method.evaluated_head or fused
    selected = selected_accuracy = None
    if method.is_blend:
        holdout_heads, holdout_ensemble = evaluate(model, holdout, blender.weights)
        selected = "ensemble" if holdout_ensemble > holdout_heads[fused] else "fused"
        selected_accuracy = ensemble if selected == "ensemble" else head_accuracy[fused]
    return RunResult(
        dataset=setup.name,
        method=method.name,
        optimizer=optimizer,
        seed=seed,
        accuracy=head_accuracy[evaluated],
        head_accuracy=head_accuracy,
        ensemble_accuracy=ensemble if method.is_blend else None,
        weights=blender.weights,
        selected=selected,
        selected_accuracy=selected_accuracy,
        weight_history=[
            {"epoch": r["epoch"], "kind": r["kind"], "weights": r["weights"]}
            for r in blender.history
        ],
        seconds=time.perf_counter() - start,
    )
