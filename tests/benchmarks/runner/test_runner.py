"""The main job's pieces: batches, methods, one run per method kind, report, CLI."""

import dataclasses
import importlib.util
import json

import pytest
import torch

import blendopt
from benchmarks.__main__ import main
from benchmarks.data.embedded import EMBEDDED_DATASETS, curves, make_synthetic_av
from benchmarks.runner import (
    METHODS,
    SETUPS,
    Method,
    RunResult,
    TensorBatches,
    all_methods,
    benchmark_doc,
    make_optimizer,
    markdown_table,
    offline_schedule,
    online_schedule,
    register_method,
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
        "pretrain",
        "early_stop_25",
        "early_stop_50",
        "early_stop_75",
        "auxiliary_1",
        "auxiliary",
        "uncertainty",
        "ensemble",
        "ogm_ge",
        "gblend_offline",
        "gblend_online",
        "gblend_rolling",
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
    if method.kind == "ensemble":  # one model per modality, each read at its own head
        assert set(result.head_accuracy) == {"visual", "audio"}
    else:
        assert set(result.head_accuracy) == {"visual", "audio", "fused"}
        assert result.accuracy == result.head_accuracy[method.modality or "fused"]
    assert (result.ensemble_accuracy is not None) == method.is_multihead
    assert (result.ensemble_avg_accuracy is not None) == method.is_multihead
    if method.is_multihead:
        by_name = {
            "fused": result.head_accuracy["fused"],
            "ensemble": result.ensemble_accuracy,
            "ensemble_avg": result.ensemble_avg_accuracy,
            "ensemble_uniform": result.uniform_accuracy,
        }
        assert result.selected_accuracy == by_name[result.selected]
    if method.kind == "single":
        assert result.weights[method.modality] == 1.0
    if method.name == "auxiliary_1":  # the paper's auxiliary losses: weight 1 on every head
        assert result.weights == {"visual": 1.0, "audio": 1.0, "fused": 1.0}
    if method.name == "auxiliary":
        assert result.weights == pytest.approx(dict.fromkeys(["visual", "audio", "fused"], 1 / 3))
    if method.kind in ("naive", "dropout", "early_stop", "ogm_ge"):
        assert result.weights == {"visual": 0.0, "audio": 0.0, "fused": 1.0}
    if method.kind == "gblend" and method.name != "gblend_rolling":
        assert result.weight_history
        assert result.weight_history[0]["epoch"] == 0
    if method.name == "gblend_rolling":  # estimates every 50 steps: none in 2 short epochs
        assert result.weights == pytest.approx(dict.fromkeys(["visual", "audio", "fused"], 1 / 3))
    if method.kind != "ensemble":  # one record per epoch in _plots' schema
        assert [r["epoch"] for r in result.epochs] == [1, 2]
        assert set(result.epochs[0]) >= {"epoch", "step", "train_loss", "holdout", "weights"}
        assert set(result.epochs[0]["holdout"]) == {"visual", "audio", "fused"}


def _toy(method, acc, seed, seconds=1.0, **kw):
    return RunResult(
        "toy", method, "sgd", seed, acc, {}, None, {"a": 0.5, "fused": 0.5}, seconds=seconds, **kw
    )


def test_report_and_verdicts():
    results = [
        _toy("single:a", 0.6, 0),
        _toy("single:a", 0.9, 1),
        _toy("naive", 0.5, 0),
        _toy("naive", 0.5, 1),
        _toy("auxiliary", 0.66, 0),
        _toy("auxiliary", 0.66, 1),
    ]
    results += [
        RunResult(
            "toy",
            "gblend_offline",
            "sgd",
            seed,
            0.55,
            {"a": 0.6, "fused": 0.55},
            0.8,
            {"a": 0.5, "fused": 0.5},
            selected="ensemble",
            selected_accuracy=0.8,
            ensemble_avg_accuracy=0.78,
            average_weights={"a": 0.4, "fused": 0.6},
            seconds=4.0,
        )
        for seed in (0, 1)
    ]
    table = markdown_table(results)
    assert "### toy, sgd (2 seeds)" in table
    assert "| single:a | 75.0 ± 21.2 | — | — | — | — | 1.00× | — |" in table
    assert (
        "| gblend_offline | 55.0 ± 0.0 | 55.0 ± 0.0 | 80.0 ± 0.0 | 78.0 ± 0.0 | "
        "80.0 ± 0.0 (ensemble) | 4.00× | a 0.50, fused 0.50 (a 0.40, fused 0.60) |"
    ) in table
    (line,) = verdicts(results)
    # paired by seed: naive - single:a = -0.1, -0.4; mean -0.25, SE 0.15, t(0.975, 1) = 12.706
    assert (
        "naive fusion scores 50.0% (-25.0 points [95% CI -215.6, +165.6; 2 paired seeds; "
        "within noise])"
    ) in line
    assert "is in the paper's regime" in line
    assert "The best baseline other than G-Blend is auxiliary (66.0%" in line
    assert "gblend_offline reaches 80.0% with the predictor chosen on V (ensemble)" in line
    # 0.8 - (0.6, 0.9): mean +0.05, SE 0.15; 0.8 - 0.66 is +0.14 on both seeds: no interval
    assert "+5.0 points [95% CI -185.6, +195.6; 2 paired seeds; within noise] vs single:a" in line
    assert "+14.0 points [the same on all 2 paired seeds] vs auxiliary" in line
    assert (
        "its fused head alone scores 55.0%: -20.0 points [95% CI -210.6, +170.6; 2 paired "
        "seeds; within noise] vs single:a, -11.0 points [the same on all 2 paired seeds] vs "
        "auxiliary"
    ) in line
    assert "it costs 4.0× naive" in line


def test_paired_difference_is_a_paired_t_interval_over_the_common_seeds():
    from benchmarks.runner import paired_difference

    # diffs 0.1, 0.2, 0.1: mean 0.1333, sd 0.05774, SE 0.03333, t(0.975, 2) = 4.3027
    assert paired_difference({0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.4, 1: 0.4, 2: 0.6}) == (
        "+13.3 points [95% CI -1.0, +27.7; 3 paired seeds; within noise]"
    )
    # diffs 0.1, 0.12, 0.1: mean 0.10667, SE 0.006667: the interval excludes 0
    assert paired_difference({0: 0.5, 1: 0.62, 2: 0.7}, {0: 0.4, 1: 0.5, 2: 0.6}) == (
        "+10.7 points [95% CI +7.8, +13.5; 3 paired seeds]"
    )
    # only the common seeds are paired (seed 0 of `a` has no partner); one seed: no interval
    assert paired_difference({0: 0.0, 1: 0.5, 2: 0.7}, {1: 0.4, 2: 0.6}) == (
        "+10.0 points [the same on all 2 paired seeds]"
    )
    assert paired_difference({3: 0.5}, {3: 0.25}) == "+25.0 points [one seed: no interval]"


@pytest.mark.filterwarnings("ignore::blendopt.BlendWarning")
def test_cli_writes_the_run_folder_and_the_docs_page(tmp_path, capsys):
    docs = tmp_path / "benchmark.md"
    code = main(
        [
            "--datasets",
            "synthetic_av",
            "--methods",
            "naive",
            "single:visual",
            "gblend_offline",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--docs",
            str(docs),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "gblend_offline" in out
    report = (tmp_path / "embedded_benchmark.md").read_text()
    assert "### synthetic_av, sgd (1 seed)" in report
    assert "## Verdicts" in report
    raw = json.loads((tmp_path / "embedded_benchmark.json").read_text())
    assert [r["method"] for r in raw["runs"]] == ["single:visual", "naive", "gblend_offline"]
    assert raw["meta"]["command"].startswith("python -m benchmarks --datasets synthetic_av")
    if importlib.util.find_spec("matplotlib") is not None:
        plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
        assert "synthetic_av_sgd_accuracy_vs_cost.png" in plots
        assert "synthetic_av_sgd_gblend_offline_weights.png" in plots
        assert "synthetic_av_sgd_gblend_offline_curves.png" in plots
    page = docs.read_text()
    assert page.startswith("# The embedded benchmark")
    assert "| gblend_offline |" in page
    # The page regenerates from the JSON alone, identically.
    again = tmp_path / "again.md"
    assert benchmark_doc.main([str(tmp_path / "embedded_benchmark.json"), str(again)]) == 0
    assert again.read_text() == page


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--methods", "gblend"], "invalid choice: 'gblend'"),
        (["--datasets", "cifar"], "invalid choice: 'cifar'"),
        (["--methods", "single:flow", "--datasets", "synthetic_av"], "'single:flow'"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_cli_bad_names_are_argparse_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--no-progress", "--no-plots", "--epochs", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_cli_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in (*SETUPS, *METHODS, "single:<modality>"):
        assert name in out


def test_dataset_names_are_the_same_everywhere():
    assert list(SETUPS) == list(EMBEDDED_DATASETS) == list(curves._datasets())
    assert "digits_small" in SETUPS


def test_registering_a_gblend_estimator_is_one_entry(small_data):
    with pytest.raises(ValueError, match="taken"):
        register_method(Method("naive", "naive"))
    with pytest.raises(ValueError, match="estimator"):
        register_method(Method("gblend_x", "gblend"))
    calls = []

    class Constant(blendopt.Estimator):  # an estimator that "measures" the same weights
        def estimate(self, request):
            weights = {"visual": 0.7, "audio": 0.1, "fused": 0.2}
            return blendopt.BlendEstimate(weights, {}, {}, accepted=True, notes=("constant",))

    def fixed(ctx):
        calls.append(ctx.holdout_size)
        return Constant()

    register_method(Method("gblend_fixed", "gblend", estimator=fixed, schedule=offline_schedule))
    try:
        assert "gblend_fixed" in [m.name for m in all_methods(["visual", "audio"])]
        result = run_one(SETUPS["synthetic_av"], METHODS["gblend_fixed"], epochs=1, data=small_data)
    finally:
        del METHODS["gblend_fixed"]
    assert calls == [12]  # 10% of 120
    assert result.weights == {"visual": 0.7, "audio": 0.1, "fused": 0.2}
    assert result.ensemble_accuracy is not None


def test_without_seeds_each_dataset_runs_its_own_count(tmp_path, monkeypatch):
    monkeypatch.setitem(SETUPS, "mfeat_small", dataclasses.replace(SETUPS["mfeat_small"], seeds=2))
    argv = ["--datasets", "mfeat_small", "mfeat", "--methods", "naive", "--epochs", "1"]
    out = tmp_path / "run"
    assert main([*argv, "--no-progress", "--no-plots", "--jobs", "1", "--out", str(out)]) == 0
    raw = json.loads((out / "embedded_benchmark.json").read_text())
    seeds = sorted((r["dataset"], r["seed"]) for r in raw["runs"])
    assert seeds == [("mfeat", s) for s in range(3)] + [("mfeat_small", s) for s in range(2)]
    assert raw["meta"]["seeds"] == {"mfeat_small": 2, "mfeat": 3}


@pytest.mark.slow
def test_parallel_runs_give_the_results_of_one_process(tmp_path):
    from benchmarks.runner._run_folder import load_run

    argv = ["--datasets", "mfeat_small", "--methods", "naive", "single:zer", "gblend_rolling"]
    argv += ["--seeds", "2", "--epochs", "2", "--no-progress", "--no-plots"]
    assert main([*argv, "--jobs", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0
    one, _ = load_run(tmp_path / "one" / "embedded_benchmark.json")
    two, meta = load_run(tmp_path / "two" / "embedded_benchmark.json")
    assert meta["jobs"] == 2
    key = lambda r: (r.method, r.seed, r.accuracy, r.head_accuracy, r.weights)  # noqa: E731
    assert [key(r) for r in one] == [key(r) for r in two]
