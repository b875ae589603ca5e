"""Smoke test of the optimizer comparison (the numbers themselves are benchmark results)."""

import json

import pytest

from benchmarks.data.embedded import make_synthetic_av
from benchmarks.perf import table3
from benchmarks.perf._table3 import TABLE3_METHODS, extra_info, run_case


@pytest.fixture(scope="module")
def small_data():
    kwargs = {"n_train": 120, "n_test": 60, "num_classes": 3, "dims": {"visual": 4, "audio": 32}}
    return make_synthetic_av("train", **kwargs), make_synthetic_av("test", **kwargs)


@pytest.mark.parametrize("method", TABLE3_METHODS)
def test_run_case_records_every_predictor(method, small_data):
    result, warnings = run_case("adagrad", method, epochs=1, data=small_data)
    info = extra_info(result, warnings)
    assert info["optimizer"] == "adagrad"
    assert info["method"] == method
    assert info["seed"] == 0
    assert set(info["weights"]) == {"visual", "audio", "fused"}
    multi = method.startswith("gblend")
    assert (info["accuracy"]["fused"] is None) == method.startswith("single:")
    assert (info["accuracy"]["ensemble"] is not None) == multi
    assert (info["accuracy"]["selected_on_v"] is not None) == multi
    if multi:  # the choice's record beside it: the paired test on V that made it
        assert info["selection"]["chosen"] == info["accuracy"]["selected_on_v"]
        assert info["selection"]["size"] == info["prediction"]["size"] > 0
    json.dumps(info)  # pytest-benchmark stores it as JSON


def _bench(optimizer, method, seconds, selected, fused, cpu=None):
    accuracy = {"own": fused, "fused": fused, "ensemble": None, "ensemble_avg": None}
    accuracy |= {"selected": selected, "selected_on_v": "ensemble" if selected else None}
    info = {
        "table3": True,
        "dataset": "synthetic_av",
        "optimizer": optimizer,
        "method": method,
        "seed": 0,
        "accuracy": accuracy,
        "cpu_seconds": cpu,
    }
    return {"extra_info": info, "stats": {"median": seconds}}


def test_table3_prints_accuracy_and_time_ratio(tmp_path, capsys):
    report = {
        "benchmarks": [
            {"extra_info": {}, "stats": {"median": 1.0}},  # the overhead benchmark: ignored
            _bench("sgd", "naive", 2.0, None, 0.28, cpu=1.0),
            _bench("sgd", "gblend_offline", 5.0, 0.436, 0.33, cpu=3.0),
        ]
    }
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    assert table3.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| sgd | naive | 28.0 | 28.0 | 2.00 | 1.00× | 1.00× |" in out
    assert "| sgd | gblend_offline | 43.6 (ensemble) | 33.0 | 5.00 | 2.50× | 3.00× |" in out
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"benchmarks": []}))
    with pytest.raises(SystemExit):
        table3.main([str(empty)])
