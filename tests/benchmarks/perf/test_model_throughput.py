"""Smoke test of ``benchmarks/perf/model_throughput.py``."""

import pytest

from benchmarks.perf import model_throughput


def test_tiny_cpu_run_prints_a_table(capsys):
    argv = ["mlp_encoder", "s*_encoder", "r3d_10", "--size", "tiny", "--batch", "2", "--no-isolate"]
    results = model_throughput.main([*argv, "--steps", "1", "--warmup", "0"])
    names = ["mlp_encoder", "sequence_encoder", "small_cnn_encoder", "r3d_10"]
    assert [r.model for r in results] == names
    out = capsys.readouterr().out
    assert "clips/s" in out
    assert "CPU max-RSS growth" in out
    assert all(r.clips_per_s > 0 for r in results)
    assert results[-1].input_size == "3×2×48×48"


def test_frames_and_crop_override():
    argv = ["r3d_10", "--size", "tiny", "--frames", "1", "--crop", "32", "--no-isolate"]
    (result,) = model_throughput.main([*argv, "--steps", "1", "--warmup", "0"])
    assert result.input_size == "3×1×32×32"


def test_bf16_and_channels_last_on_video_and_audio():
    argv = ["r3d_10", "audio_resnet_18", "--size", "tiny", "--no-isolate", "--bf16"]
    results = model_throughput.main([*argv, "--channels-last", "--steps", "1", "--warmup", "0"])
    assert len(results) == 2


def test_unknown_model_and_bad_options():
    with pytest.raises(ValueError, match="Did you mean"):
        model_throughput.main(["r3d18", "--size", "tiny"])
    with pytest.raises(SystemExit):
        model_throughput.parse_args(["--steps", "0"])
    with pytest.raises(SystemExit):
        model_throughput.parse_args(["--batch", "0"])


def test_isolated_run_in_a_child_process():
    argv = ["mlp_encoder", "--size", "tiny", "--isolate", "--steps", "1", "--warmup", "0"]
    (result,) = model_throughput.main(argv)
    assert result.model == "mlp_encoder"
    assert result.peak_mib >= 0
