"""The prepared GPU script runs end to end on a CPU at its --tiny scale."""

from __future__ import annotations

import re

import pytest

from benchmarks.perf import gpu_train_check


@pytest.mark.slow
def test_gpu_train_check_tiny_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--tiny", "--device", "cpu", "--videos", "12", "--unique", "2", "--workers", "0"]
    assert gpu_train_check.main([*argv, "--bare-steps", "2"]) == 0
    out = capsys.readouterr().out
    pipeline = float(re.search(r"pipeline clips/s \(last epoch, \d+ steps\) \| ([\d.]+)", out)[1])
    bare = float(re.search(r"bare forward/backward clips/s \| ([\d.]+)", out)[1])
    ratio = float(re.search(r"pipeline / bare \| ([\d.]+)", out)[1])
    assert pipeline > 0
    assert bare > 0
    assert ratio == pytest.approx(pipeline / bare, abs=2e-3)
    assert re.search(r"data-wait share of training time \| [\d.]+%", out)


@pytest.mark.slow
def test_gpu_train_check_runs_a_flow_config(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """Table 4: the script writes flow files for a flow config and feeds flow to the bare run."""
    config = gpu_train_check.CONFIG.parent / "kinetics_rgb_flow_audio.toml"
    argv = ["--tiny", "--device", "cpu", "--videos", "12", "--unique", "2", "--workers", "0"]
    keep = ["--keep", str(tmp_path), "--config", str(config), "--bare-steps", "2"]
    assert gpu_train_check.main([*argv, *keep]) == 0
    out = capsys.readouterr().out
    assert "and flow files" in out
    assert "modalities ['rgb', 'flow', 'audio']" in out
    assert len(list((tmp_path / "kinetics" / "flow" / "train").rglob("*.npy"))) == 12
    assert re.search(r"pipeline / bare \| [\d.]+", out)
