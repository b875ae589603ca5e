"""The throughput script runs end to end on tiny generated media."""

from __future__ import annotations

from benchmarks.perf.data_throughput import main, parse_args


def test_parse_defaults():
    args = parse_args([])
    assert args.workers == [1, 2]
    assert args.configs == ["16x112", "32x224"]


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
