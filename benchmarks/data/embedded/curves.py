"""Train/holdout accuracy curves per modality on the embedded datasets: who overfits fastest?

Usage (from the repository root)::

    python -m benchmarks.data.embedded.curves                       # every dataset
    python -m benchmarks.data.embedded.curves --dataset synthetic_av --seeds 3 --png reports/

For each dataset and seed: the official train split is split (seeded, stratified) into 80%
training data and a 20% holdout; a small MLP is trained per single modality, and a naive
late-fusion MLP (one MLP encoder per modality, concatenated, one linear fused head, trained on
the fused head's loss only). Every epoch records accuracy on the training data (eval mode), the
holdout and the official test split. The table gives per model: the best holdout accuracy and
its epoch, the test accuracy at that epoch (model selection by holdout), the final train
accuracy, the final train − holdout gap, and the first epoch at which the gap reaches 0.10
(earlier = overfits faster). ``ensemble`` averages the log-probabilities of the single-modality
models at their best-holdout epochs on the test split — a hint of what fusion could reach.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._dataset import MultiModalTensorDataset
from ._regimes import EMBEDDED_DATASETS

GAP_THRESHOLD = 0.10
HOLDOUT_FRACTION = 0.2


@dataclass
class Curve:
    """Per-epoch accuracies of one model (index 0 = after the first epoch)."""

    model: str
    train: list[float] = field(default_factory=list)
    holdout: list[float] = field(default_factory=list)
    test: list[float] = field(default_factory=list)

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the best holdout accuracy (the first one on ties)."""
        return max(range(len(self.holdout)), key=lambda i: (self.holdout[i], -i)) + 1

    @property
    def gap_epoch(self) -> int | None:
        """First 1-based epoch with train − holdout ≥ ``GAP_THRESHOLD``, or None."""
        for index, (train, holdout) in enumerate(zip(self.train, self.holdout, strict=True)):
            if train - holdout >= GAP_THRESHOLD:
                return index + 1
        return None

    def summary(self) -> dict[str, float | int | None]:
        best = self.best_epoch
        return {
            "best_holdout": self.holdout[best - 1],
            "best_epoch": best,
            "test_at_best": self.test[best - 1],
            "final_train": self.train[-1],
            "final_gap": self.train[-1] - self.holdout[-1],
            "gap_epoch": self.gap_epoch,
        }


class LateFusionMLP(nn.Module):
    """One MLP encoder per modality (inputs flattened), concatenated, one linear head."""

    def __init__(
        self, input_shapes: dict[str, tuple[int, ...]], num_classes: int, hidden: int = 64
    ) -> None:
        super().__init__()
        self.modalities = tuple(input_shapes)
        self.encoders = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Flatten(),
                    nn.Linear(math.prod(shape), hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, hidden),
                    nn.ReLU(),
                )
                for name, shape in input_shapes.items()
            }
        )
        self.head = nn.Linear(hidden * len(self.modalities), num_classes)

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        features = [self.encoders[name](inputs[name]) for name in self.modalities]
        return self.head(torch.cat(features, dim=1))


def _accuracy(model: nn.Module, data: MultiModalTensorDataset) -> tuple[float, Tensor]:
    model.eval()
    with torch.no_grad():
        logits = model({name: data.tensors[name] for name in model.modalities})
    return (logits.argmax(1) == data.targets).float().mean().item(), logits


