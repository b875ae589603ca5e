"""Crops, flip, normalization and ClipSpec validation."""

from __future__ import annotations

import pytest
import torch

from benchmarks.data import (
    KINETICS_MEAN,
    KINETICS_STD,
    ClipSpec,
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
