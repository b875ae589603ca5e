"""Log-mel front end against independent NumPy/SciPy references; PyAV audio extraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from benchmarks.data import (
    LogMelSpectrogram,
    MediaError,
    decode_audio_clip,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    open_media,
)


def reference_filterbank(n_fft: int, n_mels: int, sr: int, f_min: float, f_max: float):
    """HTK triangles written independently, one bin at a time."""

    def mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    lo, hi = mel(f_min), mel(f_max)
    edges = [hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = np.zeros((n_fft // 2 + 1, n_mels))
    for k in range(n_fft // 2 + 1):
        f = k * sr / n_fft
        for m in range(n_mels):
            a, b, c = edges[m], edges[m + 1], edges[m + 2]
            if a <= f <= b:
                fb[k, m] = (f - a) / (b - a)
            elif b < f <= c:
                fb[k, m] = (c - f) / (c - b)
    return fb


def reference_log_mel(x: np.ndarray, sr=16000, n_fft=400, hop=160, n_mels=40, frames=100):
    """scipy.signal.stft (periodic Hann) → power → reference filterbank → log."""
    win = signal.get_window("hann", n_fft)  # periodic
    _, _, z = signal.stft(
        x,
        fs=sr,
        window=win,
        nperseg=n_fft,
        noverlap=n_fft - hop,
        boundary=None,
        padded=False,
        detrend=False,
    )
    z = z * win.sum()  # scipy scales by 1 / sum(window)
    power = np.abs(z) ** 2  # (freqs, frames)
    mel = power.T @ reference_filterbank(n_fft, n_mels, sr, 0.0, sr / 2)
    return np.log(mel[:frames] + 1e-6)


def test_mel_scale_roundtrip():
    f = torch.tensor([0.0, 440.0, 1000.0, 8000.0])
    assert torch.allclose(mel_to_hz(hz_to_mel(f)), f.double(), atol=1e-9)
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.1)  # HTK: 1 kHz ≈ 1000 mel


@pytest.mark.parametrize(
    ("n_fft", "n_mels", "sr", "f_min", "f_max"),
    [
        (400, 40, 16000, 0.0, 8000.0),
        (512, 64, 22050, 50.0, 9000.0),
    ],
)
def test_filterbank_matches_reference(n_fft, n_mels, sr, f_min, f_max):
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sr, f_min, f_max)
    ref = reference_filterbank(n_fft, n_mels, sr, f_min, f_max)
    assert fb.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(fb.numpy(), ref, atol=1e-6)
    assert (fb.sum(0) > 0).all()  # no empty band at these settings


def test_log_mel_matches_scipy_reference():
    rng = np.random.default_rng(0)
    t = np.arange(16240) / 16000
    x = (0.5 * np.sin(2 * np.pi * 700 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    lm = LogMelSpectrogram()
    out = lm(torch.from_numpy(x))
    assert out.shape == (1, 100, 40)
    assert lm.num_samples == 16240
    np.testing.assert_allclose(out[0].numpy(), reference_log_mel(x.astype(np.float64)), atol=2e-3)
    # the tone's band is the loudest
    peak_band = int(out[0].mean(0).argmax())
    edges = mel_to_hz(torch.linspace(0, float(hz_to_mel(8000.0)), 42))
    assert edges[peak_band] <= 700 <= edges[peak_band + 2]


def test_log_mel_loop_pads_short_audio_and_checks_shape():
    lm = LogMelSpectrogram()
    assert lm(torch.ones(1000)).shape == (1, 100, 40)
    with pytest.raises(ValueError, match="waveform"):
        lm(torch.zeros(2, 16240))
    with pytest.raises(ValueError, match="n_fft"):
        LogMelSpectrogram(n_fft=0)
    assert "n_mels=40" in repr(lm)


def test_decode_audio_resamples_to_16k_mono(media):
    with open_media(media.tone44k) as c:  # 44.1 kHz source
        wave = decode_audio_clip(c, 0.5, 16000, 16000)
    assert wave.shape == (16000,)
    assert wave.dtype == torch.float32
    spectrum = np.abs(np.fft.rfft(wave.numpy()))
    assert abs(int(spectrum.argmax()) - 440) <= 2  # 1 Hz bins at 16 kHz / 16000 samples
    assert 0.2 < float(wave.abs().max()) < 0.4  # the 0.3 amplitude tone


def test_decode_audio_past_end_and_missing_stream(media):
    with open_media(media.tone) as c:
        tail = decode_audio_clip(c, 1.9, 16000)  # only 0.1 s left: loop-padded
    assert tail.shape == (16000,)
    assert float(tail.abs().max()) > 0.1
    with open_media(media.no_audio) as c, pytest.raises(MediaError, match="no audio stream"):
        decode_audio_clip(c, 0.0, 100)


def test_decode_audio_is_time_aligned(tmp_path):
    """Segment k (0.25 s each) of the track is a 300 + 100 k Hz tone; seek and check."""
    import av

    sr = 16000
    t = np.arange(2 * sr) / sr
    freq = 300 + 100 * np.floor(t / 0.25)
    wave = (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / sr)).astype(np.float32)
    path = str(tmp_path / "steps.mp4")
    with av.open(path, "w") as c:
        stream = c.add_stream("aac", rate=sr, layout="mono")
        for i in range(0, wave.size, 1024):
            frame = av.AudioFrame.from_ndarray(
                wave[None, i : i + 1024], format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = sr, i
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    for k in (1, 4, 6):
        with open_media(path) as c:  # 0.15 s from the middle of segment k
            clip = decode_audio_clip(c, 0.25 * k + 0.05, 2400).numpy()
        spectrum = np.abs(np.fft.rfft(clip * np.hanning(clip.size)))
        peak_hz = spectrum.argmax() * sr / clip.size
        assert abs(peak_hz - (300 + 100 * k)) < 20, (k, peak_hz)
