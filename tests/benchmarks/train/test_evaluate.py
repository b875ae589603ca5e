"""evaluate_videos against hand-computed clip top-1, video top-1/top-5, ensemble, mAP/mAUC;
the predictor chosen on V by a paired test, not by a bare argmax."""

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
from benchmarks.train._evaluate import VideoScores, choose_predictor, video_metrics
from benchmarks.train._loop import _Runner
from benchmarks.train._report import choice_line

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


def _scores(right: dict[str, int], n: int = 10) -> VideoScores:
    """``n`` videos of class 0 (3 classes); head ``h`` scores its first ``right[h]`` right."""
    probs = {}
    for h, k in right.items():
        p = np.tile(np.array([0.1, 0.8, 0.1], dtype=np.float32), (n, 1))
        p[:k] = [0.8, 0.1, 0.1]
        probs[h] = p
    probs["ensemble"] = probs["a"]  # weights {"a": 1, "fused": 0}
    clips = {**right, "ensemble": right["a"]}
    target = np.zeros(n, dtype=np.int64)
    return VideoScores([*clips], probs, target, clips, views=1, multi_label=False)


def test_the_fused_head_needs_a_significant_win_on_v() -> None:
    # The fused head is right on one video more than the ensemble: a bare argmax picked it;
    # its gain 0.1 equals its paired standard error, so the ensemble is kept.
    weights = {"a": 1.0, "fused": 0.0}
    scores = _scores({"a": 5, "fused": 6})
    choice = choose_predictor(scores, weights, "fused")
    assert choice is not None
    assert (choice.chosen, choice.reference, choice.metric, choice.size) == (
        "ensemble", "ensemble", "top1", 10
    )  # fmt: skip
    assert choice.gains["fused"] == pytest.approx(0.1)
    assert choice.standard_errors["fused"] == pytest.approx(0.1)
    metrics = video_metrics(scores)  # choose() reads the same numbers as the report
    assert choice.scores == pytest.approx(
        {h: metrics[h]["video_top1"] for h in ("ensemble", "fused")}
    )
    line = choice_line(choice.to_dict())
    assert "Chosen on V: `ensemble` (no candidate beat `ensemble` by more than 1 paired" in line
    assert "`fused` 60.0 (gain +10.0 ± 10.0)" in line
    # right on every video against 5 of 10: gain 0.5 > SE 0.167, the fused head is chosen
    choice = choose_predictor(_scores({"a": 5, "fused": 10}), weights, "fused")
    assert choice is not None
    assert (choice.chosen, choice.weights) == ("fused", {"fused": 1.0})
    assert "Chosen on V: `fused` (it beat `ensemble`" in choice_line(choice.to_dict())


def test_multi_label_choice_reads_map_and_an_empty_v_chooses_nothing() -> None:
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    good = np.where(y == 1, 0.9, 0.1).astype(np.float32)
    bad = np.full((4, 2), 0.5, dtype=np.float32)
    scores = VideoScores(
        ["a", "fused", "ensemble"], {"a": good, "fused": bad, "ensemble": good}, y, {},
        views=1, multi_label=True,
    )  # fmt: skip
    choice = choose_predictor(scores, {"a": 1.0, "fused": 0.0}, "fused")
    assert choice is not None
    assert (choice.metric, choice.chosen) == ("map", "ensemble")
    assert choice.scores["ensemble"] == pytest.approx(mean_average_precision(good, y))
    empty = VideoScores(["a", "ensemble"], {}, np.array([]), {}, views=1, multi_label=False)
    assert choose_predictor(empty, {"a": 1.0}, "fused") is None
    assert video_metrics(empty) == {"a": {"videos": 0}, "ensemble": {"videos": 0}}
