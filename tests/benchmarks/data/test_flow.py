"""Precomputed optical flow: window rule, resizing, and the Kinetics ``flow`` modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipDataset,
    ClipRecord,
    ClipSpec,
    Kinetics,
    MediaError,
    SkippedSample,
    clip_frame_indices,
    clip_starts_uniform,
    decode_video_clip,
    load_flow_clip,
    open_media,
    resize_flow,
    save_flow,
    write_test_video,
)

FPS = 25


def test_clip_frame_indices_hand_values():
    assert clip_frame_indices(1.0, 25, 8, 2, 50) == [25, 27, 29, 31, 33, 35, 37, 39]
    assert clip_frame_indices(1.0, 25, 8, 2, 30) == [25, 27, 29, 25, 27, 29, 25, 27]  # loop
    assert clip_frame_indices(3.0, 25, 8, 2, 50) == [35, 37, 39, 41, 43, 45, 47, 49]  # tail
    assert clip_frame_indices(0.019, 25, 2, 1, 50) == [0, 1]  # within half a frame of 0
    assert clip_frame_indices(0.021, 25, 2, 1, 50) == [1, 2]
    assert clip_frame_indices(0.0, 25, 4, 1, 2) == [0, 1, 0, 1]
    with pytest.raises(MediaError, match="no flow frame"):
        clip_frame_indices(0.0, 25, 4, 1, 0)


def frame_ids(clip: torch.Tensor) -> list[int]:
    """Frame index from the generator's gray 16 × 16 marker (value 5 × index), top left."""
    return [round(float(f[2:12, 2:12].float().mean()) / 5) for f in clip]


@pytest.mark.parametrize("start", [0.0, 0.52, 1.0, 1.37, 1.9, 2.5])
def test_flow_window_matches_rgb_decoder(media, start):
    """The flow indices are the frames the RGB decoder returns, for the same start."""
    with open_media(media.tone) as c:
        rgb = decode_video_clip(c, start, num_frames=6, stride=2)
    assert frame_ids(rgb) == clip_frame_indices(start, FPS, 6, 2, 50)


def test_resize_flow_scales_displacements():
    flow = torch.zeros(3, 24, 12, 2)
    flow[..., 0], flow[..., 1] = 1.0, 2.0
    out = resize_flow(flow, 48, 48)  # x: 12 → 48 (×4), y: 24 → 48 (×2)
    assert out.shape == (3, 48, 48, 2)
    torch.testing.assert_close(out[..., 0], torch.full((3, 48, 48), 4.0))
    torch.testing.assert_close(out[..., 1], torch.full((3, 48, 48), 4.0))
    assert resize_flow(flow, 24, 12) is flow


def test_save_and_load_flow(tmp_path):
    flow = np.arange(5 * 2 * 3 * 4, dtype=np.float32).reshape(5, 2, 3, 4) / 8
    path = save_flow(tmp_path / "a" / "v.npy", flow)
    assert np.load(path).dtype == np.float16
    clip = load_flow_clip(path, start=0.04, fps=25, num_frames=2, stride=2)  # frames 1, 3
    assert clip.shape == (2, 3, 4, 2)
    torch.testing.assert_close(clip, torch.from_numpy(flow[[1, 3]]).permute(0, 2, 3, 1))
    assert not list(Path(tmp_path / "a").glob("*.tmp*"))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        save_flow(tmp_path / "b.npy", flow[:, :1])
    with pytest.raises(ValueError, match=r"'\.npy'"):
        save_flow(tmp_path / "b.npz", flow)
    with pytest.raises(TypeError, match="flow"):
        save_flow(tmp_path / "b.npy", flow.tolist())
    with pytest.raises(ValueError, match="non-finite"):
        save_flow(tmp_path / "b.npy", flow * 1e6)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 2, 2), np.float16))
    with pytest.raises(MediaError, match=r"shape \(4, 3, 2, 2\)"):
        load_flow_clip(tmp_path / "bad.npy", 0.0, 25, 2)
    with pytest.raises(MediaError, match="flow file not found"):
        load_flow_clip(tmp_path / "none.npy", 0.0, 25, 2)


