"""`train` on the layouts people have, and nothing silent about their files (issue 15).

Generated data roots (mp4 + AAC from ``write_test_video``, official annotation names):
label folders with underscores, no label folders, a path template from the config, too many
missing media, missing/empty/unreadable media printed on the console, annotation files that
do not parse, and unknown AudioSet label ids.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Roots
from .test_smoke import _run_on

LABELS = ["air drumming", "abseiling", "zumba"]
TRAIN = [(LABELS[i % 3], f"k{i:010d}", i, i + 10) for i in range(12)]
VAL = [(LABELS[i % 3], f"v{i:010d}", 0, 10) for i in range(3)]
HEADER = ["label", "youtube_id", "time_start", "time_end", "split"]


def _clip(row: tuple[str, str, int, int]) -> str:
    _, ytid, start, end = row
    return f"{ytid}_{start:06d}_{end:06d}.mp4"


def kinetics(
    roots: Roots,
    root: Path,
    where: Callable[[str, tuple[str, str, int, int]], str],
    skip: tuple[int, ...] = (),
) -> Path:
    """A Kinetics root: ``annotations/{train,validate}.csv``, each video at ``where(split,
    row)``; train rows ``skip`` have no file."""
    for split, rows in (("train", TRAIN), ("val", VAL)):
        for i, row in enumerate(rows):
            if split == "train" and i in skip:
                continue
            dst = root / where(split, row)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(roots.sources[i % 4], dst)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", TRAIN), ("validate.csv", VAL)):
        with open(root / "annotations" / name, "w", newline="") as f:
            csv.writer(f).writerows([HEADER, *([*r, "train"] for r in rows)])
    return root


def underscores(split: str, row: tuple[str, str, int, int]) -> str:
    return f"{split}/{row[0].replace(' ', '_')}/{_clip(row)}"


def no_label_folders(split: str, row: tuple[str, str, int, int]) -> str:
    return f"{split}/{_clip(row)}"


def spaces(split: str, row: tuple[str, str, int, int]) -> str:
    return f"{split}/{row[0]}/{_clip(row)}"


def test_label_folders_with_underscores_train_on_every_video(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = kinetics(roots, tmp_path / "kinetics", underscores)
    assert _run_on(root, tmp_path / "run") == 0
    out = capsys.readouterr().out
    line = "<split>/<label with underscores>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4"
    assert f"train videos: {line} (found 12 of the first 12)" in out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "file not found" not in report["skipped"]["by_reason"]
    assert report["skipped"]["train"] == 0


def test_videos_without_label_folders_are_found(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = kinetics(roots, tmp_path / "kinetics", no_label_folders)
    assert _run_on(root, tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "train videos: <split>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4 (found" in out
    assert "test videos: <split>/<youtube_id>_" in out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert "file not found" not in report["skipped"]["by_reason"]


def test_path_template_config_key(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = kinetics(roots, tmp_path / "kinetics", lambda split, row: f"clips/{row[1]}.mp4")
    template = ("--set", "data.path_template=clips/{youtube_id}.mp4")
    assert _run_on(root, tmp_path / "run", *template) == 0
    assert "train videos: clips/<youtube_id>.mp4\n" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "bad", "--set", "data.path_template=clips/{labl}.mp4")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Config key `data.path_template`" in err
    assert "'labl'" in err


def test_too_many_missing_media_is_an_error_naming_template_and_paths(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = kinetics(roots, tmp_path / "kinetics", spaces, skip=(2, 5, 7))
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "3 of 12 train media files (25%) are missing" in err
    assert "Template tried: <root>/{split}/{label}/{youtube_id}_" in err
    assert str(root / spaces("train", TRAIN[2])) in err
    assert "data.max_missing" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert _run_on(root, tmp_path / "run", "--set", "data.max_missing=0.3") == 0


def test_missing_empty_and_unreadable_media_are_printed(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = kinetics(roots, tmp_path / "kinetics", spaces, skip=(4,))
    empty, garbage = root / spaces("train", TRAIN[1]), root / spaces("train", TRAIN[6])
    empty.write_bytes(b"")
    garbage.write_bytes(bytes(range(256)) * 8)
    assert _run_on(root, tmp_path / "run") == 0
    out = capsys.readouterr().out
    missing = root / spaces("train", TRAIN[4])
    assert "train media: 1 of 12 files missing (8.3%; skipped when loaded" in out
    assert str(missing) in out
    assert f"train media: 1 of 12 files are empty (0 bytes; skipped when loaded): '{empty}'" in out
    skipped = out[out.index("skipped media (") :]
    assert "file not found:" in skipped
    for path in (missing, empty, garbage):
        assert str(path) in skipped


@pytest.mark.parametrize(
    ("lines", "line"),
    [
        (['"air drumming,k0000000000,0,10,train', 'air drumming",k0000000001,1,11,train'], 2),
        (["zumba,k0000000000,0,10,train", 'abseiling,"k0000000001,1,11,train'], 3),
        (["zumba,k0000000000"], 2),  # short row
        (["zumba,k0000000000,0:10,10,train"], 2),  # non-numeric time
    ],
    ids=["unclosed-quote", "quote-never-closed", "short-row", "non-numeric-time"],
)
def test_kinetics_csv_errors_are_one_line_naming_file_and_line(
    roots: Roots,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    lines: list[str],
    line: int,
) -> None:
    root = kinetics(roots, tmp_path / "kinetics", spaces)
    rows = [",".join(HEADER), *lines, *(",".join(map(str, [*r, "train"])) for r in TRAIN[2:])]
    (root / "annotations" / "train.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"train.csv' line {line}" in err or f"train.csv') line {line}" in err
    assert "Traceback" not in err


def audioset(roots: Roots, root: Path, edit: Callable[[list[str]], list[str]]) -> Path:
    """The generated AudioSet root with its train segment CSV's lines passed through ``edit``."""
    shutil.copytree(roots.audioset, root)
    train = root / "unbalanced_train_segments.csv"
    train.write_text("\n".join(edit(train.read_text().splitlines())) + "\n")
    return root


