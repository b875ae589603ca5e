"""VideoViews (one decode per test video) gives exactly ClipDataset's test-mode views."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import (
    ClipDataset,
    ClipRecord,
    ClipSpec,
    FrameNormalizer,
    MediaError,
    collate_clips,
    save_flow,
)
from benchmarks.train import VideoViews
from benchmarks.train._views import read_flow_clips

from .conftest import Roots, make_flow


@pytest.mark.parametrize(("clips", "crops"), [(4, 1), (3, 3)])
def test_views_equal_clip_dataset_test_mode(roots: Roots, clips: int, crops: int) -> None:
    spec = ClipSpec(
        num_frames=4, frame_stride=2, crop_size=32, train_short_side=(36, 40),
        test_short_side=36, test_clips=clips, test_crops=crops,
    )  # fmt: skip
    records = [ClipRecord(roots.sources[0], 1, "a"), ClipRecord(roots.sources[2], 0, "b")]
    per_clip = ClipDataset(records, mode="test", spec=spec, num_classes=2)
    views = VideoViews(per_clip)
    assert len(views) == 2
    assert views.views_per_video == clips * crops
    for v in range(2):
        inputs, target, index = views[v]
        assert (target, index) == (records[v].target, v)
        assert inputs["rgb"].shape == (clips * crops, 3, 4, 32, 32)
        for k in range(clips * crops):
            ref, ref_target, ref_video = per_clip[v * clips * crops + k]
            assert (ref_target, ref_video) == (target, v)
            torch.testing.assert_close(inputs["rgb"][k], ref["rgb"], rtol=0, atol=0)
            # Audio: one continuous decode here; ClipDataset seeks per clip, and the first AAC
            # frame after a seek decodes without its predecessor (MDCT overlap), so a clip
            # whose window starts past the first frame differs there (up to ~12% of the
            # log-mel bins on these 1 s files). The first clip's window needs no seek: exact.
            same = (inputs["audio"][k] - ref["audio"]).abs() < 1e-4
            assert same.float().mean() > 0.85
            if k < crops:
                assert same.all()


@pytest.mark.parametrize("crops", [1, 3])
def test_device_normalized_views_equal_the_worker_views(roots: Roots, crops: int) -> None:
    # normalize="device": uint8 views (views, T, H, W, 3), a quarter of the bytes; after
    # FrameNormalizer they equal the worker-normalized views exactly (tolerance 0).
    spec = ClipSpec(
        num_frames=4, frame_stride=2, crop_size=32, train_short_side=(36, 40),
        test_short_side=36, test_clips=3, test_crops=crops,
    )  # fmt: skip
    records = [ClipRecord(roots.sources[0], 1, "a"), ClipRecord(roots.sources[2], 0, "b")]
    worker = VideoViews(ClipDataset(records, mode="test", spec=spec))
    device = VideoViews(ClipDataset(records, mode="test", spec=spec, normalize="device"))
    ref, got = collate_clips([worker[0], worker[1]]), collate_clips([device[0], device[1]])
    assert got[0]["rgb"].dtype == torch.uint8
    assert got[0]["rgb"].shape == (2, 3 * crops, 4, 32, 32, 3)
    assert got[0]["rgb"].nbytes * 4 == ref[0]["rgb"].nbytes
    normalized = FrameNormalizer(spec.mean, spec.std)(got[0]["rgb"])
    torch.testing.assert_close(normalized, ref[0]["rgb"], rtol=0, atol=0)
    torch.testing.assert_close(got[0]["audio"], ref[0]["audio"], rtol=0, atol=0)
    assert torch.equal(got[2], ref[2])


def test_views_decode_each_video_once(roots: Roots, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.train._views as views_module

    opened = []
    real = views_module.open_media
    monkeypatch.setattr(views_module, "open_media", lambda p: opened.append(p) or real(p))
    spec = ClipSpec(num_frames=2, crop_size=32, train_short_side=(32, 32), test_short_side=32)
    ds = ClipDataset([ClipRecord(roots.sources[1], 0, "a")], mode="test", spec=spec)
    inputs, _, _ = VideoViews(ds)[0]
    assert inputs["rgb"].shape[0] == 10  # the paper's 10 clips
    assert opened == [roots.sources[1]]


def test_views_skip_a_missing_file(tmp_path) -> None:
    spec = ClipSpec(num_frames=2, crop_size=32, train_short_side=(32, 32), test_short_side=32)
    ds = ClipDataset([ClipRecord(str(tmp_path / "gone.mp4"), 0, "a")], mode="test", spec=spec)
    batch = collate_clips([VideoViews(ds)[0]])
    assert batch.size == 0
    assert batch.skipped[0].reason == "file not found"
    assert len(batch) == 3


def test_views_type_error() -> None:
    with pytest.raises(TypeError, match="ClipDataset"):
        VideoViews([1, 2])  # type: ignore[arg-type]


def _flow_records(roots: Roots, tmp_path: Path) -> list[ClipRecord]:
    """Two 1 s, 10 fps, 40 × 48 videos with flow at 20 × 24 (10 and 9 fields)."""
    records = []
    for v, (src, frames) in enumerate([(roots.sources[0], 10), (roots.sources[2], 9)]):
        flow = save_flow(tmp_path / f"f{v}.npy", make_flow(frames, 20, 24, seed=v + 3))
        records.append(ClipRecord(src, 1 - v, f"v{v}", flow_path=flow))
    return records


@pytest.mark.parametrize("modalities", [("rgb", "flow"), ("flow",)])
@pytest.mark.parametrize(("clips", "crops"), [(4, 1), (3, 3)])
def test_flow_views_equal_clip_dataset_test_mode(
    roots: Roots, tmp_path: Path, modalities: tuple[str, ...], clips: int, crops: int
) -> None:
    """Same frames, resized grid, crops and scale as ClipDataset's per-clip flow, exactly."""
    spec = ClipSpec(
        num_frames=4, frame_stride=2, crop_size=32, train_short_side=(36, 40),
        test_short_side=36, test_clips=clips, test_crops=crops,
    )  # fmt: skip
    records = _flow_records(roots, tmp_path)
    per_clip = ClipDataset(
        records, mode="test", spec=spec, modalities=modalities, num_classes=2, on_error="raise"
    )
    views = VideoViews(per_clip)
    for v in range(2):
        inputs, target, index = views[v]
        assert (target, index) == (records[v].target, v)
        assert list(inputs) == list(modalities)
        assert inputs["flow"].shape == (clips * crops, 2, 4, 32, 32)
        for k in range(clips * crops):
            ref, _, _ = per_clip[v * clips * crops + k]
            for m in modalities:
                torch.testing.assert_close(inputs[m][k], ref[m], rtol=0, atol=0)
        # the clips really differ (10 uniform windows over the video, not one repeated)
        assert not torch.equal(inputs["flow"][0], inputs["flow"][-1])


