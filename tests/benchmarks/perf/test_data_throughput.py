"""The throughput script runs end to end on tiny generated media."""

from __future__ import annotations

from benchmarks.perf.data_throughput import main, parse_args


def test_parse_defaults():
    args = parse_args([])
    assert args.workers == [1, 2]
    assert args.configs == ["16x112", "32x224"]
    assert args.normalize == ["worker", "device"]


def test_tiny_run(capsys):
    main(
        [
            "--videos",
            "1",
            "--seconds",
            "1",
            "--size",
            "160x128",
            "--clips",
            "2",
            "--workers",
            "1",
            "--configs",
            "16x112",
            "--codec",
            "mpeg4",
        ]
    )
    out = capsys.readouterr().out
    assert "clips/s" in out
    assert "bottleneck:" in out


def test_web_media_by_default_and_the_pattern_on_request(capsys):
    assert parse_args([]).media == "web"
    tiny = ["--videos", "1", "--seconds", "1", "--size", "160x128", "--clips", "2"]
    main([*tiny, "--workers", "1", "--configs", "16x112", "--no-profile", "--media", "pattern"])
    out = capsys.readouterr().out
    assert "generated videos, 1 s 160x128 @ 30 fps libx264 (GOP default)" in out
    main([*tiny, "--workers", "1", "--configs", "16x112", "--gop", "10"])
    out = capsys.readouterr().out
    assert "H.264 CRF 23 (GOP 10)" in out
    assert "keyframe every 10 frames, B-frames yes" in out
    assert "video decode+rgb resize" in out


def test_worker_and_device_normalization_side_by_side(capsys):
    tiny = ["--videos", "1", "--seconds", "1", "--size", "160x128", "--clips", "2"]
    main([*tiny, "--workers", "1", "--configs", "16x112", "--no-profile"])
    out = capsys.readouterr().out
    assert "normalize=worker: in-process" in out
    assert "normalize=device: in-process" in out
    # uint8 RGB: a quarter of float32's bytes (the audio log-mel stays float32)
    assert "batch of 2: 1.18 MiB (rgb 1.15)" in out  # 2 × 16 × 112 × 112 × 3 bytes
    assert "batch of 2: 4.62 MiB (rgb 4.59)" in out
    assert "device / worker normalization: x" in out
    assert "x0.25 bytes per batch" in out
    assert "ms per clip as a batch of 2" in out
    main([*tiny, "--workers", "1", "--configs", "16x112", "--normalize", "device"])
    out = capsys.readouterr().out
    assert "normalize=device" in out
    assert "normalize=worker" not in out
    assert "device / worker" not in out
    assert "normalize (worker only)" in out  # the profile times the stage on its own
