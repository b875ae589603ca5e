"""``check_layout``: a data root checked before training, per dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import AudioSet, EpicKitchens55, Kinetics, Sports1M, save_flow

from .test_formats import EPIC_ROWS, copy, write_epic, write_labels


def test_kinetics_check_layout(media, tmp_path):
    root, csv = media.kinetics_root, media.kinetics_csv
    assert Kinetics.check_layout(root, csv) is None  # 5 of 7 files present: fine
    with pytest.raises(ValueError, match=r"Data root '.*nowhere' does not exist; expected .*"):
        Kinetics.check_layout(tmp_path / "nowhere", csv)
    with pytest.raises(ValueError, match=r"is a file"):
        Kinetics.check_layout(media.tone, csv)
    with pytest.raises(ValueError, match=r"Annotation file not found.*Expected layout: <root>/"):
        Kinetics.check_layout(root, root / "annotations" / "absent.csv")
    # Videos downloaded flat (no split/label folders): nothing where the template says.
    with pytest.raises(ValueError, match=r"none of 7 media files checked exists, e\.g\. '.*") as e:
        Kinetics.check_layout(root, csv, path_template="{youtube_id}.mp4")
    message = str(e.value)
    assert "Expected layout: <root>/{youtube_id}.mp4" in message
    assert "holds ['annotations', 'train', 'val']" in message
    with pytest.raises(TypeError, match="root"):
        Kinetics.check_layout(3, csv)
    with pytest.raises(ValueError, match=r"`sample` should be a positive int\. Found 0"):
        Kinetics.check_layout(root, csv, sample=0)


def test_kinetics_check_layout_with_flow(tmp_path, media):
    (tmp_path / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\nzumba,aaaaaaaaaaa,0,2,train\n"
    )
    copy(media.tone, tmp_path / "train" / "zumba" / "aaaaaaaaaaa_000000_000002.mp4")
    Kinetics.check_layout(tmp_path, tmp_path / "train.csv")  # RGB + audio: fine
    with pytest.raises(ValueError, match=r"none of 1 flow files checked exists.*flow <root>/flow/"):
        Kinetics.check_layout(tmp_path, tmp_path / "train.csv", modalities=("rgb", "flow"))
    save_flow(
        tmp_path / "flow" / "train" / "zumba" / "aaaaaaaaaaa_000000_000002.npy",
        np.zeros((49, 2, 4, 4)),
    )
    Kinetics.check_layout(tmp_path, tmp_path / "train.csv", modalities=("rgb", "flow"))


def test_sports1m_check_layout_finds_per_class_folders(tmp_path, media):
    part = tmp_path / "train_partition.txt"
    part.write_text(
        "https://www.youtube.com/watch?v=UDqivjS-lpI 168,169\n"
        "https://www.youtube.com/watch?v=ABPsSSS2uY0 5\n"
    )
    labels = write_labels(tmp_path / "labels.txt")
    videos = tmp_path / "videos"
    copy(media.tone, videos / "t'ai chi ch'uan" / "UDqivjS-lpI.mp4")
    # Without labels.txt the class-name folders cannot be looked up: the error says where
    # the videos are. (With it, they are found without a template: test_layouts.py.)
    with pytest.raises(ValueError, match=r"per-class folders .*path_template='\{label\}/") as e:
        Sports1M.check_layout(videos, part)
    assert "t'ai chi ch'uan/UDqivjS-lpI.mp4" in str(e.value)
    per_class = "{label}/{youtube_id}.mp4"
    Sports1M.check_layout(videos, part, labels_file=labels, path_template=per_class)
    with pytest.raises(ValueError, match=r"none of 2 media files checked exists") as e:
        Sports1M.check_layout(tmp_path, part)  # nothing anywhere: no per-class hint
    assert "per-class" not in str(e.value)
    with pytest.raises(ValueError, match=r"train_partition.txt.gz.*Expected layout"):
        Sports1M.check_layout(videos, tmp_path / "train_partition.txt.gz")


def test_audioset_and_epic_check_layout(tmp_path, media):
    AudioSet.check_layout(media.audioset_root, media.audioset_csv, media.audioset_labels)
    with pytest.raises(ValueError, match=r"<root>/audio/\{ytid\}\.wav"):
        AudioSet.check_layout(
            media.audioset_root,
            media.audioset_csv,
            media.audioset_labels,
            path_template="audio/{ytid}.wav",
        )
    csv = write_epic(tmp_path, EPIC_ROWS)
    with pytest.raises(ValueError, match=r"none of 4 media files .*P01_01\.MP4"):
        EpicKitchens55.check_layout(tmp_path, csv)
    copy(media.tone, Path(tmp_path) / "P01" / "P01_01.MP4")
    EpicKitchens55.check_layout(tmp_path, csv)
    with pytest.raises(ValueError, match=r"Expected layout: <root>/\{participant_id\}"):
        EpicKitchens55.check_layout(tmp_path, tmp_path / "EPIC_missing.csv")
