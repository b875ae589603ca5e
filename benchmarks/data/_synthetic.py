"""Tiny generated media files (PyAV encoders) for tests, docs examples and the benchmark."""

from __future__ import annotations

import os
from typing import Any, Literal

import av
import numpy as np

__all__ = ["write_test_video"]


def write_test_video(
    path: str | os.PathLike[str],
    seconds: float = 2.0,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    audio: Literal["tone", "silent", "none"] = "tone",
    sample_rate: int = 16000,
    video_codec: str = "mpeg4",
    audio_codec: str = "aac",
    seed: int = 0,
    gop: int | None = None,
) -> str:
    """Write an mp4 with a moving pattern and (optionally) a mono audio track.

    The top-left 16 × 16 block of frame ``i`` is gray ``(5 * i) % 256``, so tests can tell
    which frame was decoded.

    Args:
        path: output file (parent folders are created).
        seconds: duration. fps: frame rate. size: (width, height), even numbers.
        audio: ``"tone"`` (a 440 Hz tone plus a little noise), ``"silent"`` (all zeros) or
            ``"none"`` (no audio stream).
        sample_rate: audio sample rate of the file (the loader resamples to 16 kHz).
        video_codec, audio_codec: PyAV encoder names (mpeg4 / libx264, aac / mp2).
        seed: seeds the pattern and the noise.
        gop: keyframe interval in frames (None: the encoder's default, 250 for libx264).

    Returns:
        The path, as a string.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    width, height = size
    rng = np.random.default_rng(seed)
    n_frames = max(1, round(seconds * fps))
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(path, "w") as container:
        vstream = container.add_stream(video_codec, rate=fps)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.bit_rate = 4_000_000  # near-lossless at these sizes: frame markers stay exact
        if gop is not None:
            vstream.codec_context.gop_size = gop
        astream = None
        if audio != "none":
            astream = container.add_stream(audio_codec, rate=sample_rate, layout="mono")
        for i in range(n_frames):
            img = np.stack(
                [(xx * 4 + i * 8) % 256, (yy * 4 + i * 3) % 256, np.full_like(xx, 128)],
                axis=-1,
            ).astype(np.uint8)
            img[:16, :16] = (5 * i) % 256  # frame index marker (gray, survives chroma loss)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if astream is not None:
            mux_tone(container, astream, seconds, rng, silent=audio == "silent")
    return path


def mux_tone(
    container: Any, stream: Any, seconds: float, rng: np.random.Generator, silent: bool = False
) -> None:
    """Encode ``seconds`` of a 440 Hz tone plus a little noise (or zeros) into the mono audio
    ``stream`` of ``container`` (at the stream's rate), after the video frames."""
    sample_rate = stream.rate
    n = round(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(n)
    if silent:
        wave = np.zeros(n)
    wave = wave.astype(np.float32)
    for s in range(0, n, 1024):
        frame = av.AudioFrame.from_ndarray(wave[None, s : s + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts = sample_rate, s
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
