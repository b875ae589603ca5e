"""VideoViews (one decode per test video) gives exactly ClipDataset's test-mode views."""

from __future__ import annotations

import pytest
import torch

from benchmarks.data import ClipDataset, ClipRecord, ClipSpec, collate_clips
from benchmarks.train import VideoViews

from .conftest import Roots


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
