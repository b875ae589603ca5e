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
