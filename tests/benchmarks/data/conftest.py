"""Tiny generated media laid out as Kinetics, AudioSet, Sports-1M and EPIC-Kitchens would be."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import write_test_video

FPS = 25
SIZE = (64, 48)


def corrupt_copy(src: str, dst: str, keep: int = 300) -> str:
    """A truncated copy: the first ``keep`` bytes only."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data[:keep])
    return dst


def garbage_file(dst: str) -> str:
    """Text bytes with an mp4 name (deterministic, so the failure mode is too)."""
    with open(dst, "wb") as f:
        f.write(b"this is not a video file\n" * 200)
    return dst


def damaged_copy(src: str, dst: str) -> str:
    """A copy whose header is intact but whose media data is overwritten with noise."""
    data = bytearray(Path(src).read_bytes())
    lo, hi = data.index(b"mdat") + 2000, data.index(b"moov") - 8  # inside the media data
    data[lo:hi] = np.random.default_rng(0).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return dst


@dataclass
class Media:
    root: Path
    tone: str  # 2 s, 25 fps, 64x48, 16 kHz tone
    tone44k: str  # 2 s, audio at 44.1 kHz
    short: str  # 0.4 s (10 frames)
    no_audio: str
    silent: str
    truncated: str
    garbage: str
    damaged: str
    kinetics_root: Path
    kinetics_csv: Path
    kinetics_val_csv: Path
    audioset_root: Path
    audioset_csv: Path
    audioset_labels: Path


def _write_csv(path: Path, header: list[str] | None, rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    root = tmp_path_factory.mktemp("media")
    tone = write_test_video(root / "tone.mp4", seconds=2.0, fps=FPS, size=SIZE)
    tone44k = write_test_video(root / "tone44k.mp4", seconds=2.0, sample_rate=44100, seed=1)
    short = write_test_video(root / "short.mp4", seconds=0.4, fps=FPS, size=SIZE, seed=2)
    no_audio = write_test_video(root / "noaudio.mp4", seconds=1.0, audio="none")
    silent = write_test_video(root / "silent.mp4", seconds=1.0, audio="silent")
    truncated = corrupt_copy(tone, str(root / "truncated.mp4"))
    garbage = garbage_file(str(root / "garbage.mp4"))
    damaged = damaged_copy(tone, str(root / "damaged.mp4"))

    # Kinetics: <root>/<split>/<label>/<ytid>_<start:06d>_<end:06d>.mp4
    kin = root / "kinetics"
    train_rows = [
        ["abseiling", "aaaaaaaaaaa", 10, 12, "train"],
        ["abseiling", "bbbbbbbbbbb", 0, 2, "train"],
        ["zumba", "ccccccccccc", 5, 7, "train"],
        ["zumba", "ddddddddddd", 3, 5, "train"],  # no audio stream
        ["juggling balls", "eeeeeeeeeee", 1, 3, "train"],  # truncated file
        ["juggling balls", "fffffffffff", 8, 10, "train"],  # missing file
        ["zumba", "ggggggggggg", 0, 1, "train"],  # silent audio
    ]
    sources = [tone, tone44k, short, no_audio, truncated, None, silent]
    for (label, ytid, s, e, split), src in zip(train_rows, sources, strict=True):
        if src is None:
            continue
        dst = kin / split / label / f"{ytid}_{s:06d}_{e:06d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(src).read_bytes())
    kinetics_csv = _write_csv(
        kin / "annotations" / "train.csv",
        ["label", "youtube_id", "time_start", "time_end", "split"],
        train_rows,
    )
    val_rows = [["zumba", "hhhhhhhhhhh", 0, 2], ["abseiling", "iiiiiiiiiii", 4, 6]]
    for (label, ytid, s, e), src in zip(val_rows, [tone, tone44k], strict=True):
        dst = kin / "val" / label / f"{ytid}_{s:06d}_{e:06d}.mp4"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(src).read_bytes())
    kinetics_val_csv = _write_csv(  # no `split` column, as some K-600/700 files
        kin / "annotations" / "validate.csv",
        ["label", "youtube_id", "time_start", "time_end"],
        val_rows,
    )

    # AudioSet: segment CSV with 3 comment lines, class_labels_indices.csv
    aud = root / "audioset"
    aud.mkdir()
    labels_csv = _write_csv(
        aud / "class_labels_indices.csv",
        ["index", "mid", "display_name"],
        [[0, "/m/09x0r", "Speech"], [1, "/m/04rlf", "Music"], [2, "/m/0jbk", "Animal"]],
    )
    seg_lines = [
        "# Segments csv created Sun Mar  5 10:54:31 2017",
        "# num_ytids=4, num_segs=4, num_unique_labels=3, num_positive_labels=6",
        "# YTID, start_seconds, end_seconds, positive_labels",
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"',
        '-0RWZT-miFs, 420.000, 430.000, "/m/0jbk"',
        '-1nilez17Dg, 30.000, 40.000, "/m/04rlf,/m/0jbk,/m/09x0r"',
        '-missingfil, 0.000, 10.000, "/m/04rlf"',
    ]
    (aud / "eval_segments.csv").write_text("\n".join(seg_lines) + "\n")
    for ytid, src in [("--PJHxphWEs", tone), ("-0RWZT-miFs", tone44k), ("-1nilez17Dg", no_audio)]:
        (aud / f"{ytid}.mp4").write_bytes(Path(src).read_bytes())
    return Media(
        root=root,
        tone=tone,
        tone44k=tone44k,
        short=short,
        no_audio=no_audio,
        silent=silent,
        truncated=truncated,
        garbage=garbage,
        damaged=damaged,
        kinetics_root=kin,
        kinetics_csv=kinetics_csv,
        kinetics_val_csv=kinetics_val_csv,
        audioset_root=aud,
        audioset_csv=aud / "eval_segments.csv",
        audioset_labels=labels_csv,
    )
