"""Video decoding with PyAV: open, probe, seek to a clip, decode T frames at a stride.

Frames are resized while they are converted to RGB (libswscale, bilinear), so the
full-resolution RGB frame is never materialized; only the frames the clip keeps are
converted. One ``VideoReformatter`` serves a whole clip: ``VideoFrame.reformat`` builds a
new scaler context per frame, which measured about 7 ms per frame against 0.4 ms reused
(340 × 256 → 171 × 128), i.e. it dominated the conversion cost.

Errors are raised as :class:`MediaError` with a reason; the dataset adds the path.
"""

from __future__ import annotations

import os
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
) -> torch.Tensor:
    """Decode ``num_frames`` frames every ``stride`` frames from ``start`` seconds.

    The clip covers ``(num_frames - 1) * stride + 1`` source frames. If the video ends
    before that, the frames that were decoded are repeated in a loop (frame ``i`` of the
    clip is kept frame ``i % kept``), so a clip longer than the video still has
    ``num_frames`` frames.

    Args:
        container: an open PyAV container (see :func:`open_media`).
        start: clip start in seconds from the start of the video stream.
        num_frames: frames in the clip (T).
        stride: keep one source frame in ``stride``.
        short_side: resize on decode so that the short side has this many pixels.

    Returns:
        uint8 tensor ``T × H × W × 3`` (RGB).

    Raises:
        MediaError: no video stream, or no frame could be decoded.
    """
    if not container.streams.video:
        raise MediaError("no video stream")
    stream = container.streams.video[0]
    info = probe_media(container)
    time_base = float(stream.time_base)
    origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    tolerance = 0.5 / info.fps
    span = (num_frames - 1) * stride + 1
    height, width = resized_shape(info.height, info.width, short_side)

    reformatter = VideoReformatter()

    def collect(seek_to: float) -> list[np.ndarray]:
        # Seek lands on the keyframe at or before the target; frames before it are dropped.
        container.seek(int((origin + seek_to) / time_base), stream=stream, backward=True)
        kept: list[np.ndarray] = []
        taken = 0
        for frame in container.decode(stream):
            t = (frame.pts * time_base - origin) if frame.pts is not None else frame.time
            if t is not None and t < seek_to - tolerance:
                continue
            if taken % stride == 0:
                rgb = reformatter.reformat(
                    frame, width=width, height=height, format="rgb24", interpolation="BILINEAR"
                )
                kept.append(rgb.to_ndarray())
            taken += 1
            if taken >= span:
                break
        return kept

    try:
        frames = collect(max(0.0, start))
        if not frames and start > 0:  # the start was past the last frame: take the tail
            frames = collect(max(0.0, info.duration - span / info.fps))
    except av.FFmpegError as exc:
        raise MediaError(f"video decode error: {exc}") from exc
    if not frames:
        raise MediaError("no video frame decoded")
    if len(frames) < num_frames:
        frames = [frames[i % len(frames)] for i in range(num_frames)]
    return torch.from_numpy(np.stack(frames[:num_frames]))


def clip_seconds(num_frames: int, stride: int, fps: float) -> float:
    """Duration in seconds covered by a clip of ``num_frames`` frames at ``stride``."""
    return ((num_frames - 1) * stride + 1) / fps if fps > 0 else 0.0


def clip_starts_uniform(duration: float, span: float, num_clips: int) -> list[float]:
    """``num_clips`` uniformly spaced clip starts in ``[0, duration - span]`` (test mode, §3.1)."""
    last = max(0.0, duration - span)
    if num_clips == 1:
        return [last / 2]
    return [last * i / (num_clips - 1) for i in range(num_clips)]
