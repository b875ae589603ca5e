"""The rolling-defaults study: its paired lines by hand, and one tiny end-to-end run."""

import pytest

from benchmarks.perf import rolling_defaults
from benchmarks.runner import METHODS


@pytest.fixture
def variants():
    names = rolling_defaults.register_variants()
    yield names
    for name in names:  # the main job's registry is process-wide
        METHODS.pop(name, None)


def test_register_variants_is_idempotent(variants):
    assert rolling_defaults.register_variants() == variants
    assert all(METHODS[n].kind == "gblend" for n in variants)


def test_paired_lines_subtract_seed_by_seed():
    runs = [
        {"dataset": "d", "method": "auxiliary", "seed": s, "selected_accuracy": a}
        for s, a in enumerate((0.8, 0.9))
    ] + [
        {"dataset": "d", "method": "gblend_rolling", "seed": s, "selected_accuracy": a}
        for s, a in enumerate((0.7, 0.9))
    ]
    runs += [
        {
            "dataset": "d",
            "method": rolling_defaults.PREFIX + name,
            "seed": s,
            "selected_accuracy": 1,
        }
        for name in rolling_defaults.VARIANTS
        for s in (0, 1)
    ]
    lines = rolling_defaults.paired_lines(runs)
    # defaults - auxiliary: -0.1, 0.0 -> mean -0.05, SE 0.05, t(0.975, 1) = 12.706 -> ±0.635
    assert (
        lines[0]
        == "d: defaults - auxiliary -5.0 points [95% CI -68.5, +58.5; 2 paired seeds; within noise]"
    )
    # every variant: +0.3, +0.1 -> mean +0.2, SE 0.1 -> ±1.271
    assert lines[1] == (
        "  prior_previous - defaults +20.0 points [95% CI -107.1, +147.1; 2 paired seeds; "
        "within noise]"
    )
    assert len(lines) == 1 + len(rolling_defaults.VARIANTS)


def test_a_tiny_study_runs_end_to_end(variants, tmp_path, capsys):
    argv = ["--datasets", "mfeat_small", "--seeds", "2", "--epochs", "1", "--jobs", "1"]
    assert rolling_defaults.main([*argv, "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "chosen on V, paired by seed:" in out
    assert "mfeat_small: defaults - auxiliary" in out
    assert "  params_all - defaults" in out
