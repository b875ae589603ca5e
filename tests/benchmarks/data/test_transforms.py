"""Crops, flip, normalization and ClipSpec validation."""

from __future__ import annotations

import pytest
import torch

from benchmarks.data import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipSpec,
    FrameNormalizer,
    center_crop,
    horizontal_flip,
    normalize,
    random_crop,
    three_crop,
)


def grid(t=2, h=6, w=10):
    x = torch.arange(h * w, dtype=torch.int64).reshape(1, h, w, 1)
    return x.expand(t, h, w, 3).clone()


def test_crops_and_flip():
    clip = grid()
    c = center_crop(clip, 4)
    assert c.shape == (2, 4, 4, 3)
    assert int(c[0, 0, 0, 0]) == 1 * 10 + 3
    crops = [three_crop(clip, 4, i) for i in range(3)]
    assert [int(x[0, 0, 0, 0]) for x in crops] == [10, 13, 16]  # left, center, right
    tall = grid(h=10, w=6)
    assert [int(three_crop(tall, 4, i)[0, 0, 0, 0]) for i in range(3)] == [1, 19, 37]
    g = torch.Generator().manual_seed(0)
    r = random_crop(clip, 4, g)
    assert r.shape == (2, 4, 4, 3)
    assert torch.equal(horizontal_flip(clip)[:, :, 0], clip[:, :, -1])


def test_normalize_layout_and_values():
    clip = torch.full((4, 2, 2, 3), 255, dtype=torch.uint8)
    out = normalize(clip, KINETICS_MEAN, KINETICS_STD)
    assert out.shape == (3, 4, 2, 2)
    assert out.dtype == torch.float32
    expected = (1 - KINETICS_MEAN[0]) / KINETICS_STD[0]
    assert float(out[0, 0, 0, 0]) == pytest.approx(expected)


def test_frame_normalizer_equals_the_worker_normalization():
    # A batch of uint8 frames normalized on its device equals the stacked worker-normalized
    # clips bit for bit (tolerance 0: the same float32 operations in the same order).
    gen = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (3, 4, 6, 5, 3), dtype=torch.uint8, generator=gen)
    frames[0, 0, 0, 0] = torch.tensor([0, 255, 128], dtype=torch.uint8)  # both extremes
    worker = torch.stack([normalize(clip, KINETICS_MEAN, KINETICS_STD) for clip in frames])
    device = FrameNormalizer(KINETICS_MEAN, KINETICS_STD)
    out = device(frames)
    assert out.shape == (3, 3, 4, 6, 5)
    assert out.dtype == torch.float32
    assert out.is_contiguous()
    torch.testing.assert_close(out, worker, rtol=0, atol=0)
    cl = device(frames, channels_last=True)  # the frames' own layout: no transposing copy
    assert cl.is_contiguous(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(cl, worker, rtol=0, atol=0)
    one = device(frames[1])  # a single clip T × H × W × 3
    torch.testing.assert_close(one, worker[1], rtol=0, atol=0)
    # Several views per video, as the evaluation's (B, V, T, H, W, 3) before flattening.
    views = device(frames.view(1, 3, 4, 6, 5, 3))
    torch.testing.assert_close(views[0], worker, rtol=0, atol=0)


def test_frame_normalizer_errors():
    device = FrameNormalizer(KINETICS_MEAN, KINETICS_STD)
    with pytest.raises(ValueError, match=r"uint8 frames .*torch.float32.*normalize='worker'"):
        device(torch.zeros(2, 3, 4, 4, 4))
    with pytest.raises(ValueError, match="uint8 frames"):
        device(torch.zeros(4, 4, 4, 2, dtype=torch.uint8))  # 2 channels, 3 means
    with pytest.raises(ValueError, match="std > 0"):
        FrameNormalizer((0.5, 0.5, 0.5), (0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="same length"):
        FrameNormalizer((0.5,), (0.2, 0.2, 0.2))
    assert "FrameNormalizer(mean=(0.43216" in repr(device)


def test_presets_and_validation():
    assert (ClipSpec.ablation().num_frames, ClipSpec.ablation().crop_size) == (16, 112)
    csn = ClipSpec.csn()
    assert (csn.num_frames, csn.crop_size, csn.train_short_side) == (32, 224, (256, 320))
    three = ClipSpec.three_crop_256()
    assert (three.crop_size, three.test_crops, three.test_short_side) == (256, 3, 256)
    with pytest.raises(ValueError, match="train_short_side"):
        ClipSpec(crop_size=224)
    with pytest.raises(ValueError, match="test_crops"):
        ClipSpec(test_crops=2)
    with pytest.raises(ValueError, match="num_frames"):
        ClipSpec(num_frames=0)
    with pytest.raises(ValueError, match="test_short_side"):
        ClipSpec(test_short_side=64)
