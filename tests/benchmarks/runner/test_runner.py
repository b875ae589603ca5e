"""The main job's pieces: batches, methods, one run per method kind, report, CLI."""

import json

import pytest
import torch

from benchmarks.__main__ import main
from benchmarks.data.embedded import make_synthetic_av
from benchmarks.runner import (
    SETUPS,
    RunResult,
    TensorBatches,
    all_methods,
    make_optimizer,
    markdown_table,
    online_schedule,
    run_one,
    select_methods,
    verdicts,
)


@pytest.fixture(scope="module")
def small_data():
    kwargs = {"n_train": 120, "n_test": 60, "num_classes": 3, "dims": {"visual": 4, "audio": 32}}
    return make_synthetic_av("train", **kwargs), make_synthetic_av("test", **kwargs)


def test_tensor_batches_cover_the_data_once_per_pass(small_data):
    train, _ = small_data
    batches = TensorBatches(train, 50, shuffle=True)
    assert len(batches) == 3
    torch.manual_seed(0)
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == sorted(train.targets.tolist())
    inputs, _ = next(iter(TensorBatches(train, 7, shuffle=False)))
    assert torch.equal(inputs["audio"], train.tensors["audio"][:7])
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatches(train, 0, shuffle=False)


def test_methods_and_selection():
    names = [m.name for m in all_methods(["visual", "audio"])]
    assert names == [
        "single:visual",
        "single:audio",
        "naive",
        "dropout",
        "auxiliary",
        "gblend_offline",
        "gblend_online",
    ]
    assert [m.name for m in select_methods(["a", "b"], ["single", "naive"])] == [
        "single:a",
        "single:b",
        "naive",
    ]
    with pytest.raises(ValueError, match="Unknown method 'gblend'"):
        select_methods(["a"], ["gblend"])
    with pytest.raises(ValueError, match="Unknown optimizer"):
        make_optimizer("lbfgs", [torch.nn.Parameter(torch.zeros(1))], 0.1)


def test_online_schedule_scales_the_papers_10_then_5_of_45():
    s = online_schedule(45)
    assert (s.warmup, s.every) == (10, 5)


@pytest.mark.filterwarnings("ignore::blendopt.BlendWarning")
@pytest.mark.parametrize("method", all_methods(["visual", "audio"]), ids=lambda m: m.name)
def test_each_method_trains_and_reports(method, small_data):
    result = run_one(SETUPS["synthetic_av"], method, epochs=2, data=small_data, seed=1)
    assert 0.0 <= result.accuracy <= 1.0
    assert set(result.head_accuracy) == {"visual", "audio", "fused"}
    head = method.modality or "fused"
    assert result.accuracy == result.head_accuracy[head]
    assert (result.ensemble_accuracy is not None) == method.is_blend
    if method.is_blend:
        expected = (
            result.ensemble_accuracy
            if result.selected == "ensemble"
            else result.head_accuracy["fused"]
        )
        assert result.selected_accuracy == expected
    assert sum(result.weights.values()) == pytest.approx(1.0)
    if method.kind == "single":
        assert result.weights[method.modality] == 1.0
    if method.kind in ("offline", "online"):
        assert result.weight_history
        assert result.weight_history[0]["epoch"] == 0


def test_report_and_verdicts():
    def r(method, acc, seed):
        return RunResult("toy", method, "sgd", seed, acc, {}, None, {"a": 0.5, "fused": 0.5})

    results = [
        r("single:a", 0.6, 0),
        r("single:a", 0.7, 1),
        r("naive", 0.5, 0),
        r("naive", 0.5, 1),
        r("gblend_offline", 0.8, 0),
        r("gblend_offline", 0.8, 1),
    ]
    table = markdown_table(results)
    assert "### toy, sgd (2 seeds)" in table
    assert "| single:a | 65.0 ± 7.1 |" in table
    assert "| gblend_offline | 80.0 ± 0.0 | — | — | a 0.50, fused 0.50 |" in table
    (line,) = verdicts(results)
    assert "naive 50.0 (below the best single modality)" in line
    assert "gblend_offline 80.0 (+15.0 vs best single, +30.0 vs naive)" in line


@pytest.mark.filterwarnings("ignore::blendopt.BlendWarning")
def test_cli_writes_the_report(tmp_path, capsys):
    code = main(
        [
            "--datasets",
            "synthetic_av",
            "--methods",
            "naive",
            "gblend_offline",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "gblend_offline" in out
    assert "### synthetic_av, sgd (1 seed)" in (tmp_path / "embedded_benchmark.md").read_text()
    runs = json.loads((tmp_path / "embedded_benchmark.json").read_text())
    assert [r["method"] for r in runs] == ["naive", "gblend_offline"]
