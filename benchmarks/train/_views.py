"""Test-time views of a video decoded in ONE pass (§3.1: 10 uniform clips, averaged).

``ClipDataset`` in test mode yields one item per (video, clip, crop) and decodes each item
on its own, i.e. opens and seeks the file ``test_clips × test_crops`` times. The
:class:`VideoViews` dataset yields one item per video: it opens the file once, decodes the
video stream once, decoding and converting only the frames some clip needs,
decodes one audio span covering every clip's window, and reads each optical-flow file
(Table 4) once, every clip's frames in one read of the memory-mapped array; it returns every
view stacked, ``inputs[m]: (views, ...)``. Clip starts, frame windows, crops and
normalization are the same as ``ClipDataset``'s test mode (tested against it); with the
dataset's ``normalize="device"`` the RGB views are uint8 ``(views, T, H, W, 3)``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from benchmarks.data import (
    ClipDataset,
    MediaError,
    SkippedSample,
    center_crop,
    clip_frame_indices,
    clip_seconds,
    clip_starts_uniform,
    decode_audio_span,
    open_flow,
    open_media,
    probe_media,
    resize_flow,
    resized_shape,
    three_crop,
)
from benchmarks.data._video import decode_clips

__all__ = ["VideoViews", "decode_clips_once", "read_flow_clips"]


def decode_clips_once(
    container: Any, starts: list[float], num_frames: int, stride: int, short_side: int
) -> list[torch.Tensor]:
    """Decode the clips starting at ``starts`` (seconds) in one pass over the video.

    Each clip follows :func:`benchmarks.data.decode_video_clip`: frames from ``start``
    (half a frame of tolerance), one in ``stride``, loop-padded to ``num_frames`` if the
    video ends; a clip starting past the last frame takes the video's tail. The decoder
    drops the non-reference frames no clip keeps (see ``benchmarks.data._video.decode_clips``).

    Returns:
        One uint8 ``T × H × W × 3`` tensor per start.
    """
    return decode_clips(container, starts, num_frames, stride, short_side)


def read_flow_clips(
    path: str | os.PathLike[str], starts: list[float], fps: float, num_frames: int, stride: int
) -> list[torch.Tensor]:
    """Read the flow clips starting at ``starts`` (seconds) from one ``(N, 2, H, W)`` file.

    The file is opened (memory-mapped) once and the frames every clip uses are read in one
    gather; each clip's frames follow :func:`benchmarks.data.clip_frame_indices`, as
    :func:`benchmarks.data.load_flow_clip` does for one clip.

    Returns:
        One float32 ``T × H × W × 2`` tensor per start (pixels of the stored grid; a
        permuted view of a ``T × 2 × H × W`` block, as in the file).

    Raises:
        MediaError: missing or unreadable file, or an array that is not ``(N, 2, H, W)``
            floating point.
    """
    flow = open_flow(path)
    clips = [clip_frame_indices(s, fps, num_frames, stride, flow.shape[0]) for s in starts]
    used = sorted({i for clip in clips for i in clip})
    where = {frame: k for k, frame in enumerate(used)}
    # One read of the frames in file order; torch converts float16 faster than numpy. The
    # clips stay (T, 2, H, W) in memory (no transposing copy) and are returned as
    # T × H × W × 2 views of it, the layout resize_flow and the crops take.
    frames = torch.from_numpy(np.ascontiguousarray(flow[np.asarray(used)])).float()
    return [frames[[where[i] for i in clip]].permute(0, 2, 3, 1) for clip in clips]


class VideoViews(Dataset):
    """Every test view of each video of a test-mode :class:`ClipDataset`, decoded once.

    Args:
        dataset: a ``ClipDataset`` (any published format) in test mode.

    Items are ``(inputs, target, video_index)`` with ``inputs[m]`` of shape
    ``(test_clips × test_crops, ...)``, or a :class:`SkippedSample` (3 fields) for a bad
    file; use ``benchmarks.data.collate_clips``.
    """

    def __init__(self, dataset: ClipDataset) -> None:
        if not isinstance(dataset, ClipDataset):
            raise TypeError(
                f"Parameter `dataset` should be a ClipDataset. Found {type(dataset).__name__}."
            )
        self.dataset = dataset
        self.spec = dataset.spec

    @property
    def views_per_video(self) -> int:
        """``test_clips × test_crops``."""
        return self.spec.test_clips * self.spec.test_crops

    def __len__(self) -> int:
        return len(self.dataset.records)

    def __getitem__(self, index: int) -> Any:
        record = self.dataset.records[index]
        try:
            inputs = self._load(record)
        except Exception as exc:  # never crash a DataLoader worker on a bad file
            if self.dataset.on_error == "raise":
                raise
            reason = str(exc) if isinstance(exc, MediaError) else f"{type(exc).__name__}: {exc}"
            return SkippedSample(index, record.path, reason, 3)
        return inputs, self.dataset.target_tensor(record.target), index

    def _load(self, record: Any) -> dict[str, torch.Tensor]:
        spec, mods = self.spec, self.dataset.modalities
        with open_media(record.path) as container:
            info = probe_media(container)
            if "rgb" in mods and not container.streams.video:
                raise MediaError("no video stream")
            if "audio" in mods and not info.has_audio:
                raise MediaError("no audio stream")
            if "flow" in mods and not container.streams.video:
                raise MediaError("no video stream (flow needs the video's frame rate)")
            seg_start = record.start or 0.0
            seg_end = record.end if record.end is not None else info.duration
            seg_end = min(seg_end, info.duration) if info.duration > 0 else seg_end
            duration = max(0.0, seg_end - seg_start)
            fps = info.fps if info.fps > 0 else 25.0
            span = clip_seconds(spec.num_frames, spec.frame_stride, fps)
            offsets = clip_starts_uniform(duration, span, spec.test_clips)
            starts = [seg_start + o for o in offsets]
            inputs: dict[str, torch.Tensor] = {}
            if "audio" in mods:
                inputs["audio"] = self._audio(container, starts, span, duration, seg_start)
            if "flow" in mods:  # before the RGB decode: a missing flow file costs nothing
                # The RGB clips' frames, resized grid and crops (test mode: no flip).
                clips = read_flow_clips(
                    record.flow_path or "", starts, fps, spec.num_frames, spec.frame_stride
                )
                height, width = resized_shape(info.height, info.width, spec.test_short_side)
                size = spec.crop_size
                flow = torch.empty(len(clips) * spec.test_crops, 2, spec.num_frames, size, size)
                for c, clip in enumerate(clips):
                    clip = resize_flow(clip, height, width)
                    for crop in range(spec.test_crops):
                        if spec.test_crops == 1:
                            field = center_crop(clip, size)
                        else:
                            field = three_crop(clip, size, crop)
                        view = flow[c * spec.test_crops + crop]
                        torch.div(field.permute(3, 0, 1, 2), spec.flow_scale, out=view)
                inputs["flow"] = flow
            if "rgb" in mods:
                clips = decode_clips_once(
                    container, starts, spec.num_frames, spec.frame_stride, spec.test_short_side
                )
                views = []
                for clip in clips:
                    for crop in range(spec.test_crops):
                        if spec.test_crops == 1:
                            frames = center_crop(clip, spec.crop_size)
                        else:
                            frames = three_crop(clip, spec.crop_size, crop)
                        views.append(self.dataset.rgb_output(frames))
                inputs["rgb"] = torch.stack(views)
        return {m: inputs[m] for m in mods}

    def _audio(
        self, container: Any, starts: list[float], span: float, duration: float, seg_start: float
    ) -> torch.Tensor:
        spec = self.spec
        n = spec.log_mel.num_samples
        rate = spec.log_mel.sample_rate
        windows = []
        for start in starts:  # the window of ClipDataset: centered on the video clip's center
            center = start + min(span, duration if duration > 0 else span) / 2
            windows.append(max(seg_start, center - n / rate / 2))
        # One decode from the first window to the end of the last; each window is then cut and
        # padded by decode_audio_clip's rules (tail if past the end, loop-pad if short).
        audio, first_time = decode_audio_span(container, min(windows), max(windows), n, rate)
        peak = float(np.abs(audio).max())
        threshold = self.dataset.silence_threshold
        if threshold is not None and peak < threshold:
            raise MediaError(f"silent audio: peak {peak:.2e} < {threshold}")
        mels = []
        for w in windows:
            offset = max(0, round((w - first_time) * rate))
            clip = audio[offset : offset + n]
            if clip.size == 0:
                clip = audio[-n:]
            if clip.size < n:
                clip = np.resize(clip, n)
            mel = spec.log_mel(torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)))
            mels.extend([mel] * spec.test_crops)
        return torch.stack(mels)

    def __repr__(self) -> str:
        return f"VideoViews(videos={len(self)}, views={self.views_per_video})"
