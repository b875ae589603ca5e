"""The clip dataset every published format builds on: records → (inputs, target) samples.

Sample contract (docs/datasets.md):

- train mode: ``(inputs, target)``; test mode: ``(inputs, target, video_index)`` with
  ``test_clips × test_crops`` items per video (10 uniformly spaced clips, §3.1);
- ``inputs["rgb"]``: float32 ``3 × T × H × W``, normalized (``normalize="worker"``, the
  default), or the cropped, flipped uint8 frames ``T × H × W × 3`` (``normalize="device"``:
  normalize the batch after moving it, :class:`~benchmarks.data.FrameNormalizer`);
  ``inputs["audio"]``: float32
  ``1 × 100 × 40`` log-mel, aligned with the video clip (same center time);
  ``inputs["flow"]`` (opt-in): float32 ``2 × T × H × W`` precomputed optical flow of the
  same frames and crop as ``rgb``, in pixels divided by ``spec.flow_scale``;
- ``target``: an int class (single-label) or a float32 multi-hot vector (multi-label).

A sample whose file is missing, corrupt, without the audio track it needs, or silent is
returned as a :class:`SkippedSample`; use :func:`collate_clips` and a :class:`SkipReport`.
So is a segment that starts at or past the end of its (truncated) file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmarks.data._audio import decode_audio_clip
from benchmarks.data._flow import load_flow_clip, resize_flow
from benchmarks.data._report import MediaError, SkippedSample
from benchmarks.data._transforms import NORMALIZE_WHERE, ClipSpec, horizontal_flip, normalize
from benchmarks.data._video import (
    clip_seconds,
    clip_starts_uniform,
    decode_video_clip,
    open_media,
    probe_media,
    resized_shape,
)

__all__ = ["ALL_MODALITIES", "MODALITIES", "ClipDataset", "ClipRecord"]

#: The default modalities of a dataset.
MODALITIES = ("rgb", "audio")
#: Every modality a dataset can load (``"flow"`` needs records with ``flow_path``).
ALL_MODALITIES = ("rgb", "audio", "flow")


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
        flow_path: the video's precomputed optical flow (``.npy``, see ``_flow.py``), or None.
    """

    path: str
    target: int | tuple[int, ...]
    video_id: str
    start: float | None = None
    end: float | None = None
    flow_path: str | None = None


