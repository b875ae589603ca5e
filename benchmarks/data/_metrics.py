"""Metrics of §3.1 and Table 5: clip top-1, video top-1/top-5 (10-clip average), mAP, mAUC.

``video_topk`` averages the clip predictions of each video (softmax probabilities by
default, §3.1: "averaging the 10 predictions") and then takes top-k. ``mean_average_precision``
and ``mean_auc`` are the multi-label metrics of mini-AudioSet; they match scikit-learn's
``average_precision_score`` / ``roc_auc_score`` per class (ties included). Classes without a
positive (mAP, mAUC) or without a negative (mAUC) have no defined score and are left out of
the mean.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

__all__ = [
    "average_precision",
    "clip_top1",
    "mean_auc",
    "mean_average_precision",
    "roc_auc",
    "video_scores",
    "video_topk",
]


def _np(x: object, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise TypeError(
            f"Parameter `{name}` should be numeric (tensor or array). Found {arr.dtype}."
        )
    return arr


def _check_scores(scores: np.ndarray, n: int) -> None:
    if scores.ndim != 2 or scores.shape[0] != n:
        raise ValueError(
            f"Parameter `scores` should be N × C with N = {n} rows (one per target). "
            f"Found shape {scores.shape}."
        )


def clip_top1(scores: object, target: object) -> float:
    """Fraction of clips whose highest-scoring class is the target (scores N × C, target N)."""
    t = _np(target, "target").astype(np.int64).reshape(-1)
    s = _np(scores, "scores")
    _check_scores(s, t.size)
    return float((s.argmax(axis=1) == t).mean()) if t.size else float("nan")


def video_scores(
    scores: object,
    video_index: object,
    average: Literal["softmax", "sigmoid", "raw"] = "softmax",
) -> tuple[np.ndarray, np.ndarray]:
    """Average the clip scores of each video.

    Args:
        scores: N × C clip logits.
        video_index: N video indices (as the test-mode datasets return them).
        average: average ``softmax`` probabilities (single-label, default), ``sigmoid``
            probabilities (multi-label), or the ``raw`` scores.

    Returns:
        ``(videos, averaged)``: the sorted distinct video indices and V × C averaged scores.
    """
    s = _np(scores, "scores").astype(np.float64)
    v = _np(video_index, "video_index").astype(np.int64).reshape(-1)
    _check_scores(s, v.size)
    if average == "softmax":
        s = np.exp(s - s.max(axis=1, keepdims=True))
        s /= s.sum(axis=1, keepdims=True)
    elif average == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-s))
    elif average != "raw":
        raise ValueError(
            f"Parameter `average` should be 'softmax', 'sigmoid' or 'raw'. Found {average!r}."
        )
    videos, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.zeros((videos.size, s.shape[1]))
    np.add.at(sums, inverse, s)
    return videos, sums / counts[:, None]


def video_topk(
    scores: object,
    target: object,
    video_index: object,
    k: Sequence[int] = (1, 5),
    average: Literal["softmax", "sigmoid", "raw"] = "softmax",
) -> dict[int, float]:
    """Video top-k accuracy after averaging each video's clip scores (V@1, V@5 of §3.1).

    ``target`` holds one class per clip (the video's class, repeated). Returns ``{k: acc}``.
    """
    t = _np(target, "target").astype(np.int64).reshape(-1)
    v = _np(video_index, "video_index").astype(np.int64).reshape(-1)
    if t.size != v.size:
        raise ValueError(
            f"Parameters `target` and `video_index` should have one entry per clip. Found "
            f"{t.size} and {v.size}."
        )
    videos, avg = video_scores(scores, v, average)
    first = {}
    for vid, tt in zip(v.tolist(), t.tolist(), strict=True):
        if first.setdefault(vid, tt) != tt:
            raise ValueError(f"Video {vid} has clips with different targets ({first[vid]}, {tt}).")
    vt = np.array([first[int(vid)] for vid in videos])
    order = np.argsort(-avg, axis=1, kind="stable")
    out = {}
    for kk in k:
        if kk < 1:
            raise ValueError(f"Parameter `k` should hold positive ints. Found {kk}.")
        out[kk] = float((order[:, :kk] == vt[:, None]).any(axis=1).mean())
    return out


def average_precision(scores: object, positives: object) -> float:
    """Average precision of one class, ``Σ_n (R_n − R_{n−1}) P_n`` over distinct thresholds."""
    s = _np(scores, "scores").astype(np.float64).reshape(-1)
    y = _np(positives, "positives").astype(bool).reshape(-1)
    if not y.any():
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last index of each tie group
    tps = np.cumsum(y)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def roc_auc(scores: object, positives: object) -> float:
    """Area under the ROC curve of one class (Mann–Whitney U with average ranks for ties)."""
    s = _np(scores, "scores").astype(np.float64).reshape(-1)
    y = _np(positives, "positives").astype(bool).reshape(-1)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    ranks = np.empty(s.size)
    bounds = np.r_[0, np.flatnonzero(np.diff(ss)) + 1, s.size]
    for lo, hi in itertools.pairwise(bounds):
        ranks[order[lo:hi]] = (lo + hi + 1) / 2  # average 1-based rank of the tie group
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _per_class(
    scores: object, targets: object, fn: Callable[[object, object], float]
) -> np.ndarray:
    s = _np(scores, "scores")
    t = _np(targets, "targets")
    if s.shape != t.shape or s.ndim != 2:
        raise ValueError(
            f"Parameters `scores` and `targets` should both be N × C. Found {s.shape} and "
            f"{t.shape}."
        )
    return np.array([fn(s[:, c], t[:, c]) for c in range(s.shape[1])])


def mean_average_precision(scores: object, targets: object) -> float:
    """mAP over classes with at least one positive (multi-label; targets N × C multi-hot)."""
    values = _per_class(scores, targets, average_precision)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def mean_auc(scores: object, targets: object) -> float:
    """mAUC over classes with at least one positive and one negative."""
    values = _per_class(scores, targets, roc_auc)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