def _replace(index: int, text: str) -> Callable[[list[str]], list[str]]:
    def edit(lines: list[str]) -> list[str]:
        return [text if i == index else line for i, line in enumerate(lines)]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_replace(5, "tr000000002,30.000,40.000,/m/09x0r,/m/04rlf"), r"line 6 should have 4"),
        (_replace(0, "YTID, start_seconds, end_seconds, positive_labels"), r"line 1 is a header"),
        (_replace(4, 'tr000000001, 30.000, 40.000, "/m/09x0r'), r"line 5 does not parse"),
    ],
    ids=["five-fields", "header-without-hash", "unclosed-quote"],
)
def test_audioset_csv_errors_are_one_line(
    roots: Roots,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[list[str]], list[str]],
    message: str,
) -> None:
    root = audioset(roots, tmp_path / "audioset", edit)
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run", config="mini_audioset_rgb_audio.toml")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unbalanced_train_segments.csv" in err
    assert message.replace("\\", "") in err
    assert "Traceback" not in err


def test_unknown_audioset_label_ids_are_printed_and_an_error_above_the_limit(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1 of 16 train rows names an id that class_labels_indices.csv does not list
    edit = _replace(7, 'tr000000004, 30.000, 40.000, "/m/09x0r,/m/zzzz"')
    root = audioset(roots, tmp_path / "audioset", edit)
    config = "mini_audioset_rgb_audio.toml"
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run", config=config)  # default limit: 1% of the rows
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "1 of 16 rows (6.2%, first on line 8) name label ids missing" in err
    assert "/m/zzzz (1)" in err
    assert "max_unknown_labels" in err
    assert (
        _run_on(root, tmp_path / "run", "--set", "data.max_unknown_labels=0.1", config=config) == 0
    )
    out = capsys.readouterr().out
    assert "unknown label ids: " in out
    assert "/m/zzzz (1)" in out