@pytest.fixture(scope="module")
def flow_kinetics(tmp_path_factory) -> Path:
    """Kinetics root: a square 48 × 48 video (2 s, 50 frames) and its 49-frame flow at 24 × 24.

    Flow frame i is uniform (u, v) = (i, -i / 2) px on the 24 × 24 grid, i.e. (2i, -i) px at
    the video's 48 × 48, so a clip's flow says which frames it was read from.
    """
    root = tmp_path_factory.mktemp("flow_kinetics")
    write_test_video(
        root / "train" / "zumba" / "aaaaaaaaaaa_000000_000002.mp4", size=(48, 48), fps=FPS
    )
    i = np.arange(49, dtype=np.float32)[:, None, None]
    flow = np.stack([np.broadcast_to(i, (49, 24, 24)), np.broadcast_to(-i / 2, (49, 24, 24))], 1)
    save_flow(root / "flow" / "train" / "zumba" / "aaaaaaaaaaa_000000_000002.npy", flow)
    (root / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "zumba,aaaaaaaaaaa,0,2,train\n"
        "zumba,bbbbbbbbbbb,0,2,train\n"  # video and flow missing
    )
    return root


def rgb_frame_ids(rgb: torch.Tensor, right: bool = False) -> list[int]:
    """Marker frame ids from a normalized ``3 × T × 48 × 48`` clip (marker mirrored if right)."""
    mean = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(3, 1, 1, 1)
    x = ((rgb * std + mean) * 255).permute(1, 2, 3, 0)  # T × H × W × 3
    return frame_ids(x.flip(2) if right else x)


def test_kinetics_flow_same_window_crop_and_flip_as_rgb(flow_kinetics):
    spec = ClipSpec(num_frames=6, crop_size=48, train_short_side=(48, 48), test_short_side=48)
    ds = Kinetics(flow_kinetics, flow_kinetics / "train.csv", modalities=("rgb", "flow"), spec=spec)
    assert ds.records[0].flow_path == str(
        flow_kinetics / "flow" / "train" / "zumba" / "aaaaaaaaaaa_000000_000002.npy"
    )
    flips = set()
    for seed in range(8):
        torch.manual_seed(seed)
        inputs, _ = ds[0]
        flow = inputs["flow"] * spec.flow_scale  # back to pixels
        assert inputs["flow"].shape == (2, 6, 48, 48)
        u, v = flow[0, :, 0, 0], flow[1, :, 0, 0]
        flipped = bool(u[0] < 0 or (u[0] == 0 and rgb_frame_ids(inputs["rgb"], True)[0] == 0))
        flips.add(flipped)
        ids = rgb_frame_ids(inputs["rgb"], right=flipped)
        sign = -1.0 if flipped else 1.0
        torch.testing.assert_close(u, sign * 2.0 * torch.tensor(ids, dtype=torch.float32))
        torch.testing.assert_close(v, -torch.tensor(ids, dtype=torch.float32))
        assert torch.all(flow[:, 0] == flow[:, 0, :1, :1])  # uniform field stays uniform
    assert flips == {True, False}  # both branches were exercised
    missing = ds[1]
    assert isinstance(missing, SkippedSample)
    test = Kinetics(
        flow_kinetics,
        flow_kinetics / "train.csv",
        split="train",
        mode="test",
        modalities=("flow", "audio"),
        spec=spec,
    )
    for view in (0, 9):
        inputs, target, video = test[view]
        assert set(inputs) == {"flow", "audio"}
        assert (target, video) == (0, 0)
        start = clip_starts_uniform(2.0, 11 / FPS, 10)[view]  # 11 frames span 0.44 s
        expected = clip_frame_indices(start, FPS, 6, 2, 49)
        u = inputs["flow"][0, :, 0, 0] * spec.flow_scale
        torch.testing.assert_close(u, 2.0 * torch.tensor(expected, dtype=torch.float32))


def test_flow_needs_flow_paths_and_skips_bad_flow(tmp_path, media, flow_kinetics):
    with pytest.raises(ValueError, match="no flow_path"):
        ClipDataset([ClipRecord(media.tone, 0, "v")], modalities=("rgb", "flow"))
    np.save(tmp_path / "bad.npy", np.zeros((10, 3, 4, 4), np.float16))
    spec = ClipSpec(num_frames=4, crop_size=32, train_short_side=(32, 40), test_short_side=32)
    records = [
        ClipRecord(media.tone, 0, "a", flow_path=str(tmp_path / "bad.npy")),
        ClipRecord(media.tone, 0, "b", flow_path=str(tmp_path / "none.npy")),
    ]
    ds = ClipDataset(records, modalities=("flow",), spec=spec)
    assert ds[0].reason.startswith("flow file has shape (10, 3, 4, 4)")
    assert ds[1].reason == "flow file not found"
    with pytest.raises(ValueError, match="flow_scale"):
        ClipSpec(flow_scale=0)
