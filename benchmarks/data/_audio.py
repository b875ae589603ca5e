"""Audio: the track extracted and resampled to 16 kHz mono with PyAV, and log-mel spectrograms.

The paper's audio input is a log-mel spectrogram of 100 temporal frames by 40 mel filters
(§3.1, "Input preprocessing"). With a 25 ms window (400 samples at 16 kHz) and a 10 ms hop
(160 samples), 100 frames cover ``400 + 99 * 160 = 16240`` samples (1.015 s).

Why a hand-written mel filterbank on ``torch.stft``: torchaudio cannot be loaded beside the
torch we pin, and librosa pulls in numba; the HTK mel formula and triangular filters are a
few lines. Tests check both against an independent NumPy implementation.
"""

from __future__ import annotations

import math
from typing import Any

import av
import numpy as np
import torch

from benchmarks.data._report import MediaError

__all__ = ["LogMelSpectrogram", "decode_audio_clip", "hz_to_mel", "mel_filterbank", "mel_to_hz"]


def hz_to_mel(hz: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK mel filters, ``n_freqs × n_mels`` (float32), peak 1, no area norm.

    Band ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``, with
    ``n_mels + 2`` points equally spaced on the mel scale between ``f_min`` and ``f_max``
    (default: Nyquist). ``n_freqs`` is ``n_fft // 2 + 1`` (the rfft bins).
    """
    if n_mels < 1 or n_freqs < 2:
        raise ValueError(
            f"Parameters `n_mels` and `n_freqs` should be >= 1 and >= 2. Found {n_mels} and "
            f"{n_freqs}."
        )
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"Parameters `f_min`, `f_max` should satisfy 0 <= f_min < f_max <= sample_rate / 2. "
            f"Found f_min={f_min}, f_max={f_max}, sample_rate={sample_rate}."
        )
    freqs = torch.linspace(0, sample_rate / 2, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(
        float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64
    )
    hz_points = mel_to_hz(mel_points)
    lower, center, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    f = freqs[:, None]
    rising = (f - lower) / (center - lower)
    falling = (upper - f) / (upper - center)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


class LogMelSpectrogram:
    """Waveform (16 kHz mono) → log-mel spectrogram ``1 × frames × n_mels`` (§3.1: 100 × 40).

    Power spectrogram of a periodic Hann window (``torch.stft``, no centering), HTK mel
    filters, then ``log(mel + eps)``. The output is cropped or loop-padded to
    ``num_frames`` frames.

    Args:
        sample_rate: 16000 in the paper's setting.
        n_fft: FFT size and window length (400 = 25 ms).
        hop_length: 160 (10 ms).
        n_mels: 40.
        num_frames: 100.
        f_min, f_max: filterbank range (default 0 to Nyquist).
        eps: added before the log.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 40,
        num_frames: int = 100,
        f_min: float = 0.0,
        f_max: float | None = None,
        eps: float = 1e-6,
    ) -> None:
        for name, value in [
            ("sample_rate", sample_rate),
            ("n_fft", n_fft),
            ("hop_length", hop_length),
            ("num_frames", num_frames),
        ]:
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Parameter `{name}` should be a positive int. Found {value!r}.")
        self.sample_rate = sample_rate
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.num_frames = num_frames
        self.eps = eps
        self.window = torch.hann_window(n_fft, periodic=True)
        self.filterbank = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate, f_min, f_max)

    @property
    def num_samples(self) -> int:
        """Samples needed for exactly ``num_frames`` frames: ``n_fft + (frames - 1) * hop``."""
        return self.n_fft + (self.num_frames - 1) * self.hop_length

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel of a 1-D waveform, shape ``1 × num_frames × n_mels`` (float32)."""
        if waveform.ndim != 1:
            raise ValueError(
                f"Parameter `waveform` should be 1-D (mono samples). Found shape "
                f"{tuple(waveform.shape)}; average the channels first."
            )
        x = waveform.to(torch.float32)
        if x.numel() < self.num_samples:  # loop-pad short audio
            x = x.repeat(math.ceil(self.num_samples / max(1, x.numel())))[: self.num_samples]
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=False,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (freqs, frames)
        mel = power.T @ self.filterbank  # (frames, mels)
        mel = mel[: self.num_frames]
        return torch.log(mel + self.eps).unsqueeze(0)

    def __repr__(self) -> str:
        return (
            f"LogMelSpectrogram(sample_rate={self.sample_rate}, n_fft={self.n_fft}, "
            f"hop_length={self.hop_length}, n_mels={self.n_mels}, num_frames={self.num_frames})"
        )


def decode_audio_clip(
    container: Any, start: float, num_samples: int, sample_rate: int = 16000
) -> torch.Tensor:
    """Decode ``num_samples`` samples from ``start`` seconds, resampled to mono ``sample_rate``.

    ``start`` is measured from the start of the video stream when there is one (so the audio
    clip is aligned with the video clip), else from the start of the audio stream. Audio
    ending early is loop-padded to ``num_samples``.

    Raises:
        MediaError: no audio stream, or no sample decoded.
    """
    start = max(0.0, start)
    audio, first = decode_audio_span(container, start, start, num_samples, sample_rate)
    offset = max(0, round((start - first) * sample_rate))
    clip = audio[offset : offset + num_samples]
    if clip.size == 0:  # the clip starts after the audio ends: take the tail
        clip = audio[-num_samples:]
    if clip.size < num_samples:
        clip = np.resize(clip, num_samples)  # np.resize repeats the data: loop padding
    return torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32))


def decode_audio_span(
    container: Any, first: float, last: float, num_samples: int, sample_rate: int
) -> tuple[np.ndarray, float]:
    """Mono ``sample_rate`` samples from ``first`` seconds until ``num_samples`` past ``last``
    (or the end of the stream), unpadded, and the time of the first sample.

    Times are measured as in :func:`decode_audio_clip` (from the start of the video stream
    when there is one). One seek and one sequential pass: the clips of a test video starting
    between ``first`` and ``last`` are all sliced from it.

    Raises:
        MediaError: no audio stream, or no sample decoded.
    """
    if not container.streams.audio:
        raise MediaError("no audio stream")
    stream = container.streams.audio[0]
    ref = container.streams.video[0] if container.streams.video else stream
    origin = float(ref.start_time * ref.time_base) if ref.start_time else 0.0
    target = origin + max(0.0, first)
    time_base = float(stream.time_base)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    have, needed = 0, 0
    try:
        container.seek(max(0, int(target / time_base)), stream=stream, backward=True)
        for frame in container.decode(stream):
            if first_time is None:
                first_time = frame.pts * time_base if frame.pts is not None else target
                needed = max(0, round((origin + last - first_time) * sample_rate)) + num_samples
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                have += chunk.size
            if have >= needed:
                break
        else:
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as exc:
        raise MediaError(f"audio decode error: {exc}") from exc
    if not chunks or first_time is None:
        raise MediaError("no audio decoded")
    return np.concatenate(chunks), first_time - origin
