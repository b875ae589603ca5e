"""The prepared GPU script runs end to end on a CPU at its --tiny scale."""

from __future__ import annotations

import re

import pytest
import torch

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


def test_parse_args_defaults_and_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    args = gpu_train_check.parse_args([])
    assert args.batch_sizes is None  # 8 and 32, or the config's with --tiny
    assert (args.media, args.no_dali, args.decode_clips) == ("web", False, 8)
    with pytest.raises(SystemExit) as info:
        gpu_train_check.parse_args(["--batch-sizes", "8", "0"])
    assert info.value.code == 2
    assert "--batch-sizes should all be >= 1, found [8, 0]" in capsys.readouterr().err


def test_dali_is_skipped_with_the_reason_without_dali_or_gpu() -> None:
    cfg = gpu_train_check.load_config(gpu_train_check.CONFIG, [], smoke=True)
    reason = gpu_train_check.dali_clips_per_second(cfg, [], 8, torch.device("cpu"), 1)
    assert isinstance(reason, str)
    assert reason.startswith("skipped: ")
    assert "nvidia-dali-cuda120" in reason or "needs a CUDA device" in reason


@pytest.mark.slow
def test_gpu_train_check_measures_each_batch_size(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real, calls = gpu_train_check.dali_clips_per_second, []

    def dali_fails_the_second_time(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("nvdec\n  unavailable")
        return real(*args)

    monkeypatch.setattr(gpu_train_check, "dali_clips_per_second", dali_fails_the_second_time)
    argv = ["--tiny", "--device", "cpu", "--videos", "12", "--unique", "2", "--workers", "0"]
    more = ["--bare-steps", "2", "--batch-sizes", "2", "3", "--decode-clips", "1"]
    assert gpu_train_check.main([*argv, *more]) == 0
    out = capsys.readouterr().out
    assert "(web media: 64x48, 10 frames at 10 fps" in out
    assert re.search(
        r"CPU decode on this host, clips per core .*: every frame [\d.]+, skipping", out
    )
    assert [int(b) for b in re.findall(r"^### batch (\d+)$", out, re.M)] == [2, 3]
    ratios = [float(x) for x in re.findall(r"\| pipeline / bare \| ([\d.]+)", out)]
    summary = re.search(r"pipeline / bare: batch 2 ([\d.]+), batch 3 ([\d.]+)", out)
    assert [float(summary[1]), float(summary[2])] == pytest.approx(ratios, abs=1e-3)
    assert out.count("| DALI GPU decoding | skipped: ") == 1
    assert "| DALI GPU decoding | failed: RuntimeError: nvdec unavailable |" in out


@pytest.mark.slow
def test_gpu_train_check_compares_worker_and_device_normalization(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--tiny", "--device", "cpu", "--videos", "12", "--unique", "2", "--workers", "0"]
    more = ["--bare-steps", "2", "--decode-clips", "1", "--no-dali"]
    assert gpu_train_check.main([*argv, *more, "--normalize", "device", "worker"]) == 0
    out = capsys.readouterr().out
    assert "RGB normalized on cpu vs in a loader worker, batch of 2: max |difference| 0 " in out
    # smoke clips 3 × 4 × 32 × 32: uint8 RGB 12 KiB, float32 48 KiB; log-mel 15.6 KiB per clip
    assert "| RGB normalized | device (0.05 MiB of inputs per batch) |" in out
    assert "| normalize=worker: pipeline clips/s (0.12 MiB per batch) |" in out
    device = float(re.search(r"pipeline clips/s \(last epoch, \d+ steps\) \| ([\d.]+)", out)[1])
    worker = float(re.search(r"normalize=worker: pipeline clips/s .*\| ([\d.]+) \|", out)[1])
    bare = float(re.search(r"bare forward/backward clips/s \| ([\d.]+)", out)[1])
    ratio = float(re.search(r"\| normalize=worker: pipeline / bare \| ([\d.]+)", out)[1])
    assert ratio == pytest.approx(worker / bare, abs=2e-3)
    side = float(re.search(r"\| pipeline clips/s, device / worker \| x([\d.]+)", out)[1])
    assert side == pytest.approx(device / worker, abs=1e-2)
    assert re.search(r"^pipeline / bare with normalize=worker: batch 2 [\d.]+$", out, re.M)
    # the default: data.normalize=auto, on a CPU the workers normalize
    assert gpu_train_check.parse_args([]).normalize == ["auto"]
