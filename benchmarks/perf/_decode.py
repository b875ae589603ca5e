"""Ways to decode a training clip with PyAV, and their cost per CPU core (issue 15, point 5).

Each variant decodes one clip of a file (opening it, as a DataLoader worker does per clip):
16 frames at temporal stride 2 (31 source frames), the short side resized to 256 (the
paper's clips, cropped to 224 afterwards) or to 128 (the ablation's, cropped to 112). The
variants:

- ``today``: the decoder before issue 15 (kept here verbatim as the baseline): seek to the
  keyframe at or before the start, decode every frame from there, convert the kept frames
  to RGB while resizing (libswscale, one scaler reused).
- ``no seek``: the same from the first frame of the file (what the seek saves).
- ``resize after``: convert at full size, then resize with ``torch`` (bilinear).
- ``reformat per frame``: ``frame.to_ndarray(width=, height=, format="rgb24")``, i.e. a new
  scaler per frame.
- ``threads``: today's path with PyAV's threading (``thread_type = "AUTO"``, one thread per
  core); per CPU-second it shows what threads cost, not the shorter wall time.
- ``skip``: the new default, :func:`benchmarks.data.decode_video_clip`: the decoder drops
  the non-reference frames the clip does not keep.
- ``skip + threads``: both.

The media are generated with PyAV (libx264, CRF 23, preset medium, B-frames as x264's
defaults, a fixed keyframe interval: 250 frames is x264's default, about 8 s at 30 fps; 60
frames is 2 s), a textured scene panning with a moving block and sensor noise, so that the
bit rate is that of web video (about 0.5-2 Mbit/s), not of a flat test pattern.

The rates are clips per CPU-second of the whole process (``time.process_time``, every
thread), i.e. clips/s per core when each DataLoader worker has a core, which is how a
16-core GPU host runs. Variants are timed round-robin in one run and the median per-round
rate is compared to ``today``'s, so machine load moves all of them alike.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import VideoReformatter

from benchmarks.data import MediaError, decode_video_clip, open_media, probe_media, resized_shape
from benchmarks.data._synthetic import mux_tone

__all__ = [
    "SHAPES",
    "VARIANTS",
    "ClipShape",
    "Comparison",
    "clip_starts",
    "compare",
    "decode_today",
    "write_web_video",
]


@dataclass(frozen=True)
class ClipShape:
    """A clip to decode: ``num_frames`` frames every ``stride``, short side, crop side."""

    num_frames: int
    stride: int
    short_side: int
    crop: int

    @property
    def label(self) -> str:
        return f"{self.num_frames}x{self.crop} (stride {self.stride}, short side {self.short_side})"


SHAPES = {
    "paper": ClipShape(16, 2, 256, 224),
    "ablation": ClipShape(16, 2, 128, 112),
}


def write_web_video(
    path: str | os.PathLike[str],
    size: tuple[int, int] = (340, 256),
    seconds: float = 10.0,
    fps: int = 30,
    gop: int = 250,
    crf: int = 23,
    seed: int = 0,
    sample_rate: int | None = None,
) -> str:
    """Write an H.264 mp4 whose bit rate and frame types are those of web video.

    Args:
        path: output file. size: (width, height), even numbers. seconds, fps: length, rate.
        gop: keyframe interval in frames (scene-cut keyframes are off, so it is exact).
        crf: x264 constant rate factor (23 is x264's and FFmpeg's default). seed: content.
        sample_rate: add a mono AAC track at this rate (a tone plus noise); None: no audio.

    Returns:
        The path, as a string.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    width, height = size
    rng = np.random.default_rng(seed)
    # A smooth random texture twice the frame size, panned by the camera.
    coarse = rng.uniform(0, 255, (2 * height // 16 + 2, 2 * width // 16 + 2, 3))
    texture = np.kron(coarse, np.ones((16, 16, 1)))
    texture += rng.normal(0, 12, texture.shape)  # fine detail
    n = max(1, round(seconds * fps))
    with av.open(path, "w") as container:
        stream = container.add_stream(
            "libx264",
            rate=fps,
            options={"crf": str(crf), "preset": "medium", "x264-params": "scenecut=0"},
        )
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        audio = None
        if sample_rate is not None:  # every stream is added before the first packet
            audio = container.add_stream("aac", rate=sample_rate, layout="mono")
        for i in range(n):
            dx = int(width * 0.5 * (1 + np.sin(2 * np.pi * i / (4 * fps)))) // 2
            dy = int(height * 0.5 * (1 + np.cos(2 * np.pi * i / (6 * fps)))) // 2
            img = texture[dy : dy + height, dx : dx + width].copy()
            x = int((width - 48) * (i % (2 * fps)) / (2 * fps))
            img[height // 3 : height // 3 + 48, x : x + 48] = (200, 40, 40)
            img += rng.normal(0, 2, img.shape)  # sensor noise
            frame = av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            mux_tone(container, audio, seconds, rng)
    return path


def _decode_today(
    container: Any,
    start: float,
    num_frames: int,
    stride: int,
    short_side: int | None,
    seek: bool = True,
    convert: str = "reused",
) -> torch.Tensor:
    """``decode_video_clip`` before issue 15 (with ``seek``/``convert`` switches)."""
    stream = container.streams.video[0]
    info = probe_media(container)
    time_base = float(stream.time_base)
    origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
    tolerance = 0.5 / info.fps
    span = (num_frames - 1) * stride + 1
    height, width = resized_shape(info.height, info.width, short_side)
    reformatter = VideoReformatter()

    def rgb(frame: Any) -> np.ndarray:
        if convert == "reused":
            return reformatter.reformat(
                frame, width=width, height=height, format="rgb24", interpolation="BILINEAR"
            ).to_ndarray()
        if convert == "per frame":
            return frame.to_ndarray(
                width=width, height=height, format="rgb24", interpolation="BILINEAR"
            )
        full = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)[None]
        small = F.interpolate(full.float(), (height, width), mode="bilinear", antialias=True)
        return small[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()

    def collect(seek_to: float) -> list[np.ndarray]:
        if seek:
            container.seek(int((origin + seek_to) / time_base), stream=stream, backward=True)
        else:
            container.seek(0, stream=stream, backward=True)
        kept: list[np.ndarray] = []
        taken = 0
        for frame in container.decode(stream):
            t = (frame.pts * time_base - origin) if frame.pts is not None else frame.time
            if t is not None and t < seek_to - tolerance:
                continue
            if taken % stride == 0:
                kept.append(rgb(frame))
            taken += 1
            if taken >= span:
                break
        return kept

    frames = collect(max(0.0, start))
    if not frames and start > 0:
        frames = collect(max(0.0, info.duration - span / info.fps))
    if not frames:
        raise MediaError("no video frame decoded")
    if len(frames) < num_frames:
        frames = [frames[i % len(frames)] for i in range(num_frames)]
    return torch.from_numpy(np.stack(frames[:num_frames]))


def decode_today(
    container: Any, start: float, num_frames: int, stride: int, short_side: int | None
) -> torch.Tensor:
    """The clip as the decoder before issue 15 returned it (the baseline)."""
    return _decode_today(container, start, num_frames, stride, short_side)


Decoder = Callable[[Any, float, int, int, int], torch.Tensor]


def _threaded(decoder: Decoder) -> Decoder:
    def run(container: Any, *args: Any) -> torch.Tensor:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = 0  # FFmpeg's choice: one per core
        return decoder(container, *args)

    return run


def _skip(container: Any, start: float, t: int, stride: int, short: int) -> torch.Tensor:
    return decode_video_clip(container, start, t, stride, short)


VARIANTS: dict[str, Decoder] = {
    "today": decode_today,
    "no seek": lambda c, *a: _decode_today(c, *a, seek=False),
    "resize after": lambda c, *a: _decode_today(c, *a, convert="after"),
    "reformat per frame": lambda c, *a: _decode_today(c, *a, convert="per frame"),
    "threads": _threaded(decode_today),
    "skip": _skip,
    "skip + threads": _threaded(_skip),
}


def clip_starts(
    duration: float, shape: ClipShape, fps: float, n: int, seed: int = 0
) -> list[float]:
    """``n`` random clip starts in ``[0, duration - clip]``, as training samples them."""
    span = ((shape.num_frames - 1) * shape.stride + 1) / fps
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.uniform(0, max(0.0, duration - span), n)]


def decode_clips_with(
    decoder: Decoder, path: str, starts: Sequence[float], shape: ClipShape
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to decode one clip per start, opening the file each time."""
    cpu, wall = time.process_time(), time.perf_counter()
    for start in starts:
        with open_media(path) as container:
            decoder(container, start, shape.num_frames, shape.stride, shape.short_side)
    return time.process_time() - cpu, time.perf_counter() - wall


@dataclass(frozen=True)
class Comparison:
    """Median clips per CPU-second (= per core) and per wall second of each variant.

    Attributes:
        per_core: variant -> median clips per CPU-second over the rounds.
        per_wall: variant -> median clips per wall second.
        diff: variant -> (largest, mean) absolute pixel difference to ``today``'s clips
            ((0, 0.0): the same clips).
    """

    per_core: dict[str, float]
    per_wall: dict[str, float]
    diff: dict[str, tuple[int, float]]

    def ratios(self, base: str = "today") -> dict[str, float]:
        """Each variant's clips per core divided by ``base``'s."""
        return {k: v / self.per_core[base] for k, v in self.per_core.items()}


def pixel_difference(
    decoder: Decoder, path: str, starts: Sequence[float], shape: ClipShape
) -> tuple[int, float]:
    """(largest, mean) absolute pixel difference between ``decoder``'s clips and ``today``'s."""
    worst, total = 0, 0.0
    for start in starts:
        with open_media(path) as c:
            a = decode_today(c, start, shape.num_frames, shape.stride, shape.short_side)
        with open_media(path) as c:
            b = decoder(c, start, shape.num_frames, shape.stride, shape.short_side)
        if a.shape != b.shape:
            raise AssertionError(f"clip shape {tuple(b.shape)} != today's {tuple(a.shape)}")
        diff = (a.int() - b.int()).abs()
        worst, total = max(worst, int(diff.max())), total + float(diff.float().mean())
    return worst, total / max(1, len(starts))


def compare(
    path: str,
    shape: ClipShape,
    variants: Sequence[str] = tuple(VARIANTS),
    clips: int = 8,
    rounds: int = 3,
    seed: int = 0,
) -> Comparison:
    """Time every variant on the same ``clips`` random starts, round-robin, ``rounds`` times.

    Raises:
        ValueError: a variant name that is not in :data:`VARIANTS`.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(
            f"Parameter `variants` should name entries of VARIANTS. Found {unknown}; "
            f"choose from {list(VARIANTS)}."
        )
    with open_media(path) as c:
        info = probe_media(c)
    starts = clip_starts(info.duration, shape, info.fps, clips, seed)
    diff = {v: pixel_difference(VARIANTS[v], path, starts[:2], shape) for v in variants}
    core: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for v in order:
            cpu, seconds = decode_clips_with(VARIANTS[v], path, starts, shape)
            core[v].append(len(starts) / max(cpu, 1e-9))
            wall[v].append(len(starts) / max(seconds, 1e-9))
    return Comparison(
        {v: statistics.median(x) for v, x in core.items()},
        {v: statistics.median(x) for v, x in wall.items()},
        diff,
    )


def describe(path: str) -> str:
    """``WxH, N frames at F fps, B kbit/s, keyframes every K frames, B-frames yes/no``."""
    with av.open(path) as c:
        s = c.streams.video[0]
        keys, n, size = [], 0, 0
        for p in c.demux(s):
            if p.size:
                keys += [n] if p.is_keyframe else []
                n += 1
                size += p.size
        seconds = float(s.duration * s.time_base) if s.duration else n / float(s.average_rate)
        gop = keys[1] - keys[0] if len(keys) > 1 else n
        rate = Fraction(s.average_rate or 0)
        b = "yes" if s.codec_context.has_b_frames else "no"
        return (
            f"{s.codec_context.width}x{s.codec_context.height}, {n} frames at {float(rate):g} "
            f"fps, {8 * size / seconds / 1000:.0f} kbit/s, keyframe every {gop} frames, "
            f"B-frames {b}"
        )
