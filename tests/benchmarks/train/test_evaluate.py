"""evaluate_videos against hand-computed clip top-1, video top-1/top-5, ensemble, mAP/mAUC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from benchmarks.data import (
    ClipDataset,
    ClipRecord,
    ClipSpec,
    SkipReport,
    mean_auc,
    mean_average_precision,
)
from benchmarks.train import evaluate_videos, load_config
from benchmarks.train._distributed import DistInfo
from benchmarks.train._loop import _Runner

from .conftest import CONFIGS, Roots

SPEC = ClipSpec(num_frames=2, crop_size=32, train_short_side=(32, 32), test_short_side=32,
                test_clips=2)  # fmt: skip
# rows: (video 0, clip 0), (video 0, clip 1), (video 1, clip 0), (video 1, clip 1)
LOGITS = {
    "a": torch.tensor([[2.0, 0, 0], [0, 3, 0], [0, 0, 1], [0.5, 0, 0]]),
    "fused": torch.tensor([[0.0, 0, 5]] * 4),
}


class Fixed(nn.Module):
    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        assert inputs["rgb"].shape[0] == 4  # 2 videos x 2 clips, flattened
        return {h: z.clone() for h, z in LOGITS.items()}


def _softmax(z: torch.Tensor) -> np.ndarray:
    e = np.exp(z.numpy() - z.numpy().max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _run(roots: Roots, targets: list, multi_label: bool, num_classes: int | None = None) -> dict:
    records = [ClipRecord(roots.sources[0], targets[0], "v0"),
               ClipRecord(roots.sources[1], targets[1], "v1")]  # fmt: skip
    ds = ClipDataset(records, mode="test", spec=SPEC, modalities=("rgb",), num_classes=num_classes)
    return evaluate_videos(
        Fixed(), ds, lambda m, x: m(x), {"a": 0.25, "fused": 0.75}, multi_label=multi_label,
        batch_size=2, workers=0, info=DistInfo(), skips=SkipReport(),
    )  # fmt: skip


def test_single_label_metrics(roots: Roots) -> None:
    out = _run(roots, [0, 2], multi_label=False)
    # head a: clip argmax 0, 1 | 2, 0 against targets 0 | 2 -> 2 of 4 clips right;
    # video 0 averages to [.416, .508, .076] (wrong), video 1 to [.332, .243, .425] (right)
    assert out["a"] == {"clip_top1": 0.5, "video_top1": 0.5, "video_top5": 1.0, "videos": 2}
    assert out["fused"]["clip_top1"] == 0.5  # always class 2: video 1's clips only
    assert out["fused"]["video_top1"] == 0.5
    p = 0.25 * _softmax(LOGITS["a"]) + 0.75 * _softmax(LOGITS["fused"])
    clip = np.mean(p.argmax(1) == np.array([0, 0, 2, 2]))
    video = np.mean([p[:2].mean(0).argmax() == 0, p[2:].mean(0).argmax() == 2])
    assert out["ensemble"]["clip_top1"] == pytest.approx(clip)
    assert out["ensemble"]["video_top1"] == pytest.approx(video)


def test_multi_label_metrics(roots: Roots) -> None:
    out = _run(roots, [(0, 1), (2,)], multi_label=True, num_classes=3)
    y = np.array([[1, 1, 0], [0, 0, 1]])
    for head in ("a", "fused"):
        s = torch.sigmoid(LOGITS[head]).numpy()
        scores = np.stack([s[:2].mean(0), s[2:].mean(0)])
        assert out[head]["mAP"] == pytest.approx(mean_average_precision(scores, y))
        assert out[head]["mAUC"] == pytest.approx(mean_auc(scores, y))
    # the fused head scores both videos alike: every class is a tie, AP = 1/2, AUC = 1/2
    assert out["fused"]["mAP"] == pytest.approx(0.5)
    assert out["fused"]["mAUC"] == pytest.approx(0.5)
    assert set(out["ensemble"]) == {"mAP", "mAUC", "videos"}


def test_device_normalized_views_score_the_same(roots: Roots) -> None:
    # normalize="device": the loader yields uint8 (videos, views, T, H, W, 3) frames and the
    # runner normalizes them after moving them; the model sees the worker path's float
    # clips exactly (tolerance 0) and the metrics are the same.
    class ChannelMeans(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[torch.Tensor] = []

        def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            x = inputs["rgb"]
            self.seen.append(x)
            z = x.mean(dim=(2, 3, 4))  # 3 channels: 3 classes
            return {"a": z, "fused": -z}

    cfg = load_config(CONFIGS / "kinetics_rgb_audio.toml", smoke=True)
    runner = _Runner(cfg, torch.device("cpu"), multi_label=False)
    records = [ClipRecord(roots.sources[0], 0, "v0"), ClipRecord(roots.sources[1], 2, "v1")]
    out, seen = {}, {}
    for where in ("worker", "device"):
        ds = ClipDataset(records, mode="test", spec=SPEC, modalities=("rgb",), normalize=where)
        model = ChannelMeans()
        out[where] = evaluate_videos(
            model, ds, runner.forward, {"a": 0.5, "fused": 0.5}, multi_label=False,
            batch_size=2, workers=0, info=DistInfo(), skips=SkipReport(),
        )  # fmt: skip
        seen[where] = torch.cat(model.seen)
    assert seen["device"].shape == (4, 3, 2, 32, 32)  # 2 videos × 2 clips, flattened
    assert seen["device"].dtype == torch.float32
    torch.testing.assert_close(seen["device"], seen["worker"], rtol=0, atol=0)
    assert out["device"] == out["worker"]
