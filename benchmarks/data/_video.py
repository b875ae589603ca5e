"""Video decoding with PyAV: open, probe, seek to a clip, decode T frames at a stride.

A clip is decoded from the keyframe at or before its start, with the decoder told to drop
the non-reference frames the clip does not keep (``skip_frame = "NONREF"``, chosen per
packet from the packet timestamps): with libx264's defaults about half the frames between
the keyframe and the clip, and between the kept frames, are never decoded. Kept frames are
resized while they are converted to RGB (libswscale, bilinear, in FFmpeg), so the
full-resolution RGB frame is never materialized; one ``VideoReformatter`` serves a whole
clip (``VideoFrame.reformat`` builds a new scaler per frame). Measured per CPU core against
the alternatives (every frame decoded; PyAV's threading; resizing after the conversion; a
scaler per frame; no seek) by ``python -m benchmarks.perf.decode_compare``; the numbers are
in docs/training.md, "Throughput".

Errors are raised as :class:`MediaError` with a reason; the dataset adds the path.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

from benchmarks.data._report import MediaError

__all__ = [
    "VideoInfo",
    "clip_seconds",
    "clip_starts_uniform",
    "decode_clips",
    "decode_video_clip",
    "open_media",
    "probe_media",
    "resized_shape",
]


@dataclass(frozen=True)
class VideoInfo:
    """What a container says about its streams.

    Attributes:
        duration: seconds of video (from the video stream, else the container).
        fps: average frame rate of the video stream.
        width: frame width in pixels. height: frame height in pixels.
        has_audio: whether the file has an audio stream.
    """

    duration: float
    fps: float
    width: int
    height: int
    has_audio: bool


def open_media(path: str | os.PathLike[str]) -> Any:
    """Open a media file with PyAV, raising :class:`MediaError` if missing or unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError("file not found")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise MediaError(f"cannot open: {exc}") from exc
    if not container.streams.video and not container.streams.audio:
        container.close()
        raise MediaError("no audio or video stream")
    return container


def probe_media(container: Any) -> VideoInfo:
    """Duration, frame rate, frame size and audio presence of an opened container."""
    has_audio = bool(container.streams.audio)
    if not container.streams.video:
        duration = container.duration / av.time_base if container.duration else 0.0
        return VideoInfo(duration, 0.0, 0, 0, has_audio)
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 25.0
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    elif stream.frames:
        duration = stream.frames / fps
    else:
        duration = 0.0
    ctx = stream.codec_context
    return VideoInfo(duration, fps, int(ctx.width), int(ctx.height), has_audio)