class ClipDataset(Dataset):
    """Decode clips of labelled videos into the sample contract above.

    Args:
        records: the labelled videos.
        mode: ``"train"`` (one random clip per video per epoch, scale jitter, random crop,
            flip) or ``"test"`` (``spec.test_clips`` uniform clips × ``spec.test_crops``
            crops per video, fixed).
        spec: clip sampling and transforms (default :meth:`ClipSpec.ablation`).
        modalities: which inputs to decode, among ``"rgb"``, ``"audio"`` and ``"flow"``
            (every record then needs a ``flow_path``).
        silence_threshold: an audio clip whose peak absolute amplitude (full scale 1.0) is
            below this is "silent" and the sample is skipped (1e-4 = -80 dBFS); None keeps it.
        on_error: ``"skip"`` returns a :class:`SkippedSample` for a bad file (the default;
            never raises in a worker), ``"raise"`` raises (for debugging).
        classes: class names, index = target (informational; formats fill it).
        num_classes: length of the multi-hot target of multi-label records (default:
            ``len(classes)``); required when a record's target is a tuple.
        normalize: where RGB is normalized: ``"worker"`` (float32 ``3 × T × H × W``
            samples) or ``"device"`` (uint8 ``T × H × W × 3`` samples, a quarter of the
            bytes; the training loop normalizes them on its device). The attribute may be
            changed after construction; :class:`~benchmarks.train._views.VideoViews` follows it.
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
        normalize: Literal["worker", "device"] = "worker",
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
        unknown = [m for m in modalities if m not in ALL_MODALITIES]
        if unknown or not modalities:
            raise ValueError(
                f"Parameter `modalities` should be a non-empty subset of {ALL_MODALITIES}. "
                f"Found {tuple(modalities)!r}."
            )
        if normalize not in NORMALIZE_WHERE:
            raise ValueError(
                f"Parameter `normalize` should be one of {NORMALIZE_WHERE}. Found {normalize!r}."
            )
        self.normalize = normalize
        self.records = list(records)
        if "flow" in modalities:
            lacking = [r.video_id for r in self.records if r.flow_path is None]
            if lacking:
                raise ValueError(
                    f"Parameter `modalities` asks for 'flow' but {len(lacking)} records have no "
                    f"flow_path (first: {lacking[0]!r}); set ClipRecord.flow_path, or use a "
                    "format that fills it (Kinetics: `flow_template`)."
                )
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
            # No frame at or after the segment's start (half a frame of tolerance, the
            # decoder's): without this check, the decoders' "start past the end: take the
            # tail" rule would return the file's last frames under the segment's label.
            half_frame = 0.5 / info.fps if info.fps > 0 else 0.0
            if info.duration > 0 and seg_start >= info.duration - half_frame:
                raise MediaError(
                    f"segment past end of file: the segment starts at {seg_start:.2f} s, the "
                    f"file lasts {info.duration:.2f} s (truncated download, or an already "
                    "trimmed file read as a full video)"
                )
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
            flow = None
            if "flow" in self.modalities:  # same start, frames, stride as the RGB clip
                if not container.streams.video:
                    raise MediaError("no video stream (flow needs the video's frame rate)")
                flow = load_flow_clip(
                    record.flow_path or "", start, fps, spec.num_frames, spec.frame_stride
                )
            frames = None
            if "rgb" in self.modalities:
                frames = decode_video_clip(
                    container, start, spec.num_frames, spec.frame_stride, short_side
                )
            if frames is not None or flow is not None:
                if frames is not None:
                    height, width = frames.shape[1], frames.shape[2]
                else:
                    height, width = resized_shape(info.height, info.width, short_side)
                top, left, flip = self._crop_box(height, width, crop)
                size = spec.crop_size
                if frames is not None:
                    frames = frames[:, top : top + size, left : left + size]
                    frames = horizontal_flip(frames) if flip else frames
                    inputs["rgb"] = self.rgb_output(frames)
                if flow is not None:
                    flow = resize_flow(flow, height, width)[:, top : top + size, left : left + size]
                    if flip:  # mirrored motion: x displacements change sign
                        flow = horizontal_flip(flow) * torch.tensor([-1.0, 1.0])
                    inputs["flow"] = flow.permute(3, 0, 1, 2).div(spec.flow_scale).contiguous()
            if audio is not None:
                inputs["audio"] = audio
        return inputs

    def rgb_output(self, frames: torch.Tensor) -> torch.Tensor:
        """A cropped uint8 ``T × H × W × 3`` clip as the sample holds it (``normalize``)."""
        if self.normalize == "device":
            return frames
        return normalize(frames, self.spec.mean, self.spec.std)

    def _crop_box(self, height: int, width: int, crop: int) -> tuple[int, int, bool]:
        """(top, left, flip) of the spatial crop, shared by every visual modality."""
        spec, size = self.spec, self.spec.crop_size
        if crop < 0:  # training: random crop (top, then left), then a coin for the flip
            top = int(torch.randint(0, height - size + 1, ()))
            left = int(torch.randint(0, width - size + 1, ()))
            return top, left, spec.flip and bool(torch.rand(()) < 0.5)
        if spec.test_crops == 1:
            return (height - size) // 2, (width - size) // 2, False
        if width >= height:
            return (height - size) // 2, [0, (width - size) // 2, width - size][crop], False
        return [0, (height - size) // 2, height - size][crop], (width - size) // 2, False

    def check_media(self, layout: str, sample: int = 64) -> None:
        """Check that the media files of (a sample of) the records are where the layout says.

        ``sample`` records evenly spaced over the list are checked (all if fewer). A partial
        download is fine (missing files are skipped and counted when loading); none found
        means the root or the path template is wrong.

        Args:
            layout: the expected layout, for the message (e.g. ``"<root>/{youtube_id}.mp4"``).
            sample: how many records to check.

        Raises:
            ValueError: no record has its file (or, with ``"flow"``, its flow file); the
                message names the first expected path, the layout and the fix.
        """
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise ValueError(f"Parameter `sample` should be a positive int. Found {sample!r}.")
        if not self.records:
            return
        picks = np.unique(np.linspace(0, len(self.records) - 1, min(sample, len(self.records))))
        chosen = [self.records[int(i)] for i in picks.round().astype(int)]
        kinds = [("media", lambda r: r.path)]
        if "flow" in self.modalities:
            kinds.append(("flow", lambda r: r.flow_path or ""))
        for kind, where in kinds:
            if not any(os.path.isfile(where(r)) for r in chosen):
                example = where(chosen[0])
                raise ValueError(
                    f"The data root does not match the expected layout: none of {len(chosen)} "
                    f"{kind} files checked exists, e.g. {example!r}. Expected layout: {layout}. "
                    f"Found beside it: {_listing(os.path.dirname(example))}. Fix the root "
                    "folder or the path template."
                )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(videos={len(self.records)}, mode={self.mode!r}, "
            f"modalities={self.modalities}, clip={self.spec.num_frames}x{self.spec.crop_size}"
            f"x{self.spec.crop_size}, normalize={self.normalize!r})"
        )


def _listing(folder: str, limit: int = 8) -> str:
    """A short listing of ``folder`` (or of its nearest existing parent) for error messages."""
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if not folder or not os.path.isdir(folder):
        return "nothing (no folder exists on that path)"
    names = sorted(os.listdir(folder))
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return f"{folder!r} holds {names[:limit]}{more}"
