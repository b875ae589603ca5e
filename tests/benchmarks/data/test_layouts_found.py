"""Layouts people have, found without configuration (issue 15, point 1).

Each layout is one the common downloaders write: Kinetics label folders with spaces or
underscores or none at all; Sports-1M class folders; EPIC-Kitchens participant folders,
the EPIC-100 download scripts' ``P01/videos/`` and the EPIC-55 release's ``videos/train/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import (
    KINETICS_PATH_TEMPLATE,
    ClipSpec,
    EpicKitchens55,
    Kinetics,
    SkippedSample,
    Sports1M,
    describe_template,
    detect_template,
    save_flow,
)

from .test_formats import EPIC_ROWS, copy, write_epic, write_labels

SPEC = ClipSpec(num_frames=4, crop_size=32, train_short_side=(32, 40), test_short_side=32)
HEADER = "label,youtube_id,time_start,time_end,split\n"
ROWS = [("air drumming", "GM-air00001", 3, 13), ("zumba", "_zumba00002", 0, 10)]


def kinetics_csv(path: Path) -> Path:
    path.write_text(HEADER + "".join(f'"{lab}",{yt},{s},{e},train\n' for lab, yt, s, e in ROWS))
    return path


def clip_name(youtube_id: str, start: int, end: int) -> str:
    return f"{youtube_id}_{start:06d}_{end:06d}.mp4"


@pytest.mark.parametrize(
    ("folder", "described"),
    [
        (lambda label: label, "<split>/<label>/"),
        (lambda label: label.replace(" ", "_"), "<split>/<label with underscores>/"),
        (None, "<split>/"),
    ],
    ids=["spaces", "underscores", "no-label-folders"],
)
def test_kinetics_layouts_are_found(media, tmp_path, folder, described):
    for label, ytid, start, end in ROWS:
        where = tmp_path / "train" if folder is None else tmp_path / "train" / folder(label)
        copy(media.tone, where / clip_name(ytid, start, end))
    ds = Kinetics(tmp_path, kinetics_csv(tmp_path / "train.csv"), spec=SPEC)
    assert all(Path(r.path).is_file() for r in ds.records)
    assert ds.layout == (
        f"videos: {described}<youtube_id>_<time_start:06d>_<time_end:06d>.mp4 "
        "(found 2 of the first 2)"
    )
    inputs, target = ds[0]  # decodes: the file found is the one the row names
    assert (inputs["rgb"].shape, target) == ((3, 4, 32, 32), 0)


def test_kinetics_flow_follows_the_video_layout(media, tmp_path):
    label, ytid, start, end = ROWS[0]
    copy(media.tone, tmp_path / "train" / "air_drumming" / clip_name(ytid, start, end))
    flow = tmp_path / "flow" / "train" / "air_drumming" / f"{ytid}_000003_000013.npy"
    save_flow(flow, np.zeros((49, 2, 24, 32), dtype=np.float32))
    csv = tmp_path / "train.csv"
    csv.write_text(HEADER + f'"{label}",{ytid},{start},{end},train\n')
    ds = Kinetics(tmp_path, csv, spec=SPEC, modalities=("rgb", "flow"))
    assert ds.records[0].flow_path == str(flow)
    assert "flow" in ds[0][0]


def test_kinetics_partial_download_and_explicit_template(media, tmp_path):
    # 1 of 2 videos in underscore folders, none elsewhere: the underscore layout wins
    _label, ytid, start, end = ROWS[0]
    copy(media.tone, tmp_path / "train" / "air_drumming" / clip_name(ytid, start, end))
    ds = Kinetics(tmp_path, kinetics_csv(tmp_path / "train.csv"), spec=SPEC)
    assert "<label with underscores>" in ds.layout
    assert "found 1 of the first 2" in ds.layout
    # nothing anywhere: the first (published) layout, so "not found" errors name it
    empty = Kinetics(tmp_path / "elsewhere", tmp_path / "train.csv", spec=SPEC)
    assert empty.path_template == KINETICS_PATH_TEMPLATE
    assert isinstance(empty[0], SkippedSample)
    # a template given is used as is, without looking anything up
    given = Kinetics(tmp_path, tmp_path / "train.csv", path_template="{youtube_id}.mp4")
    assert given.records[0].path == str(tmp_path / f"{ytid}.mp4")
    assert given.layout == "videos: <youtube_id>.mp4"


def test_kinetics_check_layout_names_the_templates_tried(tmp_path):
    with pytest.raises(ValueError, match=r"none of 2 media files checked.*also tried") as e:
        Kinetics.check_layout(tmp_path, kinetics_csv(tmp_path / "train.csv"))
    assert "{label_underscored}" in str(e.value)


PARTITION = (
    "https://www.youtube.com/watch?v=UDqivjS-lpI 168,169\n"
    "https://www.youtube.com/watch?v=ABPsSSS2uY0 5\n"
)


def test_sports1m_class_folders_are_found(media, tmp_path):
    part = tmp_path / "train_partition.txt"
    part.write_text(PARTITION)
    labels = write_labels(tmp_path / "labels.txt")
    names = [line for line in labels.read_text(encoding="utf-8").splitlines() if line]
    by_name, by_underscores, by_index = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for vid, label in (("UDqivjS-lpI", 168), ("ABPsSSS2uY0", 5)):
        copy(media.tone, by_name / names[label] / f"{vid}.mp4")
        copy(media.tone, by_underscores / names[label].replace(" ", "_") / f"{vid}.mp4")
        copy(media.tone, by_index / str(label) / f"{vid}.mp4")
    cases = [
        (by_name, "{label}/{youtube_id}.mp4", labels),
        (by_underscores, "{label_underscored}/{youtube_id}.mp4", labels),
        (by_index, "{label_index}/{youtube_id}.mp4", None),  # no labels.txt needed
    ]
    for root, template, labels_file in cases:
        ds = Sports1M(root, part, labels_file=labels_file, modalities=("rgb",), spec=SPEC)
        assert ds.path_template == template
        assert all(Path(r.path).is_file() for r in ds.records)
        Sports1M.check_layout(root, part, labels_file=labels_file)
    flat = Sports1M(tmp_path, part, modalities=("rgb",))  # nothing found: the flat layout
    assert flat.path_template == "{youtube_id}.mp4"


@pytest.mark.parametrize(
    "template",
    [
        "{participant_id}/{video_id}.MP4",
        "{participant_id}/videos/{video_id}.MP4",
        "videos/train/{participant_id}/{video_id}.MP4",
    ],
    ids=["participant", "epic100-scripts", "epic55-release"],
)
def test_epic_layouts_are_found(media, tmp_path, template):
    csv = write_epic(tmp_path / "annotations", EPIC_ROWS)
    for pid, vid in (("P01", "P01_01"), ("P26", "P26_02")):
        copy(media.tone, tmp_path / template.format(participant_id=pid, video_id=vid))
    ds = EpicKitchens55(tmp_path, csv, split="all", spec=SPEC)
    assert ds.path_template == template
    assert ds.layout.startswith(f"videos: {describe_template(template)} (found 4 of the first 4")
    assert all(Path(r.path).is_file() for r in ds.records)
    EpicKitchens55.check_layout(tmp_path, csv)


def test_detect_template_and_describe(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("x", "y"):
        (tmp_path / "b" / f"{name}.mp4").write_bytes(b"0")
    (tmp_path / "x.mp4").write_bytes(b"0")
    rows = [{"id": "x"}, {"id": "y"}, {"id": "z"}]
    assert detect_template(tmp_path, ["{id}.mp4", "b/{id}.mp4"], rows) == ("b/{id}.mp4", 2, 3)
    assert detect_template(tmp_path, ["{id}.mp4", "b/{id}.mp4"], rows, sample=1) == (
        "{id}.mp4",
        1,
        1,
    )
    assert detect_template(tmp_path, ["c/{id}.mp4", "d/{id}.mp4"], rows)[:2] == ("c/{id}.mp4", 0)
    with pytest.raises(ValueError, match="at least one path template"):
        detect_template(tmp_path, [], rows)
    assert describe_template("{split}/{label_underscored}/{t:06d}.mp4") == (
        "<split>/<label with underscores>/<t:06d>.mp4"
    )
