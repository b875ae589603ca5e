"""The decode comparison: every variant returns today's clip (resizing aside), and the script
prints the side-by-side table in one run."""

from __future__ import annotations

import re

import pytest
import torch

from benchmarks.data import open_media
from benchmarks.perf import _decode
from benchmarks.perf.decode_compare import main, parse_args


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("web")
    return _decode.write_web_video(folder / "w.mp4", (96, 64), seconds=2.0, fps=25, gop=20)


def test_web_video_is_h264_with_b_frames_and_the_keyframe_interval(web):
    described = _decode.describe(web)
    assert described.startswith("96x64, 50 frames at 25 fps, ")
    assert described.endswith("keyframe every 20 frames, B-frames yes")


@pytest.mark.parametrize("variant", list(_decode.VARIANTS))
def test_every_variant_decodes_the_same_frames(web, variant):
    shape = _decode.ClipShape(8, 2, 48, 32)
    with open_media(web) as c:
        today = _decode.decode_today(c, 0.7, 8, 2, 48)
    with open_media(web) as c:
        clip = _decode.VARIANTS[variant](c, 0.7, 8, 2, 48)
    assert clip.shape == today.shape == (8, 48, 72, 3)
    worst, mean = _decode.pixel_difference(_decode.VARIANTS[variant], web, [0.7], shape)
    if variant == "resize after":  # torch's bilinear on RGB, not libswscale's on YUV
        assert mean < 12
    else:
        assert torch.equal(clip, today)
        assert (worst, mean) == (0, 0.0)


def test_compare_rejects_unknown_variants(web):
    with pytest.raises(ValueError, match=r"Found \['fast'\]; choose from \['today'"):
        _decode.compare(web, _decode.SHAPES["ablation"], ["today", "fast"])


def test_script_prints_each_variant_with_its_ratio(capsys):
    assert parse_args([]).sizes == [(340, 256), (640, 360)]
    with pytest.raises(SystemExit):
        parse_args(["--sizes", "341x256"])
    assert "should have even sides" in capsys.readouterr().err
    argv = ["--sizes", "64x48", "--gops", "12", "--seconds", "1", "--clips", "1"]
    assert (
        main([*argv, "--rounds", "1", "--shapes", "ablation", "--variants", "today", "skip"]) == 0
    )
    out = capsys.readouterr().out
    assert "video: 64x48, 30 frames at 30 fps" in out
    rows = dict(re.findall(r"^    (today|skip) +[\d.]+ +([\d.]+) ", out, re.M))
    assert float(rows["today"]) == 1.0
    assert float(rows["skip"]) > 0
