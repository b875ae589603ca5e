"""Clip specification and the spatial transforms of §3.1 (following [43], CSN).

Training: short side scaled to a random size in ``train_short_side`` (scale jitter; done on
decode), random ``crop_size`` square crop, horizontal flip with probability 1/2, then
per-channel normalization. Testing: short side ``test_short_side``, a center crop (1 crop)
or three crops along the long side (the 3-crop variant, e.g. 256 × 256).

Crops and flips work on the decoder's uint8 frames. The normalization runs either in the
loader worker (:func:`normalize`) or, on a batch of uint8 frames already moved to the GPU,
on the device (:class:`FrameNormalizer`: 4× fewer bytes to collate, pin and copy); both
compute the same float32 operations in the same order, so they give equal values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.data._audio import LogMelSpectrogram

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "NORMALIZE_WHERE",
    "ClipSpec",
    "FrameNormalizer",
    "center_crop",
    "horizontal_flip",
    "normalize",
    "random_crop",
    "three_crop",
]

#: RGB mean and std in [0, 1] used by the common Kinetics video ResNets.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
#: Where RGB clips are normalized: in the loader ``"worker"`` (float32 samples) or on the
#: ``"device"`` after the copy (uint8 samples, :class:`FrameNormalizer`).
NORMALIZE_WHERE = ("worker", "device")


@dataclass(frozen=True)
class ClipSpec:
    """How clips are sampled and transformed.

    Attributes:
        num_frames: T; 16 for the ablations (§3.1), 32 for the CSN models (§4).
        frame_stride: keep one source frame in ``frame_stride`` (default 2: 16 frames at
            30 fps span about 1 s, the length of the 100-frame log-mel window).
        crop_size: square crop side (112 or 224; 256 for the 3-crop test variant).
        train_short_side: (min, max) short side for training scale jitter, inclusive.
        test_short_side: short side at test time.
        test_clips: uniformly spaced clips per video at test time (10, §3.1).
        test_crops: 1 (center crop) or 3 (left/center/right along the long side).
        flip: random horizontal flip at training time.
        mean, std: per-channel normalization of RGB values in [0, 1].
        log_mel: the audio front end (100 × 40 log-mel at 16 kHz by default).
        flow_scale: optical flow (pixels at the clip's resolution) is divided by this (20:
            the ±20 px bound of the two-stream literature maps to ±1; nothing is clipped).
    """

    num_frames: int = 16
    frame_stride: int = 2
    crop_size: int = 112
    train_short_side: tuple[int, int] = (128, 160)
    test_short_side: int = 128
    test_clips: int = 10
    test_crops: int = 1
    flip: bool = True
    mean: tuple[float, float, float] = KINETICS_MEAN
    std: tuple[float, float, float] = KINETICS_STD
    log_mel: LogMelSpectrogram = field(default_factory=LogMelSpectrogram, compare=False)
    flow_scale: float = 20.0

    def __post_init__(self) -> None:
        for name in ("num_frames", "frame_stride", "crop_size", "test_short_side", "test_clips"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Parameter `{name}` should be a positive int. Found {value!r}.")
        if not (isinstance(self.flow_scale, int | float) and self.flow_scale > 0):
            raise ValueError(
                f"Parameter `flow_scale` should be a positive number. Found {self.flow_scale!r}."
            )
        low, high = self.train_short_side
        if not low <= high or low < self.crop_size:
            raise ValueError(
                "Parameter `train_short_side` should be (min, max) with crop_size <= min <= max. "
                f"Found {self.train_short_side} with crop_size={self.crop_size}."
            )
        if self.test_short_side < self.crop_size:
            raise ValueError(
                f"Parameter `test_short_side` ({self.test_short_side}) should be >= "
                f"`crop_size` ({self.crop_size})."
            )
        if self.test_crops not in (1, 3):
            raise ValueError(f"Parameter `test_crops` should be 1 or 3. Found {self.test_crops}.")

    @classmethod
    def ablation(cls, **overrides: Any) -> ClipSpec:
        """16 × 112 × 112 clips, short side jittered in [128, 160] (§3.1 ablation scale)."""
        return cls(**overrides)

    @classmethod
    def csn(cls, **overrides: Any) -> ClipSpec:
        """32 × 224 × 224 clips, short side jittered in [256, 320] (§4, ip-CSN)."""
        base: dict[str, Any] = {
            "num_frames": 32,
            "crop_size": 224,
            "train_short_side": (256, 320),
            "test_short_side": 256,
        }
        base.update(overrides)
        return cls(**base)

    @classmethod
    def three_crop_256(cls, **overrides: Any) -> ClipSpec:
        """Test variant: 32 frames, short side 256, three 256 × 256 crops (Table 6 views)."""
        base: dict[str, Any] = {
            "num_frames": 32,
            "crop_size": 256,
            "train_short_side": (256, 320),
            "test_short_side": 256,
            "test_crops": 3,
        }
        base.update(overrides)
        return cls(**base)


def random_crop(
    clip: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random ``size × size`` crop of a ``T × H × W × C`` clip."""
    _, h, w, _ = clip.shape
    top = int(torch.randint(0, h - size + 1, (), generator=generator))
    left = int(torch.randint(0, w - size + 1, (), generator=generator))
    return clip[:, top : top + size, left : left + size]


