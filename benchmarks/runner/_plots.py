"""Plots shared by the embedded main job and ``python -m benchmarks train``.

Both runners log one record per epoch (a JSON line) in this shape::

    {"epoch": 3, "step": 120,                       # epochs and optimizer steps done
     "train_loss": {"visual": 1.2, ...},            # mean training loss per head this epoch
     "holdout": {"visual": 0.41, ...},              # per-head metric on the holdout V
     "holdout_metric": "top1_error",                # what "holdout" holds ("loss", "top1_error")
     "weights": {"visual": 0.6, ...},               # blend weights in use at the epoch's end
     "seconds": 1.7, ...}                           # any extra keys are allowed

and keep the blender's ``history`` (one record per weight change, with ``epoch``, ``step``,
``kind`` and ``weights``). matplotlib is imported lazily (it is an optional ``bench`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _whole_epochs(ax: Any) -> None:
    """Ticks at whole epochs only (1, 2, 3, not 1.2, 1.4 ...)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_weights(
    epochs: Sequence[Mapping[str, Any]], path: Path, *, title: str = "G-Blend weights"
) -> Path:
    """Blend weight of every head over the epochs, as in the paper's Fig. 5a."""
    plt = _pyplot()
    heads = list(epochs[0]["weights"]) if epochs else []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [r["epoch"] for r in epochs]
    for head in heads:
        ax.step(x, [r["weights"][head] for r in epochs], where="post", label=head)
    ax.set(xlabel="epoch", ylabel="weight", title=title, ylim=(-0.02, 1.02))
    _whole_epochs(ax)
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, plt, path)


def plot_curves(
    epochs: Sequence[Mapping[str, Any]], path: Path, *, title: str = "per-head curves"
) -> Path:
    """Per-head training loss and holdout metric over the epochs, as in the paper's Fig. 4."""
    plt = _pyplot()
    heads = list(epochs[0]["train_loss"]) if epochs else []
    metric = epochs[0].get("holdout_metric", "holdout") if epochs else "holdout"
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    x = [r["epoch"] for r in epochs]
    for head in heads:
        left.plot(x, [r["train_loss"].get(head, float("nan")) for r in epochs], label=head)
        right.plot(x, [r["holdout"].get(head, float("nan")) for r in epochs], label=head)
    left.set(xlabel="epoch", ylabel="train loss", title=f"{title}: train")
    right.set(xlabel="epoch", ylabel=f"holdout {metric}", title=f"{title}: holdout V")
    for ax in (left, right):
        _whole_epochs(ax)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_cost(
    points: Sequence[Mapping[str, Any]], path: Path, *, title: str = "accuracy vs cost"
) -> Path:
    """Test accuracy against cost, one point per method (with its seed std as an error bar).

    Args:
        points: ``{"method": str, "cost": float (ratio to naive), "accuracy": float,
            "std": float}`` per method.
        path: the PNG to write.
        title: the chart's title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, p in enumerate(points):
        marker = "*" if str(p["method"]).startswith("gblend") else "o"
        ax.errorbar(
            p["cost"],
            p["accuracy"],
            yerr=p.get("std", 0.0),
            fmt=marker,
            color=f"C{index % 10}",
            markersize=9 if marker == "*" else 5,
            capsize=2,
        )
        ax.annotate(
            str(p["method"]),
            (p["cost"], p["accuracy"]),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.xaxis.set_minor_formatter(plt.FuncFormatter(lambda x, _: f"{x:g}×"))
    ax.set(xlabel="cost (CPU time per run / naive fusion's, log scale)", ylabel="test top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, plt, path)
