"""Evaluation as in the paper (§3.1): clip top-1, video top-1/top-5 over 10 uniform clips
(softmax averaged per video), mAP/mAUC for multi-label; per head and for the heads' ensemble.

Each test video is decoded once (:class:`~benchmarks.train._views.VideoViews`); under
``torchrun`` every rank scores a shard and the per-video scores are gathered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.data import ClipDataset, SkipReport, mean_auc, mean_average_precision, video_topk
from benchmarks.train._data import make_loader
from benchmarks.train._distributed import DistInfo, all_gather
from benchmarks.train._views import VideoViews

__all__ = ["ENSEMBLE", "evaluate_videos", "primary_metric"]

ENSEMBLE = "ensemble"


def primary_metric(multi_label: bool) -> str:
    """The number a run is read by: video top-1 (single-label) or mAP (multi-label)."""
    return "mAP" if multi_label else "video_top1"


@torch.no_grad()
def evaluate_videos(
    model: nn.Module,
    dataset: ClipDataset,
    forward: Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    weights: Mapping[str, float],
    *,
    multi_label: bool,
    batch_size: int,
    workers: int,
    info: DistInfo,
    skips: SkipReport,
    progress: Callable[[Any], Any] = lambda it: it,
) -> dict[str, dict[str, float]]:
    """Score every view of every video of ``dataset`` (test mode) and compute the metrics.

    Args:
        model: the multi-head model (put in eval mode here).
        dataset: test-mode clips (10 uniform clips × crops per video).
        forward: ``forward(model, inputs) -> {head: logits}`` on the device, float32 out;
            it moves the inputs (and normalizes uint8 RGB views, ``normalize="device"``).
        weights: the ensemble's weights per head (the blend weights).
        multi_label: sigmoid + mAP/mAUC instead of softmax + top-k.
        batch_size: videos per batch. workers: DataLoader workers.
        info: the process group. skips: counts the unreadable videos.

    Returns:
        ``{head or "ensemble": {metric: value}}``; metrics ``clip_top1``, ``video_top1``,
        ``video_top5`` (single-label) or ``mAP``, ``mAUC`` (multi-label), plus ``videos``.
    """
    model.eval()
    views = VideoViews(dataset)
    loader = make_loader(
        views, batch_size, train=False, workers=workers, seed=0, rank=info.rank, world=info.world
    )
    act = torch.sigmoid if multi_label else (lambda z: torch.softmax(z, dim=-1))
    used = {h: float(w) for h, w in weights.items() if float(w) > 0}
    total_w = sum(used.values())
    per_video: dict[int, dict[str, np.ndarray]] = {}
    targets: dict[int, Any] = {}
    clip_ok: dict[int, dict[str, int]] = {}
    for batch in progress(loader):
        skips.update(batch)
        if batch.size == 0:
            continue
        inputs, target, index = batch
        b, v = index.shape[0], views.views_per_video
        flat = {m: x.flatten(0, 1) for m, x in inputs.items()}
        logits = forward(model, flat)
        probs = {h: act(z.float()).view(b, v, -1).cpu() for h, z in logits.items()}
        probs[ENSEMBLE] = sum(w * probs[h] for h, w in used.items()) / total_w
        for i, vid in enumerate(index.tolist()):
            per_video[vid] = {h: p[i].mean(0).numpy() for h, p in probs.items()}
            targets[vid] = target[i].numpy() if multi_label else int(target[i])
            if not multi_label:
                clip_ok[vid] = {
                    h: int((p[i].argmax(-1) == target[i]).sum()) for h, p in probs.items()
                }
    gathered = all_gather(info, (per_video, targets, clip_ok))
    per_video, targets, clip_ok = {}, {}, {}
    for pv, tg, ok in gathered:  # the shards' padding repeats a few videos: keyed, counted once
        per_video.update(pv)
        targets.update(tg)
        clip_ok.update(ok)
    videos = sorted(per_video)
    heads = list(per_video[videos[0]]) if videos else [*weights, ENSEMBLE]
    out: dict[str, dict[str, float]] = {}
    for h in heads:
        if not videos:
            out[h] = {"videos": 0}
            continue
        scores = np.stack([per_video[v][h] for v in videos])
        if multi_label:
            y = np.stack([targets[v] for v in videos])
            out[h] = {"mAP": mean_average_precision(scores, y), "mAUC": mean_auc(scores, y)}
        else:
            y = np.array([targets[v] for v in videos])
            top = video_topk(scores, y, np.arange(len(videos)), k=(1, 5), average="raw")
            out[h] = {
                "clip_top1": sum(clip_ok[v][h] for v in videos)
                / (len(videos) * views.views_per_video),
                "video_top1": top[1],
                "video_top5": top[5],
            }
        out[h]["videos"] = len(videos)
    return out
