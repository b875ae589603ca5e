"""Metrics against scikit-learn (test-only dependency) and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmarks.data import (
    average_precision,
    clip_top1,
    mean_auc,
    mean_average_precision,
    roc_auc,
    video_scores,
    video_topk,
)


@pytest.mark.parametrize("decimals", [None, 1])  # 1 decimal: many tied scores
def test_binary_ap_and_auc_match_sklearn(decimals):
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.random(200) < 0.2
        s = rng.normal(size=200) + y
        if decimals is not None:
            s = np.round(s, decimals)
        assert average_precision(s, y) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_multilabel_means_match_sklearn_and_skip_undefined_classes():
    rng = np.random.default_rng(1)
    targets = (rng.random((300, 12)) < 0.15).astype(np.float32)
    targets[:, 3] = 0  # no positive: excluded from mAP and mAUC
    targets[:, 7] = 1  # no negative: excluded from mAUC only
    scores = torch.from_numpy(rng.normal(size=(300, 12)) + 2 * targets)
    valid_ap = [c for c in range(12) if c != 3]
    valid_auc = [c for c in range(12) if c not in (3, 7)]
    ref_ap = average_precision_score(
        targets[:, valid_ap], scores.numpy()[:, valid_ap], average="macro"
    )
    ref_auc = roc_auc_score(targets[:, valid_auc], scores.numpy()[:, valid_auc], average="macro")
    assert mean_average_precision(scores, torch.from_numpy(targets)) == pytest.approx(ref_ap)
    assert mean_auc(scores, targets) == pytest.approx(ref_auc)
    with pytest.raises(ValueError, match="N × C"):
        mean_auc(scores[:, :3], targets)


def test_clip_top1():
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert clip_top1(scores, torch.tensor([1, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="scores"):
        clip_top1(scores, [0, 1])


def test_video_topk_averages_clips():
    # video 0: clips disagree, the average picks class 2; video 1: class 0 throughout.
    logits = torch.tensor(
        [[0.0, 5.0, 0.0], [0.0, 0.0, 4.0], [0.0, 0.0, 4.0], [3.0, 0.0, 0.0], [3.0, 1.0, 0.0]]
    )
    video = torch.tensor([0, 0, 0, 1, 1])
    target = torch.tensor([2, 2, 2, 1, 1])
    videos, avg = video_scores(logits, video)
    assert videos.tolist() == [0, 1]
    np.testing.assert_allclose(avg.sum(1), 1.0)
    probs = torch.softmax(logits.double(), 1)
    np.testing.assert_allclose(avg[0], probs[:3].mean(0).numpy())
    acc = video_topk(logits, target, video, k=(1, 2))
    assert acc == {1: 0.5, 2: 1.0}
    assert clip_top1(logits, target) == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="different targets"):
        video_topk(logits, torch.tensor([2, 1, 2, 1, 1]), video)
    with pytest.raises(ValueError, match="average"):
        video_scores(logits, video, average="max")
