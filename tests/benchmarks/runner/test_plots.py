from pathlib import Path

import pytest

from benchmarks.runner._plots import plot_curves, plot_weights

pytest.importorskip("matplotlib")

RECORDS = [
    {
        "epoch": e,
        "step": 10 * e,
        "train_loss": {"a": 1.0 / (e + 1), "fused": 0.5},
        "holdout": {"a": 0.4, "fused": 0.3 + 0.01 * e},
        "holdout_metric": "top1_error",
        "weights": {"a": 0.5 + 0.1 * e, "fused": 0.5 - 0.1 * e},
    }
    for e in range(4)
]


@pytest.mark.parametrize("plot", [plot_weights, plot_curves])
def test_plots_write_a_png(tmp_path: Path, plot):
    out = plot(RECORDS, tmp_path / "sub" / "plot.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 2000


def test_accuracy_cost_chart_writes_a_png(tmp_path: Path):
    from benchmarks.runner._plots import plot_accuracy_cost

    points = [
        {"method": "naive", "cost": 1.0, "accuracy": 30.0, "std": 2.0},
        {"method": "gblend_offline", "cost": 3.1, "accuracy": 43.0, "std": 3.0},
    ]
    out = plot_accuracy_cost(points, tmp_path / "cost.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 2000


@pytest.mark.parametrize("plot", [plot_weights, plot_curves])
def test_epoch_axes_tick_whole_epochs_only(tmp_path: Path, plot, monkeypatch):
    """Two or three epochs must not get ticks at 1.2, 1.4, ... (train and main-job plots)."""
    from benchmarks.runner import _plots

    figures = []
    save = _plots._save
    monkeypatch.setattr(
        _plots, "_save", lambda fig, plt, path: figures.append(fig) or save(fig, plt, path)
    )
    plot(RECORDS[1:3], tmp_path / "plot.png", title="t")  # epochs 1 and 2
    for ax in figures[0].axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks, "no tick on the epoch axis"
        assert all(float(t).is_integer() for t in ticks), ticks