def resized_shape(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(height, width) after scaling the short side to ``short_side`` (None: unchanged)."""
    if short_side is None:
        return height, width
    if height <= width:
        return short_side, max(1, round(width * short_side / height))
    return max(1, round(height * short_side / width)), short_side


def decode_video_clip(
    container: Any,
    start: float,
    num_frames: int,
    stride: int = 1,
    short_side: int | None = None,
    *,
    skip_unused: bool = True,
) -> torch.Tensor:
    """Decode ``num_frames`` frames every ``stride`` frames from ``start`` seconds.

    The clip covers ``(num_frames - 1) * stride + 1`` source frames. If the video ends
    before that, the frames that were decoded are repeated in a loop (frame ``i`` of the
    clip is kept frame ``i % kept``), so a clip longer than the video still has
    ``num_frames`` frames; a clip starting past the last frame takes the video's last
    frames. See :func:`decode_clips` for how the frames are found.

    Args:
        container: an open PyAV container (see :func:`open_media`).
        start: clip start in seconds from the start of the video stream.
        num_frames: frames in the clip (T).
        stride: keep one source frame in ``stride``.
        short_side: resize on decode so that the short side has this many pixels.
        skip_unused: let the decoder drop the non-reference frames the clip does not keep
            (False: decode every frame from the keyframe, the slower reference path).

    Returns:
        uint8 tensor ``T × H × W × 3`` (RGB).

    Raises:
        MediaError: no video stream, or no frame could be decoded.
    """
    return decode_clips(
        container, [start], num_frames, stride, short_side, skip_unused=skip_unused
    )[0]


def decode_clips(
    container: Any,
    starts: Sequence[float],
    num_frames: int,
    stride: int = 1,
    short_side: int | None = None,
    *,
    skip_unused: bool = True,
) -> list[torch.Tensor]:
    """Decode the clips starting at ``starts`` (seconds) in one pass over the video stream.

    Each clip is the first ``(num_frames - 1) * stride + 1`` frames (in presentation order)
    whose time is at least its start minus half a frame, one in ``stride`` kept,
    loop-padded to ``num_frames`` if the video ends first; a clip starting past the last
    frame takes the video's last ``(num_frames - 1) * stride + 1`` frames instead.

    How: seek to the keyframe at or before the earliest start, read the packets (cheap, no
    decoding) until every clip's frames are known from the packet timestamps, then decode
    those packets with the decoder told to drop the non-reference frames no clip keeps
    (``skip_frame = "NONREF"``: the B-frames between the keyframe and the clip and between
    the kept frames; nothing else depends on them). Only kept frames are converted to RGB
    and resized (libswscale, bilinear, one scaler reused). Frames are matched by timestamp,
    so a variable frame rate gives the same frames as decoding every frame. The path falls
    back to decoding every frame when packets lack timestamps or a kept frame does not come
    out of the decoder, and seeks again to the start of the stream when a seek lands after
    the earliest start (a broken index): never wrong frames, at worst a slower clip.

    Args:
        container: an open PyAV container (see :func:`open_media`).
        starts: clip starts in seconds from the start of the video stream.
        num_frames: frames per clip (T).
        stride: keep one source frame in ``stride``.
        short_side: resize on decode so that the short side has this many pixels.
        skip_unused: False decodes every frame from the keyframe (the reference path).

    Returns:
        One uint8 ``T × H × W × 3`` (RGB) tensor per start.

    Raises:
        MediaError: no video stream, or no frame could be decoded.
    """
    if not container.streams.video:
        raise MediaError("no video stream")
    if not starts:
        return []
    stream = container.streams.video[0]
    info = probe_media(container)
    clock = _Clock(stream, info.fps)
    span = (num_frames - 1) * stride + 1
    height, width = resized_shape(info.height, info.width, short_side)
    reformatter = VideoReformatter()

    def rgb(frame: Any) -> np.ndarray:
        return reformatter.reformat(
            frame, width=width, height=height, format="rgb24", interpolation="BILINEAR"
        ).to_ndarray()

    def run(starts: list[float]) -> tuple[list[list[np.ndarray] | None], float | None]:
        if skip_unused:
            found = _decode_skipping(container, clock, starts, span, stride, rgb)
            if found is not None:
                return found
        return _decode_every_frame(container, clock, starts, span, stride, rgb)

    try:
        kept, last = run([max(0.0, float(s)) for s in starts])
        past_end = [c for c, frames in enumerate(kept) if frames is None]
        end = last if last is not None else info.duration  # the last frame's time
        if past_end and end > 0:  # the last span frames (frame times at fps)
            tail = run([max(0.0, end - (span - 1) / clock.fps)])[0][0]
            for c in past_end:
                kept[c] = tail
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises FFmpegError, but also ValueError on bad data
        raise MediaError(f"video decode error: {exc}") from exc
    out = []
    for frames in kept:
        if not frames:  # None: no frame at all
            raise MediaError("no video frame decoded")
        if len(frames) < num_frames:
            frames = [frames[i % len(frames)] for i in range(num_frames)]
        out.append(torch.from_numpy(np.stack(frames[:num_frames])))
    return out


class _Clock:
    """A video stream's timestamps in seconds from its first frame, and its seeks."""

    def __init__(self, stream: Any, fps: float) -> None:
        self.stream = stream
        self.time_base = float(stream.time_base)
        self.origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        self.fps = fps if fps > 0 else 25.0
        self.tolerance = 0.5 / self.fps  # half a frame

    def seconds(self, pts: int) -> float:
        return pts * self.time_base - self.origin

    def seek(self, container: Any, seconds: float) -> None:
        """Seek to the keyframe at or before ``seconds`` (and flush the decoder)."""
        offset = int((self.origin + seconds) / self.time_base)
        container.seek(offset, stream=self.stream, backward=True, any_frame=False)

    def landed_late(self, first: float | None, target: float) -> bool:
        """A seek to ``target`` > 0 whose first frame is after it: the index is wrong."""
        return target > 0 and first is not None and first > target + self.tolerance


def _decode_skipping(
    container: Any,
    clock: _Clock,
    starts: list[float],
    span: int,
    stride: int,
    rgb: Callable[[Any], np.ndarray],
) -> tuple[list[list[np.ndarray] | None], float | None] | None:
    """The clips' frames (None: the clip starts after the last frame) and the last frame
    time read, decoding only what the clips need; None where this path cannot be sure."""
    packets = _read_packets(container, clock, starts, span)
    if packets is None:
        return None
    timeline = sorted(p.pts for p in packets if not p.is_discard)
    wanted_by_clip: list[list[int] | None] = []
    for start in starts:
        low = (clock.origin + start - clock.tolerance) / clock.time_base
        i = bisect.bisect_left(timeline, low)
        wanted_by_clip.append(timeline[i : i + span : stride] if i < len(timeline) else None)
    wanted = {pts for clip in wanted_by_clip for pts in clip or ()}
    decoded: dict[int, np.ndarray] = {}
    codec = clock.stream.codec_context
    try:
        for packet in packets:
            # NONREF: the decoder drops this packet's frame if no other frame refers to it.
            codec.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
            for frame in codec.decode(packet):
                if frame.pts in wanted and frame.pts not in decoded:
                    decoded[frame.pts] = rgb(frame)
            if len(decoded) == len(wanted):
                break
        else:
            codec.skip_frame = "DEFAULT"
            for frame in codec.decode(None):  # drain the frames the decoder still holds
                if frame.pts in wanted and frame.pts not in decoded:
                    decoded[frame.pts] = rgb(frame)
            codec.flush_buffers()
    finally:
        codec.skip_frame = "DEFAULT"
    if len(decoded) != len(wanted):  # a kept frame did not come out: decode every frame
        return None
    last = clock.seconds(timeline[-1]) if timeline else None
    kept = [None if clip is None else [decoded[pts] for pts in clip] for clip in wanted_by_clip]
    return kept, last


def _read_packets(
    container: Any, clock: _Clock, starts: list[float], span: int
) -> list[Any] | None:
    """The packets (decode order) from the keyframe before the first start to the last
    packet any clip needs; None if a packet has no timestamp.

    Every clip's frames are known once the current packet's decode time is past the
    ``span``-th frame time at or after the clip's start: later packets are presented later.
    """
    thresholds = [(clock.origin + s - clock.tolerance) / clock.time_base for s in starts]
    target = min(starts)
    for attempt in (target, 0.0):
        clock.seek(container, attempt)
        packets: list[Any] = []
        timeline: list[int] = []
        for packet in container.demux(clock.stream):
            if packet.size == 0:  # the end-of-stream marker
                continue
            if packet.pts is None or packet.dts is None:
                return None
            if not packets and clock.landed_late(clock.seconds(packet.pts), attempt):
                break  # the seek went past the first start: read from the stream's start
            packets.append(packet)
            if not packet.is_discard:  # a packet the demuxer marks discarded gives no frame
                bisect.insort(timeline, packet.pts)
            if all(_known(timeline, low, span, packet.dts) for low in thresholds):
                return packets
        else:
            return packets  # the video ended first
    return None


def _known(timeline: list[int], low: float, span: int, dts: int) -> bool:
    """Whether the ``span`` frames at or after ``low`` are all in ``timeline`` for good."""
    i = bisect.bisect_left(timeline, low)
    return len(timeline) - i >= span and dts >= timeline[i + span - 1]


def _decode_every_frame(
    container: Any,
    clock: _Clock,
    starts: list[float],
    span: int,
    stride: int,
    rgb: Callable[[Any], np.ndarray],
) -> tuple[list[list[np.ndarray] | None], float | None]:
    """The clips' frames (None: the clip starts after the last frame) and the last frame
    time decoded, decoding every frame from the keyframe before the first start.

    Frames are counted in presentation order from each start. A seek that lands after the
    first start is redone from the start of the stream.
    """
    target = min(starts)
    for attempt in (target, 0.0):
        clock.seek(container, attempt)
        taken = [0] * len(starts)
        kept: list[list[np.ndarray]] = [[] for _ in starts]
        last: float | None = None
        for frame in container.decode(clock.stream):
            t = clock.seconds(frame.pts) if frame.pts is not None else frame.time
            if last is None and clock.landed_late(t, attempt):
                break
            last = t if t is not None else last if last is not None else 0.0
            converted = None
            for c, start in enumerate(starts):
                if taken[c] >= span or (t is not None and t < start - clock.tolerance):
                    continue
                if taken[c] % stride == 0:
                    converted = rgb(frame) if converted is None else converted
                    kept[c].append(converted)
                taken[c] += 1
            if all(n >= span for n in taken):
                break
        else:
            return [k or None for k in kept], last
        if last is not None:  # stopped early with every clip complete
            return [k or None for k in kept], last
    return [None for _ in starts], None  # unreachable: the second attempt starts at 0


def clip_seconds(num_frames: int, stride: int, fps: float) -> float:
    """Duration in seconds covered by a clip of ``num_frames`` frames at ``stride``."""
    return ((num_frames - 1) * stride + 1) / fps if fps > 0 else 0.0


def clip_starts_uniform(duration: float, span: float, num_clips: int) -> list[float]:
    """``num_clips`` uniformly spaced clip starts in ``[0, duration - span]`` (test mode, §3.1)."""
    last = max(0.0, duration - span)
    if num_clips == 1:
        return [last / 2]
    return [last * i / (num_clips - 1) for i in range(num_clips)]