def center_crop(clip: torch.Tensor, size: int) -> torch.Tensor:
    """Center ``size × size`` crop of a ``T × H × W × C`` clip."""
    _, h, w, _ = clip.shape
    top, left = (h - size) // 2, (w - size) // 2
    return clip[:, top : top + size, left : left + size]


def three_crop(clip: torch.Tensor, size: int, index: int) -> torch.Tensor:
    """Crop ``index`` (0, 1, 2: start, center, end of the long side) of a ``T×H×W×C`` clip."""
    _, h, w, _ = clip.shape
    if w >= h:
        top = (h - size) // 2
        left = [0, (w - size) // 2, w - size][index]
    else:
        left = (w - size) // 2
        top = [0, (h - size) // 2, h - size][index]
    return clip[:, top : top + size, left : left + size]


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror a ``T × H × W × C`` clip left-right."""
    return clip.flip(2)


def normalize(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``T × H × W × C`` → float32 ``C × T × H × W``, ``(x / 255 - mean) / std``."""
    x = clip.permute(3, 0, 1, 2).to(torch.float32).div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)
    return x.sub_(m).div_(s)


class FrameNormalizer:
    """Normalize uint8 frames where they are (the GPU after the host-to-device copy).

    ``(..., T, H, W, C)`` uint8 → ``(..., C, T, H, W)`` float32, ``(x / 255 - mean) / std``:
    the operations of :func:`normalize` in the same order, so a batch normalized here equals
    the batch of worker-normalized clips, bit for bit: the 255 is a device tensor too, since
    CUDA divides by a Python scalar as a multiplication by its reciprocal, not the CPU's true
    division. The constants are kept per device, so a call never copies from the host (a
    pageable copy would wait for the GPU).

    Args:
        mean, std: per-channel values of RGB in [0, 1] (``ClipSpec.mean`` / ``std``).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std) or not mean or min(std) <= 0:
            raise ValueError(
                f"Parameters `mean` and `std` should be per-channel values of the same length "
                f"with std > 0. Found mean={tuple(mean)}, std={tuple(std)}."
            )
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._on: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _constants(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._on:
            full = torch.tensor(255.0, dtype=torch.float32)
            m = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1, 1)
            s = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1, 1)
            self._on[device] = (full.to(device), m.to(device), s.to(device))
        return self._on[device]

    def __call__(self, frames: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        """Normalize ``frames`` (uint8, channels last) on their device.

        Args:
            frames: uint8 ``(..., T, H, W, C)``, e.g. a batch ``B × T × H × W × 3``.
            channels_last: return a 5-D batch in ``torch.channels_last_3d`` memory format
                (the layout the frames already have: no transposing copy); otherwise
                contiguous.

        Returns:
            float32 ``(..., C, T, H, W)``.
        """
        if frames.dtype != torch.uint8 or frames.ndim < 4 or frames.shape[-1] != len(self.mean):
            raise ValueError(
                f"FrameNormalizer expects uint8 frames (..., T, H, W, {len(self.mean)}). Found "
                f"{frames.dtype} {tuple(frames.shape)}; float clips are normalized already "
                "(dataset normalize='worker')."
            )
        x = frames.movedim(-1, -4)
        fmt = torch.channels_last_3d if channels_last and x.ndim == 5 else torch.contiguous_format
        x = x.to(dtype=torch.float32, memory_format=fmt)
        full, m, s = self._constants(x.device)
        return x.div_(full).sub_(m).div_(s)

    def __repr__(self) -> str:
        return f"FrameNormalizer(mean={self.mean}, std={self.std})"
