"""PyAV video decoding: seek, frame stride, resize on decode, loop padding, bad files."""

from __future__ import annotations

import pytest
import torch

from benchmarks.data import (
    MediaError,
    clip_starts_uniform,
    decode_video_clip,
    open_media,
    probe_media,
    resized_shape,
)


def frame_ids(clip: torch.Tensor) -> list[int]:
    """The generator writes a gray 16 × 16 block of value 5 × frame index, top left."""
    h = clip.shape[1] // 3  # the block is 16/48 of the height in the unresized files
    return [round(float(f[2 : h - 2, 2 : h - 2].float().mean()) / 5) for f in clip]


def test_probe(media):
    with open_media(media.tone) as c:
        info = probe_media(c)
    assert info.fps == pytest.approx(25)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert (info.width, info.height, info.has_audio) == (64, 48, True)


def test_decode_seeks_and_strides(media):
    with open_media(media.tone) as c:
        clip = decode_video_clip(c, start=1.0, num_frames=8, stride=2)
        assert clip.shape == (8, 48, 64, 3)
        assert clip.dtype == torch.uint8
        assert frame_ids(clip) == list(range(25, 41, 2))
        first = decode_video_clip(c, start=0.0, num_frames=4, stride=1)  # seek back
        assert frame_ids(first) == [0, 1, 2, 3]


def test_resize_on_decode(media):
    assert resized_shape(48, 64, 24) == (24, 32)
    assert resized_shape(64, 48, 24) == (32, 24)
    with open_media(media.tone) as c:
        clip = decode_video_clip(c, 0.0, 4, 1, short_side=96)
    assert clip.shape == (4, 96, 128, 3)


def test_clip_longer_than_video_loops(media):
    with open_media(media.short) as c:  # 10 frames
        clip = decode_video_clip(c, 0.0, num_frames=8, stride=2)
    assert frame_ids(clip) == [0, 2, 4, 6, 8, 0, 2, 4]
    with open_media(media.short) as c:  # start past the end: the tail is used
        clip = decode_video_clip(c, 5.0, num_frames=4, stride=1)
    assert len(frame_ids(clip)) == 4


def test_bad_files(media, tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        open_media(tmp_path / "nope.mp4")
    for bad in (media.truncated, media.garbage):
        with pytest.raises(MediaError, match="cannot open"):
            open_media(bad)


def test_uniform_starts():
    assert clip_starts_uniform(10.0, 1.0, 10) == pytest.approx(list(range(10)))
    assert clip_starts_uniform(0.5, 1.0, 3) == [0.0, 0.0, 0.0]
    assert clip_starts_uniform(3.0, 1.0, 1) == [1.0]
