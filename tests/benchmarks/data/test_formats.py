"""Published annotation lines (Kinetics, AudioSet, EPIC-55, Sports-1M) and the bugs they hit.

Each line below is written in the format of the released file (header and field layout
from the datasets' documentation); the issue-9 cases are the lines that broke the loaders.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from benchmarks.data import (
    AudioSet,
    ClipSpec,
    EpicKitchens55,
    Kinetics,
    SkippedSample,
    SkipReport,
    Sports1M,
    collate_clips,
    read_epic_classes,
)

SPEC = ClipSpec(num_frames=4, crop_size=32, train_short_side=(32, 40), test_short_side=32)


def copy(src: str, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(Path(src).read_bytes())
    return dst


# --- Kinetics -------------------------------------------------------------------------------

# Kinetics-400 train.csv / validate.csv (with is_cc); labels with spaces are quoted, ids may
# start with '-' or '_'.
K400_LINES = [
    "label,youtube_id,time_start,time_end,split,is_cc",
    "abseiling,-3B32lodo2M,59,69,train,0",
    '"air drumming",_dbcJuKJQNs,40,50,train,0',
    '"massaging person\'s head",--nQbRBEz2s,104,114,train,1',
    '"tying knot (not on a tie)",0A5p6Rzvxxk,3,13,train,0',
]
# Kinetics-600 files have no is_cc column.
K600_LINES = [
    "label,youtube_id,time_start,time_end,split",
    "abseiling,-3B32lodo2M,59,69,val",
    '"air drumming",_dbcJuKJQNs,40,50,val',
]


def test_kinetics400_published_lines(tmp_path, media):
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(K400_LINES) + "\n")
    copy(media.tone, tmp_path / "train" / "air drumming" / "_dbcJuKJQNs_000040_000050.mp4")
    ds = Kinetics(tmp_path, csv, split="train", spec=SPEC)
    assert ds.classes == [
        "abseiling",
        "air drumming",
        "massaging person's head",
        "tying knot (not on a tie)",
    ]
    assert [r.video_id for r in ds.records] == [
        "-3B32lodo2M",
        "_dbcJuKJQNs",
        "--nQbRBEz2s",
        "0A5p6Rzvxxk",
    ]
    assert ds.records[2].path == str(
        tmp_path / "train" / "massaging person's head" / "--nQbRBEz2s_000104_000114.mp4"
    )
    inputs, target = ds[1]
    assert (inputs["rgb"].shape, target) == ((3, 4, 32, 32), 1)
    assert ds[0].reason == "file not found"
    under = Kinetics(
        tmp_path,
        csv,
        path_template="{split}/{label_underscored}/{youtube_id}.mp4",
        spec=SPEC,
    )
    assert under.records[3].path.endswith("train/tying_knot_(not_on_a_tie)/0A5p6Rzvxxk.mp4")


def test_kinetics600_published_lines_and_float_times(tmp_path):
    csv = tmp_path / "validate.csv"
    csv.write_text("\n".join(K600_LINES) + "\n" + "zumba,ccccccccccc,5.0,15.0,val\n")
    ds = Kinetics(tmp_path, csv, split="val")
    assert ds.mode == "test"
    assert [r.target for r in ds.records] == [0, 1, 2]
    assert ds.records[2].path.endswith("val/zumba/ccccccccccc_000005_000015.mp4")


def test_kinetics_unlabelled_test_csv_and_broken_rows(tmp_path):
    test_csv = tmp_path / "test.csv"  # Kinetics-400/600 test.csv as released: no label
    test_csv.write_text("youtube_id,time_start,time_end,split\n-3B32lodo2M,59,69,test\n")
    with pytest.raises(ValueError, match=r"missing \['label'\].*test split without labels"):
        Kinetics(tmp_path, test_csv)
    short = tmp_path / "short.csv"
    short.write_text(K400_LINES[0] + "\nabseiling,-3B32lodo2M\n")
    with pytest.raises(ValueError, match=r"short.csv.*line 2"):
        Kinetics(tmp_path, short)
    empty_label = tmp_path / "empty.csv"
    empty_label.write_text(K400_LINES[0] + "\n" + K400_LINES[1] + "\n,_dbcJuKJQNs,40,50,train,0\n")
    with pytest.raises(ValueError, match="line 3"):
        Kinetics(tmp_path, empty_label)
    bad_time = tmp_path / "time.csv"
    bad_time.write_text(K400_LINES[0] + "\nabseiling,-3B32lodo2M,0:59,69,train,0\n")
    with pytest.raises(ValueError, match=r"line 2: time_start and time_end should be numbers"):
        Kinetics(tmp_path, bad_time)
    with pytest.raises(ValueError, match=r"fields \['labl'\]"):
        Kinetics(tmp_path, short, path_template="{labl}/{youtube_id}.mp4")


# --- AudioSet -------------------------------------------------------------------------------

SEGMENT_HEADER = [
    "# Segments csv created Sun Mar  5 10:54:31 2017",
    "# num_ytids=20371, num_segs=20371, num_unique_labels=527, num_positive_labels=51804",
    "# YTID, start_seconds, end_seconds, positive_labels",
]


def audioset(media, tmp_path: Path, lines: list[str], **kwargs) -> AudioSet:
    segments = tmp_path / "balanced_train_segments.csv"
    segments.write_text("\n".join(lines) + "\n")
    return AudioSet(tmp_path, segments, media.audioset_labels, spec=SPEC, **kwargs)


def test_audioset_resaved_row_with_unquoted_labels_is_an_error(tmp_path, media):
    # A spreadsheet re-save drops the quotes: five fields, the second label would be lost.
    lines = [*SEGMENT_HEADER, "--PJHxphWEs,30.000,40.000,/m/09x0r,/m/04rlf"]
    with pytest.raises(ValueError, match=r"balanced_train_segments.csv'\) line 4 .*Found 5") as e:
        audioset(media, tmp_path, lines)
    assert "lost its quotes" in str(e.value)
    quoted = [*SEGMENT_HEADER, '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"']
    assert audioset(media, tmp_path, quoted).records[0].target == (0, 1)


def test_audioset_header_without_hash_names_file_line_and_fix(tmp_path, media):
    lines = [
        "YTID, start_seconds, end_seconds, positive_labels",
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"',
    ]
    with pytest.raises(ValueError, match=r"line 1 is a header line without its '#'.*add it"):
        audioset(media, tmp_path, lines)
    bad = [*SEGMENT_HEADER, '--PJHxphWEs, thirty, 40.000, "/m/09x0r"']
    with pytest.raises(ValueError, match=r"line 4: start_seconds and end_seconds"):
        audioset(media, tmp_path, bad)
    three = [*SEGMENT_HEADER, "--PJHxphWEs, 30.000, 40.000"]
    with pytest.raises(ValueError, match=r"line 4 should have 4 fields"):
        audioset(media, tmp_path, three)


def test_audioset_untrimmed_segment_past_end_of_truncated_file_is_skipped(tmp_path, media):
    # trimmed=False: the 2 s local file is a truncated download of a video whose labelled
    # segment starts at 30 s. Before the fix the loader returned the file's last frames.
    lines = [
        *SEGMENT_HEADER,
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/m/04rlf"',
        '-0RWZT-miFs, 0.500, 10.500, "/m/0jbk"',
    ]
    copy(media.tone, tmp_path / "--PJHxphWEs.mp4")
    copy(media.tone, tmp_path / "-0RWZT-miFs.mp4")
    for modalities in [("rgb", "audio"), ("audio",), ("rgb",)]:
        ds = audioset(media, tmp_path, lines, trimmed=False, modalities=modalities)
        skipped = ds[0]
        assert isinstance(skipped, SkippedSample)
        assert skipped.reason.startswith("segment past end of file: the segment starts at 30.00")
        inputs, _target = ds[1]  # starts inside the file: kept
        assert set(inputs) == set(modalities)
    trimmed = audioset(media, tmp_path, lines)  # trimmed files have no offset to check
    assert not isinstance(trimmed[0], SkippedSample)
    report = SkipReport()
    ds = audioset(media, tmp_path, lines, trimmed=False)
    list(report.track(DataLoader(ds, batch_size=2, collate_fn=collate_clips)))
    assert report.by_reason() == {"segment past end of file": 1}
    assert (report.samples, report.count) == (1, 1)


# --- EPIC-Kitchens-55 -------------------------------------------------------------------------

EPIC_HEADER = (
    "uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,"
    "stop_frame,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes"
)
EPIC_ROWS = [
    "0,P01,P01_01,open door,00:00:00.14,00:00:01.20,8,72,open,3,door,8,['door'],[8]",
    "1,P01,P01_01,take cup,00:00:01.00,00:00:01.90,60,114,take,0,cup,13,['cup'],[13]",
    "2,P01,P01_01,put pan on lid,00:00:00.50,00:00:01.50,30,90,put,1,pan,5,\"['pan', 'lid']\","
    '"[5, 10]"',
    "3,P26,P26_02,open fridge,00:00:00.50,00:00:01.50,30,90,open,3,fridge,2,['fridge'],[2]",
]
REAL_VERBS = ["take", "put", "wash", "open", "close"]  # the first EPIC-55 verb classes


def write_epic(folder: Path, rows: list[str], classes: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "EPIC_train_action_labels.csv"
    csv.write_text(EPIC_HEADER + "\n" + "\n".join(rows) + "\n")
    if classes:  # 125 verbs / 352 nouns in the release's format; names past the first: ours
        verbs = [*REAL_VERBS, *(f"verb-{i}" for i in range(len(REAL_VERBS), 125))]
        nouns = [f"noun-{i}" for i in range(352)]
        nouns[2], nouns[5], nouns[8], nouns[13] = "fridge", "pan", "door", "cup"
        (folder / "EPIC_verb_classes.csv").write_text(
            "verb_id,class_key,verbs\n"
            + "".join(f"{i},{v},\"['{v}', '{v}-x']\"\n" for i, v in enumerate(verbs))
        )
        (folder / "EPIC_noun_classes.csv").write_text(
            "noun_id,class_key,nouns\n"
            + "".join(f"{i},{n},\"['{n}']\"\n" for i, n in enumerate(nouns))
        )
    return csv


def test_epic_reads_class_lists_beside_annotations(tmp_path):
    csv = write_epic(tmp_path, EPIC_ROWS)
    train = EpicKitchens55(tmp_path, csv, split="train")
    assert {r.target for r in train.records} == {0, 1, 3}  # 3 of the 125 verbs in the split
    assert train.num_classes == 125
    assert train.classes[:5] == REAL_VERBS
    noun = EpicKitchens55(tmp_path, csv, target="noun")
    assert noun.num_classes == 352
    assert [noun.classes[r.target] for r in noun.records] == ["door", "cup", "pan"]
    action = EpicKitchens55(tmp_path, csv, split="all", target="action")
    assert action.action_classes == [(0, 13), (1, 5), (3, 2), (3, 8)]
    assert action.num_classes == 4
    assert action.classes == ["take cup", "put pan", "open fridge", "open door"]
    bare = write_epic(tmp_path / "no_classes", EPIC_ROWS, classes=False)
    assert EpicKitchens55(tmp_path, bare).num_classes is None  # as before: nothing to read
    given = EpicKitchens55(tmp_path, bare, verb_classes=tmp_path / "EPIC_verb_classes.csv")
    assert given.num_classes == 125
    assert read_epic_classes(tmp_path / "EPIC_noun_classes.csv")[8] == "door"


def test_epic_empty_or_unknown_class_names_file_line_column(tmp_path):
    empty = EPIC_ROWS[0].replace(",open,3,door,", ",open,,door,")
    csv = write_epic(tmp_path, [EPIC_ROWS[1], empty])
    with pytest.raises(ValueError, match=r"EPIC_train_action_labels.csv'\) line 3, column 'verb_c"):
        EpicKitchens55(tmp_path, csv)
    beyond = EPIC_ROWS[0].replace(",door,8,", ",door,352,")
    csv = write_epic(tmp_path, [beyond])
    with pytest.raises(ValueError, match=r"line 2, column 'noun_class': class 352 is outside"):
        EpicKitchens55(tmp_path, csv)
    (tmp_path / "EPIC_verb_classes.csv").write_text("verb,key\n0,take\n")
    with pytest.raises(ValueError, match="verb_id,class_key,verbs"):
        read_epic_classes(tmp_path / "EPIC_verb_classes.csv")
    (tmp_path / "EPIC_verb_classes.csv").write_text("verb_id,class_key,verbs\n0,take,[]\n2,x,[]\n")
    with pytest.raises(ValueError, match=r"0\.\.C-1"):
        read_epic_classes(tmp_path / "EPIC_verb_classes.csv")


def test_epic_segment_past_end_of_truncated_video_is_skipped(tmp_path, media):
    # The local P01_01.MP4 is 2 s (a truncated download); the second action starts at 1 h.
    late = "4,P01,P01_01,wash cup,01:00:00.00,01:00:02.00,216000,216120,wash,2,cup,13,['cup'],[13]"
    csv = write_epic(tmp_path, [EPIC_ROWS[0], late])
    copy(media.tone, tmp_path / "P01" / "P01_01.MP4")
    ds = EpicKitchens55(tmp_path, csv, split="all", mode="train", spec=SPEC)
    _inputs, target = ds[0]
    assert target == 3
    skipped = ds[1]
    assert isinstance(skipped, SkippedSample)
    assert "starts at 3600.00 s, the file lasts 2.00 s" in skipped.reason
    test_mode = EpicKitchens55(tmp_path, csv, split="all", spec=SPEC)
    assert all(isinstance(test_mode[i], SkippedSample) for i in range(10, 20))
    # Within the last frame's half-frame tolerance (1.99 s of 2 s at 25 fps): no frame starts
    # at or after the segment, so it is past the end too, not the file's last frames.
    edge = late.replace("01:00:00.00,01:00:02.00", "00:00:01.99,00:00:02.50")
    csv = write_epic(tmp_path, [EPIC_ROWS[0], edge])
    ds = EpicKitchens55(tmp_path, csv, split="all", mode="train", spec=SPEC)
    assert ds[1].reason.startswith("segment past end of file: the segment starts at 1.99 s")
    inside = late.replace("01:00:00.00,01:00:02.00", "00:00:01.90,00:00:02.50")
    csv = write_epic(tmp_path, [EPIC_ROWS[0], inside])
    inputs, _ = EpicKitchens55(tmp_path, csv, split="all", mode="train", spec=SPEC)[1]
    assert inputs["rgb"].shape == (3, 4, 32, 32)  # frames 47-49 (1.88-1.96 s) exist: kept


# --- Sports-1M --------------------------------------------------------------------------------

# labels.txt as released: UTF-8, one name per line, line i = class i (487 lines).
LABELS = ["boomerang", "boxing", "bowling", "candlepin bowling", "bowls", "skittles (sport)"]


def write_labels(path: Path) -> Path:
    names = [*LABELS, *(f"sport {i}" for i in range(len(LABELS), 487))]
    names[99] = "yağlı güreş"
    names[168], names[169] = "t'ai chi ch'uan", "kyūdō"
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def test_sports1m_published_lines_gzip_and_utf8_labels(tmp_path):
    part = tmp_path / "train_partition.txt.gz"
    with gzip.open(part, "wt") as f:  # the release ships the lists gzipped
        f.write("https://www.youtube.com/watch?v=UDqivjS-lpI 168,169\n")
        f.write("https://www.youtube.com/watch?v=ABPsSSS2uY0 99\n")
    labels = write_labels(tmp_path / "labels.txt")
    ds = Sports1M(tmp_path, part, labels_file=labels, multi_label=True)
    assert len(ds.classes) == 487
    assert ds.classes[99] == "yağlı güreş"
    assert [r.target for r in ds.records] == [(168, 169), (99,)]
    assert ds.records[0].path == str(tmp_path / "UDqivjS-lpI.mp4")
    bad = tmp_path / "bad.txt"
    bad.write_text("https://www.youtube.com/watch?v=UDqivjS-lpI boxing\n")
    with pytest.raises(ValueError, match=r"line 1 .*int labels"):
        Sports1M(tmp_path, bad)


def test_sports1m_per_class_folder_layout(tmp_path, media):
    part = tmp_path / "train_partition.txt"
    part.write_text(
        "https://www.youtube.com/watch?v=UDqivjS-lpI 168,169\n"
        "https://www.youtube.com/watch?v=ABPsSSS2uY0 5\n"
    )
    labels = write_labels(tmp_path / "labels.txt")
    copy(media.tone, tmp_path / "videos" / "t'ai chi ch'uan" / "UDqivjS-lpI.mp4")
    ds = Sports1M(
        tmp_path / "videos",
        part,
        labels_file=labels,
        path_template="{label}/{youtube_id}.mp4",
        spec=SPEC,
    )
    assert ds.records[1].path == str(tmp_path / "videos" / "skittles (sport)" / "ABPsSSS2uY0.mp4")
    inputs, target = ds[0]
    assert (set(inputs), target) == ({"rgb", "audio"}, 168)
    by_index = Sports1M(tmp_path, part, path_template="{label_index}/{youtube_id}.mp4")
    assert by_index.records[0].path == str(tmp_path / "168" / "UDqivjS-lpI.mp4")
    underscored = Sports1M(
        tmp_path, part, labels_file=labels, path_template="{label_underscored}/{youtube_id}.mp4"
    )
    assert underscored.records[1].path.endswith("skittles_(sport)/ABPsSSS2uY0.mp4")
    # Before: a bare KeyError: 'label'. Now: what is missing and how to fix it.
    with pytest.raises(ValueError, match=r"names class folders .*pass `labels_file`"):
        Sports1M(tmp_path, part, path_template="{label}/{youtube_id}.mp4")
    short = tmp_path / "short_labels.txt"
    short.write_text("boomerang\nboxing\n")
    with pytest.raises(ValueError, match="names 2 classes; `partition` uses label 169"):
        Sports1M(tmp_path, part, labels_file=short)
