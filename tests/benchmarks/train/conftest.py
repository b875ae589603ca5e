"""Tiny generated media laid out as each dataset's published on-disk format, for train tests."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.data import save_flow, write_test_video

CONFIGS = Path(__file__).resolve().parents[3] / "benchmarks" / "configs"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _csv(path: Path, header: list[str] | None, rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


def _put(dst: Path, src: str) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(Path(src).read_bytes())


def make_flow(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """A ``(frames, 2, height, width)`` flow field: frame ``i`` is ``i + seed`` px right plus
    a smooth random pattern, ``-(i + seed) / 2`` px down (so a clip's flow names its frames)."""
    g = np.random.default_rng(seed)
    i = np.arange(frames, dtype=np.float32)[:, None, None] + seed
    pattern = g.standard_normal((1, height, width)).astype(np.float32)
    u = np.broadcast_to(i, (frames, height, width)) + pattern
    v = np.broadcast_to(-i / 2, (frames, height, width)) - pattern
    return np.stack([u, v], 1)


@dataclass
class Roots:
    kinetics: Path
    sports1m: Path
    audioset: Path
    epic: Path
    sources: list[str]


@pytest.fixture(scope="session")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    base = tmp_path_factory.mktemp("train_media")
    src = [
        write_test_video(base / f"src{i}.mp4", seconds=1.0, fps=10, size=(48, 40), seed=i)
        for i in range(4)
    ]
    long = write_test_video(base / "long.mp4", seconds=4.0, fps=10, size=(48, 40), seed=9)

    # Kinetics: annotations/{train,validate}.csv; <split>/<label>/<ytid>_<s:06d>_<e:06d>.mp4
    kin = base / "kinetics"
    labels = ["abseiling", "zumba"]
    rows = []
    for i in range(12):
        label, ytid = labels[i % 2], f"kin{i:08d}"
        rows.append([label, ytid, 0, 1, "train"])
        if i != 11:  # the last one is missing on disk: skipped and counted
            _put(kin / "train" / label / f"{ytid}_000000_000001.mp4", src[i % 4])
    (kin / "train" / labels[0] / "kin00000010_000000_000001.mp4").write_bytes(b"not a video\n")
    # Precomputed flow (Table 4), 9 fields per 10-frame video at half the resolution (the
    # loader resizes): kin00000009 has its video but no flow file (skipped and counted).
    for i in range(11):
        if i != 9:
            save_flow(
                kin / "flow" / "train" / labels[i % 2] / f"kin{i:08d}_000000_000001.npy",
                make_flow(9, 20, 24, seed=i % 4),
            )
    _csv(
        kin / "annotations/train.csv",
        ["label", "youtube_id", "time_start", "time_end", "split"],
        rows,
    )
    rows = []
    for i in range(4):
        label, ytid = labels[i % 2], f"val{i:08d}"
        rows.append([label, ytid, 0, 1])
        _put(kin / "val" / label / f"{ytid}_000000_000001.mp4", src[(i + 1) % 4])
        save_flow(
            kin / "flow" / "val" / label / f"{ytid}_000000_000001.npy",
            make_flow(9, 20, 24, seed=(i + 1) % 4),
        )
    _csv(kin / "annotations/validate.csv", ["label", "youtube_id", "time_start", "time_end"], rows)

    # Sports-1M: {train,test}_partition.txt ("URL l1,l2"), labels.txt; videos/<ytid>.mp4
    sp = base / "sports1m"
    (sp / "labels.txt").parent.mkdir(parents=True)
    (sp / "labels.txt").write_text("".join(f"sport {i}\n" for i in range(487)))
    for split, n in (("train", 12), ("test", 4)):
        lines = []
        for i in range(n):
            ytid = f"{split[:2]}{i:09d}"
            lines.append(f"https://www.youtube.com/watch?v={ytid} {i % 3},{(i + 1) % 3}\n")
            _put(sp / "videos" / f"{ytid}.mp4", src[i % 4])
        (sp / f"{split}_partition.txt").write_text("".join(lines))

    # AudioSet: class_labels_indices.csv, segment CSVs (3 '#' lines); segments/<ytid>.mp4
    au = base / "audioset"
    mids = ["/m/09x0r", "/m/04rlf", "/m/0jbk"]
    _csv(
        au / "class_labels_indices.csv",
        ["index", "mid", "display_name"],
        [
            [i, m, n]
            for i, (m, n) in enumerate(zip(mids, ["Speech", "Music", "Animal"], strict=True))
        ],
    )
    for name, n in (("unbalanced_train_segments.csv", 16), ("eval_segments.csv", 4)):
        head = [
            "# Segments csv created Sun Mar  5 10:54:31 2017",
            f"# num_ytids={n}, num_segs={n}, num_unique_labels=3, num_positive_labels={n}",
            "# YTID, start_seconds, end_seconds, positive_labels",
        ]
        body = []
        for i in range(n):
            ytid = f"{name[:2]}{i:09d}"
            body.append(f'{ytid}, 30.000, 40.000, "{mids[i % 3]},{mids[(i + 1) % 3]}"')
            _put(au / "segments" / f"{ytid}.mp4", src[i % 4])
        (au / name).write_text("\n".join(head + body) + "\n")

    # EPIC-Kitchens-55: EPIC_train_action_labels.csv; <participant>/<video_id>.MP4
    ep = base / "epic"
    header = [
        "uid", "participant_id", "video_id", "narration", "start_timestamp", "stop_timestamp",
        "start_frame", "stop_frame", "verb", "verb_class", "noun", "noun_class", "all_nouns",
        "all_noun_classes",
    ]  # fmt: skip
    rows = []
    for i in range(14):
        pid = "P01" if i < 10 else "P26"  # P26: an unseen (validation) kitchen
        vid = f"{pid}_01"
        start = 0.2 * (i % 8)
        verb, noun = i % 2, i % 3
        rows.append([
            i, pid, vid, f"verb{verb} noun{noun}", f"00:00:{start:05.2f}",
            f"00:00:{start + 1.5:05.2f}", int(start * 60), int((start + 1.5) * 60),
            f"verb{verb}", verb, f"noun{noun}", noun, f"['noun{noun}']", f"[{noun}]",
        ])  # fmt: skip
    for pid in ("P01", "P26"):
        _put(ep / pid / f"{pid}_01.MP4", long)
    _csv(ep / "EPIC_train_action_labels.csv", header, rows)
    return Roots(kin, sp, au, ep, src)
