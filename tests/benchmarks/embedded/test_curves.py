import json

import pytest

from benchmarks.data.embedded import curves


def test_curve_summary():
    curve = curves.Curve("x", train=[0.5, 0.8, 0.9], holdout=[0.5, 0.7, 0.6], test=[0.4, 0.6, 0.65])
    assert curve.best_epoch == 2
    assert curve.gap_epoch == 2
    summary = curve.summary()
    assert summary["test_at_best"] == 0.6
    assert summary["final_gap"] == pytest.approx(0.3)
    assert curves.Curve("y", [0.5], [0.5], [0.5]).gap_epoch is None


def test_measure_and_cli_on_two_epochs(tmp_path, capsys):
    report = curves.measure("synthetic_av", seed=0, epochs=2)
    assert [c.model for c in report.curves] == ["visual", "audio", "visual+audio"]
    assert all(len(c.train) == 2 for c in report.curves)
    assert report.sizes == {"train": 800, "holdout": 200, "test": 2000}
    table = report.table()
    assert "fused (naive)" in table
    assert "overfits fastest" in table
    path = tmp_path / "c.json"
    assert curves.main(["--dataset", "mfeat", "--epochs", "1", "--json", str(path)]) == 0
    assert "mfeat seed 0" in capsys.readouterr().out
    assert len(json.loads(path.read_text())[0]["curves"]) == 7


def test_png(tmp_path, monkeypatch):
    plt = pytest.importorskip("matplotlib.pyplot")
    report = curves.measure("digits", seed=0, epochs=2)
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: figures.append(fig) or close(fig))
    assert curves.save_png(report, tmp_path).stat().st_size > 0
    axis = figures[0].axes[0]
    low, high = axis.get_xlim()
    ticks = [t for t in axis.get_xticks() if low <= t <= high]
    assert ticks, "no tick on the epoch axis"
    assert all(float(t).is_integer() for t in ticks), ticks  # no 1.2, 1.4, ...


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset"):
        curves.measure("kinetics")