def train_curve(
    modalities: Sequence[str],
    train: MultiModalTensorDataset,
    holdout: MultiModalTensorDataset,
    test: MultiModalTensorDataset,
    *,
    epochs: int,
    seed: int,
    lr: float = 1e-3,
    batch_size: int = 100,
) -> tuple[Curve, Tensor]:
    """Train one :class:`LateFusionMLP` on ``modalities`` (fused head's loss only).

    Returns the curve and the test log-probabilities at the best-holdout epoch.
    """
    torch.manual_seed(seed)
    shapes = {name: train.input_shapes[name] for name in modalities}
    model = LateFusionMLP(shapes, train.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    curve = Curve("+".join(modalities) if len(modalities) > 1 else modalities[0])
    best_holdout, best_log_probs = -1.0, torch.empty(0)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(train), batch_size):
            rows = order[start : start + batch_size]
            logits = model({name: train.tensors[name][rows] for name in modalities})
            loss = F.cross_entropy(logits, train.targets[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        curve.train.append(_accuracy(model, train)[0])
        curve.holdout.append(_accuracy(model, holdout)[0])
        test_accuracy, test_logits = _accuracy(model, test)
        curve.test.append(test_accuracy)
        if curve.holdout[-1] > best_holdout:
            best_holdout, best_log_probs = curve.holdout[-1], test_logits.log_softmax(1)
    return curve, best_log_probs


@dataclass
class Report:
    """All curves of one dataset and seed."""

    dataset: str
    seed: int
    epochs: int
    sizes: dict[str, int]
    curves: list[Curve]
    ensemble_test: float
    seconds: float

    def table(self) -> str:
        header = (
            f"{self.dataset} seed {self.seed}: train {self.sizes['train']} / holdout "
            f"{self.sizes['holdout']} / test {self.sizes['test']}, {self.epochs} epochs, "
            f"{self.seconds:.1f} s\n"
            f"{'model':24s} {'best_hold':>9s} {'@ep':>4s} {'test@best':>9s} "
            f"{'final_train':>11s} {'final_gap':>9s} {'gap>=0.1@':>9s}"
        )
        lines = [header]
        for curve in self.curves:
            s = curve.summary()
            gap_epoch = "-" if s["gap_epoch"] is None else str(s["gap_epoch"])
            name = curve.model if "+" not in curve.model else "fused (naive)"
            lines.append(
                f"{name:24s} {s['best_holdout']:9.3f} {s['best_epoch']:4d} "
                f"{s['test_at_best']:9.3f} {s['final_train']:11.3f} {s['final_gap']:9.3f} "
                f"{gap_epoch:>9s}"
            )
        lines.append(f"{'ensemble of singles':24s} {'':9s} {'':4s} {self.ensemble_test:9.3f}")
        single = [c for c in self.curves if "+" not in c.model]
        fused = next(c for c in self.curves if "+" in c.model)
        best = max(single, key=lambda c: c.summary()["test_at_best"])
        fastest = min(single, key=lambda c: (c.gap_epoch or 10**9, -c.summary()["final_gap"]))
        delta = fused.summary()["test_at_best"] - best.summary()["test_at_best"]
        lines.append(
            f"overfits fastest: {fastest.model}; best single: {best.model}; "
            f"naive fusion − best single (test@best): {delta:+.3f}"
        )
        return "\n".join(lines)


Pair = tuple[MultiModalTensorDataset, MultiModalTensorDataset]


def _datasets() -> dict[str, tuple[Callable[[int], Pair], int]]:
    """Name → (loader of the official (train, test) splits given a seed, default epochs).

    The names are :data:`EMBEDDED_DATASETS`'s, the same as ``python -m benchmarks --datasets``.
    """
    epochs = {"synthetic_av": 60, "mfeat": 40, "digits": 30, "digits_small": 30, "mfeat_small": 40}
    return {name: (load, epochs[name]) for name, load in EMBEDDED_DATASETS.items()}


def measure(dataset: str, *, seed: int = 0, epochs: int | None = None) -> Report:
    """Train every single-modality model and the naive fusion on one dataset and seed."""
    loaders = _datasets()
    if dataset not in loaders:
        raise ValueError(
            f"Parameter `dataset` should be one of {list(loaders)}; found {dataset!r}."
        )
    load, default_epochs = loaders[dataset]
    epochs = default_epochs if epochs is None else epochs
    start = time.perf_counter()
    official_train, test = load(seed)
    train, holdout = official_train.split_holdout(HOLDOUT_FRACTION, seed=seed)
    curves, log_probs = [], []
    groups = [(name,) for name in train.modalities] + [train.modalities]
    for group in groups:
        curve, best = train_curve(group, train, holdout, test, epochs=epochs, seed=seed)
        curves.append(curve)
        if len(group) == 1:
            log_probs.append(best)
    ensemble = (torch.stack(log_probs).sum(0).argmax(1) == test.targets).float().mean().item()
    return Report(
        dataset,
        seed,
        epochs,
        {"train": len(train), "holdout": len(holdout), "test": len(test)},
        curves,
        ensemble,
        time.perf_counter() - start,
    )


def save_png(report: Report, folder: Path) -> Path:
    """Plot train (dashed) and holdout (solid) accuracy per model; needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
    for index, curve in enumerate(report.curves):
        color = f"C{index}"
        epochs = range(1, len(curve.train) + 1)
        label = "fused (naive)" if "+" in curve.model else curve.model
        axis.plot(epochs, curve.holdout, color=color, label=f"{label} holdout")
        axis.plot(epochs, curve.train, color=color, linestyle="--", linewidth=0.8)
    axis.set_xlabel("epoch")
    axis.set_ylabel("accuracy (dashed: train)")
    axis.set_title(f"{report.dataset}, seed {report.seed}")
    axis.legend(fontsize=7, loc="lower right")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"curves_{report.dataset}_seed{report.seed}.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", choices=[*_datasets(), "all"], default="all", help="default: all"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        help="default: 60 synthetic_av, 40 mfeat, 30 digits and digits_small, 40 mfeat_small",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="seeds 0..N-1 (default: 3 for synthetic_av and digits_small, 1 otherwise)",
    )
    parser.add_argument("--png", type=Path, help="save one PNG per dataset and seed here")
    parser.add_argument("--json", type=Path, help="save every curve as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    names = list(_datasets()) if args.dataset == "all" else [args.dataset]
    reports = []
    for name in names:
        seeds = args.seeds or (3 if name in ("synthetic_av", "digits_small") else 1)
        for seed in range(seeds):
            report = measure(name, seed=seed, epochs=args.epochs)
            reports.append(report)
            print(report.table(), end="\n\n", flush=True)
            if args.png is not None:
                save_png(report, args.png)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in reports], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
