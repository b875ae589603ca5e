"""PyAV video decoding: seek, frame stride, resize on decode, loop padding, bad files; the
decoder that skips unkept frames against decoding every frame (B-frames, keyframes, variable
frame rate, a seek that lands late, packets without timestamps)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import VideoReformatter

from benchmarks.data import (
    MediaError,
    clip_starts_uniform,
    decode_video_clip,
    open_media,
    probe_media,
    resized_shape,
    write_test_video,
)
from benchmarks.data import _video as video_module
from benchmarks.data._video import decode_clips


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


# The decoder that skips what a clip does not keep, against decoding every frame.

SPAN_FPS = 25
KEYFRAME_EVERY = 12  # frames: a keyframe every 0.48 s, so clips cross keyframes


def reference_clip(
    path: str, start: float, num_frames: int, stride: int, short_side: int | None
) -> torch.Tensor:
    """Decode every frame from the file's first frame; count ``span`` frames from the first
    at or after ``start`` (half a frame of tolerance); past the end, the last ``span``."""
    span = (num_frames - 1) * stride + 1
    with av.open(path) as c:
        stream = c.streams.video[0]
        info = probe_media(c)
        frames = list(c.decode(stream))
        times = [float(f.pts * stream.time_base) for f in frames]
    first = next((i for i, t in enumerate(times) if t >= start - 0.5 / info.fps), None)
    first = max(0, len(frames) - span) if first is None else first
    chosen = frames[first : first + span : stride]
    chosen = [chosen[i % len(chosen)] for i in range(num_frames)]
    height, width = resized_shape(info.height, info.width, short_side)
    scaler = VideoReformatter()
    return torch.from_numpy(
        np.stack(
            [
                scaler.reformat(
                    f, width=width, height=height, format="rgb24", interpolation="BILINEAR"
                ).to_ndarray()
                for f in chosen
            ]
        )
    )


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> str:
    """3 s of libx264 (B-frames, a keyframe every 12 frames) with the frame markers."""
    path = tmp_path_factory.mktemp("h264") / "gop12.mp4"
    return write_test_video(
        path, seconds=3.0, fps=SPAN_FPS, video_codec="libx264", gop=KEYFRAME_EVERY, audio="none"
    )


@pytest.fixture(scope="module")
def vfr(tmp_path_factory) -> str:
    """libx264 at a variable frame rate: frame durations drawn from 20, 40 and 80 ms."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    durations = np.random.default_rng(0).choice([20, 40, 80], 60)
    with av.open(str(path), "w") as c:
        stream = c.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.gop_size = KEYFRAME_EVERY
        for i, pts in enumerate(np.concatenate([[0], np.cumsum(durations)[:-1]])):
            img = np.zeros((48, 64, 3), np.uint8)
            img[:16, :16] = (5 * i) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = int(pts), Fraction(1, 1000)
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    return str(path)


def fast_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the every-frame fallback fail, so a test sees which path served the clip."""

    def refuse(*args, **kwargs):
        raise AssertionError("the every-frame fallback ran")

    monkeypatch.setattr(video_module, "_decode_every_frame", refuse)


def test_h264_fixture_has_b_frames_and_keyframes(h264):
    with av.open(h264) as c:
        stream = c.streams.video[0]
        keys = [i for i, p in enumerate(c.demux(stream)) if p.size and p.is_keyframe]
        assert stream.codec_context.has_b_frames
    assert keys[:3] == [0, KEYFRAME_EVERY, 2 * KEYFRAME_EVERY]


@pytest.mark.parametrize(
    ("start", "num_frames", "stride", "short_side"),
    [
        (0.0, 16, 2, None),  # the start
        (1.3, 16, 2, 32),  # the middle, resized
        (0.40, 8, 1, None),  # across the keyframe at 0.48 s
        (0.47, 4, 3, 24),  # one frame before a keyframe
        (0.48, 4, 3, None),  # on a keyframe
        (2.2, 16, 2, None),  # runs past the end: loop-padded
        (2.9, 8, 2, 32),  # starts at the last frame
        (3.5, 8, 2, None),  # starts past the end: the last frames
    ],
)
def test_skipping_decoder_returns_the_frames_of_every_frame_decoding(
    h264, monkeypatch, start, num_frames, stride, short_side
):
    expected = reference_clip(h264, start, num_frames, stride, short_side)
    with open_media(h264) as c:
        slow = decode_video_clip(c, start, num_frames, stride, short_side, skip_unused=False)
    fast_path_only(monkeypatch)
    with open_media(h264) as c:
        fast = decode_video_clip(c, start, num_frames, stride, short_side)
    assert torch.equal(slow, expected)
    assert torch.equal(fast, expected)  # pixel for pixel: the same frames, the same scaler


def test_one_pass_for_several_clips_matches_one_clip_each(h264, monkeypatch):
    starts = [0.0, 0.5, 1.21, 2.8, 4.0]
    fast_path_only(monkeypatch)
    with open_media(h264) as c:
        clips = decode_clips(c, starts, 8, 2, 32)
    for start, clip in zip(starts, clips, strict=True):
        assert torch.equal(clip, reference_clip(h264, start, 8, 2, 32))
    with open_media(h264) as c:
        assert decode_clips(c, [], 8, 2) == []


@pytest.mark.parametrize("start", [0.0, 0.05, 0.33, 0.9, 1.61, 2.0])
@pytest.mark.parametrize("skip_unused", [True, False])
def test_variable_frame_rate_gives_the_frames_by_time(vfr, start, skip_unused):
    with open_media(vfr) as c:
        clip = decode_video_clip(c, start, 8, 2, skip_unused=skip_unused)
    assert torch.equal(clip, reference_clip(vfr, start, 8, 2, None))


class LateSeeks:
    """A container whose seeks past 0 land ``late`` (stream time base) too far: a broken index."""

    def __init__(self, container, late: int) -> None:
        self._container, self._late, self.seeks = container, late, []

    def seek(self, offset, **kwargs):
        self.seeks.append(offset)
        return self._container.seek(offset + self._late if offset > 0 else offset, **kwargs)

    def __getattr__(self, name):
        return getattr(self._container, name)


@pytest.mark.parametrize("skip_unused", [True, False])
def test_a_seek_that_lands_late_decodes_from_the_start(h264, skip_unused):
    """A seek to 0.5 s that lands on the keyframe at 0.96 s must not return later frames."""
    with open_media(h264) as c:
        late = LateSeeks(c, round(0.5 / float(c.streams.video[0].time_base)))
        clip = decode_video_clip(late, 0.5, 8, 1, skip_unused=skip_unused)
    assert torch.equal(clip, reference_clip(h264, 0.5, 8, 1, None))
    assert late.seeks[-1] == 0  # decoded from the start of the stream


class NoTimestamps(LateSeeks):
    """A container whose demuxed packets have no presentation time (raw streams)."""

    def __init__(self, container) -> None:
        super().__init__(container, 0)

    def demux(self, *args, **kwargs):
        for packet in self._container.demux(*args, **kwargs):
            packet.pts = None
            yield packet


def test_packets_without_timestamps_fall_back_to_every_frame(h264, monkeypatch):
    fallback = []
    real = video_module._decode_every_frame
    monkeypatch.setattr(
        video_module, "_decode_every_frame", lambda *a: fallback.append(1) or real(*a)
    )
    with open_media(h264) as c:
        clip = decode_video_clip(NoTimestamps(c), 1.0, 8, 2)
    assert fallback == [1]
    assert torch.equal(clip, reference_clip(h264, 1.0, 8, 2, None))
