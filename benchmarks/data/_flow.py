"""Precomputed optical flow (Table 4's flow modality): on-disk layout, clip window, resizing.

Layout: one ``.npy`` file per video holding an array of shape ``(N, 2, H, W)``, float16 (or
float32), where ``flow[i, 0]`` / ``flow[i, 1]`` are the horizontal / vertical displacement
in pixels (of that ``H × W`` grid) from video frame ``i`` to frame ``i + 1``; ``N`` is the
video's frame count, or one less (OpenCV gives one field per pair of frames). Any
resolution works: the loader resizes to the RGB clip's size and scales the displacements
with it.

Why ``.npy`` and not a pair of grayscale x/y videos: the file is memory-mapped, so a clip
reads only its ``T`` frames (no seek to a keyframe and decode of every frame from there to
the clip: 5–11 ms against 188–324 ms for RGB, measured in docs/datasets.md), the values
are exact (no 8-bit quantization, no ±20 px clipping, no codec loss), and ``np.save`` is
the whole writer. The cost is disk: float16 at 171 × 128 is 2.2 MB per second of 25 fps
video (a 10 s Kinetics clip: 22 MB); store flow at the resolution you train at.

Clip window: the flow frames of a clip are the RGB frames' indices (same start time, same
stride, same loop-padding rule as :func:`decode_video_clip`), so RGB and flow see the same
moment.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.data._report import MediaError

__all__ = ["clip_frame_indices", "load_flow_clip", "resize_flow", "save_flow"]


def clip_frame_indices(
    start: float, fps: float, num_frames: int, stride: int, available: int
) -> list[int]:
    """Frame indices of a clip, the rule :func:`decode_video_clip` applies to timestamps.

    The first frame is the first one at or after ``start`` (half a frame of tolerance), then
    one every ``stride``; frames past ``available`` are dropped and the kept ones repeated in
    a loop; a start past the last frame takes the last ``(num_frames - 1) * stride + 1``
    frames instead.

    Args:
        start: clip start in seconds. fps: frames per second. num_frames: T.
        stride: keep one frame in ``stride``. available: frames in the file.

    Returns:
        ``num_frames`` indices in ``[0, available)``.

    Raises:
        MediaError: ``available`` is 0.
    """
    if available < 1:
        raise MediaError("no flow frame")
    span = (num_frames - 1) * stride + 1
    first = max(0, math.ceil(max(0.0, start) * fps - 0.5 - 1e-9))
    kept = [i for i in range(first, first + span, stride) if i < available]
    if not kept:  # start past the last frame: take the tail, as the RGB decoder does
        first = max(0, available - span)
        kept = [i for i in range(first, first + span, stride) if i < available]
    return [kept[i % len(kept)] for i in range(num_frames)]


def open_flow(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map an ``(N, 2, H, W)`` flow ``.npy`` file, checking its layout.

    Raises:
        MediaError: missing file, unreadable file, or an array that is not ``(N, 2, H, W)``
            floating point.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError("flow file not found")
    try:
        flow = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise MediaError(f"cannot read flow file: {exc}") from exc
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.dtype.kind != "f":
        raise MediaError(
            f"flow file has shape {flow.shape} and dtype {flow.dtype}; expected (N, 2, H, W) "
            "float16 or float32"
        )
    return flow


def load_flow_clip(
    path: str | os.PathLike[str],
    start: float,
    fps: float,
    num_frames: int,
    stride: int = 1,
) -> torch.Tensor:
    """Read the flow frames of a clip from an ``(N, 2, H, W)`` ``.npy`` file (memory-mapped).

    Returns:
        float32 tensor ``T × H × W × 2`` (pixels of the stored grid; channel 0 horizontal).

    Raises:
        MediaError: missing file, unreadable file, or an array that is not ``(N, 2, H, W)``
            floating point.
    """
    flow = open_flow(path)
    index = clip_frame_indices(start, fps, num_frames, stride, flow.shape[0])
    window = np.asarray(flow[np.asarray(index)], dtype=np.float32)  # reads T frames only
    return torch.from_numpy(window).permute(0, 2, 3, 1).contiguous()


def resize_flow(flow: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize a ``T × H × W × 2`` flow clip to ``height × width``, scaling the displacements.

    A displacement of ``u`` pixels on a grid ``W`` wide is ``u * width / W`` pixels on the
    new grid (likewise ``v`` with the heights). Bilinear, ``align_corners=False``.
    """
    _, h, w, _ = flow.shape
    if (h, w) == (height, width):
        return flow
    x = F.interpolate(
        flow.permute(0, 3, 1, 2), size=(height, width), mode="bilinear", align_corners=False
    )
    scale = torch.tensor([width / w, height / h], dtype=x.dtype).view(1, 2, 1, 1)
    return (x * scale).permute(0, 2, 3, 1).contiguous()


def save_flow(path: str | os.PathLike[str], flow: np.ndarray | torch.Tensor) -> str:
    """Write a video's flow in the loader's layout: ``(N, 2, H, W)`` float16 ``.npy``.

    Written to a temporary file first, then renamed (no half-written file on a crash).

    Args:
        path: output file; must end with ``.npy``. Parent folders are created.
        flow: ``(N, 2, H, W)`` displacements in pixels (channel 0 horizontal).

    Returns:
        The path, as a string.

    Raises:
        TypeError: ``flow`` is not an array or tensor.
        ValueError: wrong shape, non-finite values, or a path not ending in ``.npy``.
    """
    path = os.fspath(path)
    if isinstance(flow, torch.Tensor):
        flow = flow.detach().cpu().numpy()
    if not isinstance(flow, np.ndarray):
        raise TypeError(
            f"Parameter `flow` should be a numpy array or a tensor. Found {type(flow).__name__}."
        )
    if flow.ndim != 4 or flow.shape[1] != 2 or 0 in flow.shape:
        raise ValueError(
            f"Parameter `flow` should have shape (N, 2, H, W), none of them 0. Found "
            f"{flow.shape}; stack the x and y fields on axis 1."
        )
    if not path.endswith(".npy"):
        raise ValueError(f"Parameter `path` should end with '.npy'. Found {path!r}.")
    values = flow.astype(np.float64)
    if not np.isfinite(values).all() or np.abs(values).max() > np.finfo(np.float16).max:
        raise ValueError(
            "Parameter `flow` holds non-finite values or values beyond float16's ±65504 px; "
            "check the flow computation."
        )
    data = flow.astype(np.float16)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}.npy"
    np.save(tmp, data)
    os.replace(tmp, path)
    return path