def test_flow_views_read_each_flow_file_once(
    roots: Roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    real = np.load
    monkeypatch.setattr(np, "load", lambda p, *a, **k: loads.append(str(p)) or real(p, *a, **k))
    spec = ClipSpec(num_frames=2, crop_size=32, train_short_side=(32, 32), test_short_side=32)
    records = _flow_records(roots, tmp_path)
    ds = ClipDataset(records[:1], mode="test", spec=spec, modalities=("rgb", "flow", "audio"))
    inputs, _, _ = VideoViews(ds)[0]
    assert inputs["flow"].shape == (10, 2, 2, 32, 32)  # the paper's 10 clips
    assert loads == [records[0].flow_path]


def test_read_flow_clips_hand_values(tmp_path: Path) -> None:
    # Field i is uniform (u, v) = (i, -i); 10 fields at 10 fps, clips of 3 frames, stride 2.
    i = np.arange(10, dtype=np.float32)[:, None, None, None]
    path = save_flow(tmp_path / "f.npy", np.concatenate([i, -i], 1) * np.ones((1, 2, 3, 4)))
    clips = read_flow_clips(path, [0.0, 0.6, 5.0], fps=10, num_frames=3, stride=2)
    # 0 s: frames 0 2 4; 0.6 s: 6 8 (10 is past the end) looped; past the end: the tail 5 7 9
    expected = [[0, 2, 4], [6, 8, 6], [5, 7, 9]]
    for clip, frames in zip(clips, expected, strict=True):
        assert clip.shape == (3, 3, 4, 2)
        torch.testing.assert_close(clip[:, 0, 0, 0], torch.tensor(frames, dtype=torch.float32))
        torch.testing.assert_close(clip[:, 2, 3, 1], -torch.tensor(frames, dtype=torch.float32))


def test_flow_views_skip_missing_or_malformed_flow(
    roots: Roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmarks.train._views as views_module

    decoded = []
    real = views_module.decode_clips_once
    monkeypatch.setattr(
        views_module, "decode_clips_once", lambda *a, **k: decoded.append(1) or real(*a, **k)
    )
    spec = ClipSpec(num_frames=2, crop_size=32, train_short_side=(32, 32), test_short_side=32)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 2, 2), np.float16))
    records = [
        ClipRecord(roots.sources[0], 0, "a", flow_path=str(tmp_path / "gone.npy")),
        ClipRecord(roots.sources[0], 0, "b", flow_path=str(tmp_path / "bad.npy")),
    ]
    ds = ClipDataset(records, mode="test", spec=spec, modalities=("rgb", "flow"))
    views = VideoViews(ds)
    batch = collate_clips([views[0], views[1]])
    assert batch.size == 0
    assert batch.skipped[0].reason == "flow file not found"
    assert "shape (4, 3, 2, 2)" in batch.skipped[1].reason
    assert decoded == []  # the flow file is checked before the video is decoded
    with pytest.raises(MediaError, match="flow file not found"):
        read_flow_clips(tmp_path / "gone.npy", [0.0], 10, 2, 1)
