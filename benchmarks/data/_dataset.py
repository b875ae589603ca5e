"""The clip dataset every published format builds on: records → (inputs, target) samples.

Sample contract (docs/datasets.md):

- train mode: ``(inputs, target)``; test mode: ``(inputs, target, video_index)`` with
  ``test_clips × test_crops`` items per video (10 uniformly spaced clips, §3.1);
- ``inputs["rgb"]``: float32 ``3 × T × H × W``, normalized; ``inputs["audio"]``: float32
  ``1 × 100 × 40`` log-mel, aligned with the video clip (same center time);
- ``target``: an int class (single-label) or a float32 multi-hot vector (multi-label).

A sample whose file is missing, corrupt, without the audio track it needs, or silent is
returned as a :class:`SkippedSample`; use :func:`collate_clips` and a :class:`SkipReport`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from benchmarks.data._audio import decode_audio_clip
from benchmarks.data._report import MediaError, SkippedSample
from benchmarks.data._transforms import (
    ClipSpec,
    center_crop,
    horizontal_flip,
    normalize,
    random_crop,
    three_crop,
)
from benchmarks.data._video import (
    clip_seconds,
    clip_starts_uniform,
    decode_video_clip,
    open_media,
    probe_media,
)

__all__ = ["MODALITIES", "ClipDataset", "ClipRecord"]

MODALITIES = ("rgb", "audio")


@dataclass(frozen=True)
class ClipRecord:
    """One labelled video (or segment of a video).

    Attributes:
        path: the media file.
        target: int class (single-label), or the tuple of positive class indices
            (multi-label; the dataset turns it into a multi-hot vector when loading, so a
            2M-row AudioSet does not hold 2M dense vectors).
        video_id: identifier from the annotations (YouTube id, EPIC uid, ...).
        start, end: the labelled segment in seconds inside the file (None: the whole file).
    """

    path: str
    target: int | tuple[int, ...]
    video_id: str
    start: float | None = None
    end: float | None = None


class ClipDataset(Dataset):
    """Decode clips of labelled videos into the sample contract above.

    Args:
        records: the labelled videos.
        mode: ``"train"`` (one random clip per video per epoch, scale jitter, random crop,
            flip) or ``"test"`` (``spec.test_clips`` uniform clips × ``spec.test_crops``
            crops per video, fixed).
        spec: clip sampling and transforms (default :meth:`ClipSpec.ablation`).
        modalities: which inputs to decode, among ``"rgb"`` and ``"audio"``.
        silence_threshold: an audio clip whose peak absolute amplitude (full scale 1.0) is
            below this is "silent" and the sample is skipped (1e-4 = -80 dBFS); None keeps it.
        on_error: ``"skip"`` returns a :class:`SkippedSample` for a bad file (the default;
            never raises in a worker), ``"raise"`` raises (for debugging).
        classes: class names, index = target (informational; formats fill it).
        num_classes: length of the multi-hot target of multi-label records (default:
            ``len(classes)``); required when a record's target is a tuple.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        mode: Literal["train", "test"] = "train",
        spec: ClipSpec | None = None,
        modalities: Sequence[str] = MODALITIES,
        silence_threshold: float | None = 1e-4,
        on_error: Literal["skip", "raise"] = "skip",
        classes: Sequence[str] | None = None,
        num_classes: int | None = None,
    ) -> None:
        if mode not in ("train", "test"):
            raise ValueError(f"Parameter `mode` should be 'train' or 'test'. Found {mode!r}.")
        if on_error not in ("skip", "raise"):
            raise ValueError(
                f"Parameter `on_error` should be 'skip' or 'raise'. Found {on_error!r}."
            )
        if isinstance(modalities, str):
            raise TypeError(
                f"Parameter `modalities` should be a sequence of names, not the string "
                f"{modalities!r}; write ({modalities!r},)."
            )
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown or not modalities:
            raise ValueError(
                f"Parameter `modalities` should be a non-empty subset of {MODALITIES}. "
                f"Found {tuple(modalities)!r}."
            )
        self.records = list(records)
        self.mode = mode
        self.spec = spec if spec is not None else ClipSpec.ablation()
        self.modalities = tuple(modalities)
        self.silence_threshold = silence_threshold
        self.on_error = on_error
        self.classes = list(classes) if classes is not None else None
        if num_classes is None and self.classes is not None:
            num_classes = len(self.classes)
        if num_classes is None and any(isinstance(r.target, tuple) for r in self.records):
            raise ValueError(
                "Parameter `num_classes` is needed for multi-label records (tuple targets); "
                "pass num_classes= or classes=."
            )
        self.num_classes = num_classes

    @property
    def views_per_video(self) -> int:
        """Items per video: 1 in train mode, ``test_clips × test_crops`` in test mode."""
        return 1 if self.mode == "train" else self.spec.test_clips * self.spec.test_crops

    def __len__(self) -> int:
        return len(self.records) * self.views_per_video

    def targets(self) -> list[int | tuple[int, ...]]:
        """The target of every video as stored (int, or tuple of positive classes)."""
        return [r.target for r in self.records]

    def target_tensor(self, target: int | tuple[int, ...]) -> int | torch.Tensor:
        """The sample's target: the int itself, or a float32 multi-hot vector for a tuple."""
        if not isinstance(target, tuple):
            return target
        hot = torch.zeros(self.num_classes or 0)
        hot[list(target)] = 1.0
        return hot

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        video_index, view = divmod(index, self.views_per_video)
        record = self.records[video_index]
        try:
            inputs = self._load(record, view)
        except Exception as exc:  # a bad file must never crash a DataLoader worker
            if self.on_error == "raise":
                raise
            reason = str(exc) if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"
            fields = 2 if self.mode == "train" else 3
            return SkippedSample(index, record.path, reason, fields)
        target = self.target_tensor(record.target)
        if self.mode == "train":
            return inputs, target
        return inputs, target, video_index

    def _load(self, record: ClipRecord, view: int) -> dict[str, torch.Tensor]:
        spec = self.spec
        with open_media(record.path) as container:
            info = probe_media(container)
            if "rgb" in self.modalities and not container.streams.video:
                raise MediaError("no video stream")
            if "audio" in self.modalities and not info.has_audio:
                raise MediaError("no audio stream")
            seg_start = record.start or 0.0
            seg_end = record.end if record.end is not None else info.duration
            seg_end = min(seg_end, info.duration) if info.duration > 0 else seg_end
            duration = max(0.0, seg_end - seg_start)
            fps = info.fps if info.fps > 0 else 25.0
            span = clip_seconds(spec.num_frames, spec.frame_stride, fps)
            if self.mode == "train":
                offset = float(torch.rand(())) * max(0.0, duration - span)
                low, high = spec.train_short_side
                short_side = int(torch.randint(low, high + 1, ()))
                crop = -1
            else:
                clip, crop = divmod(view, spec.test_crops)
                offset = clip_starts_uniform(duration, span, spec.test_clips)[clip]
                short_side = spec.test_short_side
            start = seg_start + offset
            inputs: dict[str, torch.Tensor] = {}
            audio = None
            if "audio" in self.modalities:  # first: a silent clip is skipped before video work
                # The audio window (100 log-mel frames, §3.1) is centered on the video clip's
                # center; the paper gives the input shape, the alignment is our choice.
                n = spec.log_mel.num_samples
                center = start + min(span, duration if duration > 0 else span) / 2
                a_start = max(seg_start, center - n / spec.log_mel.sample_rate / 2)
                wave = decode_audio_clip(container, a_start, n, spec.log_mel.sample_rate)
                peak = float(wave.abs().max())
                if self.silence_threshold is not None and peak < self.silence_threshold:
                    raise MediaError(f"silent audio: peak {peak:.2e} < {self.silence_threshold}")
                audio = spec.log_mel(wave)
            if "rgb" in self.modalities:
                frames = decode_video_clip(
                    container, start, spec.num_frames, spec.frame_stride, short_side
                )
                inputs["rgb"] = self._spatial(frames, crop)
            if audio is not None:
                inputs["audio"] = audio
        return inputs

    def _spatial(self, frames: torch.Tensor, crop: int) -> torch.Tensor:
        spec = self.spec
        if crop < 0:  # training
            frames = random_crop(frames, spec.crop_size)
            if spec.flip and bool(torch.rand(()) < 0.5):
                frames = horizontal_flip(frames)
        elif spec.test_crops == 1:
            frames = center_crop(frames, spec.crop_size)
        else:
            frames = three_crop(frames, spec.crop_size, crop)
        return normalize(frames, spec.mean, spec.std)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(videos={len(self.records)}, mode={self.mode!r}, "
            f"modalities={self.modalities}, clip={self.spec.num_frames}x{self.spec.crop_size}"
            f"x{self.spec.crop_size})"
        )
