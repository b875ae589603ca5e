"""The published formats end to end on generated media, bad files included."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset

from benchmarks.data import (
    AudioSet,
    ClipBatch,
    ClipDataset,
    ClipRecord,
    ClipSpec,
    EpicKitchens55,
    FrameNormalizer,
    Kinetics,
    SkippedSample,
    SkipReport,
    Sports1M,
    collate_clips,
    mini_audioset,
    parse_timestamp,
    uniform_sample,
    youtube_id,
)

SPEC = ClipSpec(num_frames=8, crop_size=32, train_short_side=(32, 40), test_short_side=32)


def kinetics(media, **kwargs):
    return Kinetics(media.kinetics_root, media.kinetics_csv, split="train", spec=SPEC, **kwargs)


def test_kinetics_train_samples_and_skips(media):
    ds = kinetics(media)
    assert ds.classes == ["abseiling", "juggling balls", "zumba"]  # sorted
    assert [r.target for r in ds.records] == [0, 0, 2, 2, 1, 1, 2]
    assert ds.records[0].path.endswith("train/abseiling/aaaaaaaaaaa_000010_000012.mp4")
    inputs, target = ds[0]
    assert set(inputs) == {"rgb", "audio"}
    assert inputs["rgb"].shape == (3, 8, 32, 32)
    assert inputs["rgb"].dtype == torch.float32
    assert inputs["audio"].shape == (1, 100, 40)
    assert target == 0
    assert abs(float(inputs["rgb"].mean())) < 3  # normalized scale
    short = ds[2]  # 0.4 s video: clip longer than the video, frames loop
    assert short[0]["rgb"].shape == (3, 8, 32, 32)
    reasons = {i: ds[i].reason for i in (3, 4, 5, 6)}
    assert all(isinstance(ds[i], SkippedSample) for i in (3, 4, 5, 6))
    assert reasons[3] == "no audio stream"
    assert reasons[4].startswith("cannot open")
    assert reasons[5] == "file not found"
    assert reasons[6].startswith("silent audio")
    assert "Kinetics(videos=7" in repr(ds)


@pytest.mark.parametrize("mode", ["train", "test"])
def test_device_normalization_gives_uint8_frames_equal_after_normalizing(media, mode):
    # normalize="device": the sample holds the cropped (and flipped) uint8 frames, a quarter
    # of the bytes; normalized on the device they equal the worker-normalized clip exactly.
    worker = kinetics(media, mode=mode)
    device = kinetics(media, mode=mode, normalize="device")
    assert "normalize='device'" in repr(device)
    to_float = FrameNormalizer(SPEC.mean, SPEC.std)
    for i in (0, 1, 2):
        torch.manual_seed(i)  # the same clip, crop and flip draws in both
        ref, ref_target = worker[i][:2]
        torch.manual_seed(i)
        got, target = device[i][:2]
        assert target == ref_target
        assert got["rgb"].dtype == torch.uint8
        assert got["rgb"].shape == (8, 32, 32, 3)
        assert got["rgb"].nbytes * 4 == ref["rgb"].nbytes
        torch.testing.assert_close(to_float(got["rgb"]), ref["rgb"], rtol=0, atol=0)
        torch.testing.assert_close(got["audio"], ref["audio"], rtol=0, atol=0)
    batch = collate_clips([device[0], device[1]])  # uint8 batches collate as floats do
    assert batch[0]["rgb"].shape == (2, 8, 32, 32, 3)


def test_kinetics_rgb_only_keeps_silent_and_no_audio_files(media):
    ds = kinetics(media, modalities=("rgb",))
    assert set(ds[3][0]) == {"rgb"}
    assert set(ds[6][0]) == {"rgb"}


def test_kinetics_val_without_split_column_uses_train_classes(media):
    train = kinetics(media)
    val = Kinetics(
        media.kinetics_root, media.kinetics_val_csv, split="val", classes=train.classes, spec=SPEC
    )
    assert val.mode == "test"
    assert len(val) == 2 * 10
    assert [r.target for r in val.records] == [2, 0]
    views = [val[i] for i in range(10)]
    assert all(v[2] == 0 and v[1] == 2 for v in views)
    assert not torch.equal(views[0][0]["rgb"], views[9][0]["rgb"])  # different clips
    with pytest.raises(ValueError, match="lacks labels"):
        Kinetics(media.kinetics_root, media.kinetics_val_csv, split="val", classes=["zumba"])


def test_three_crop_views(media):
    spec = ClipSpec(
        num_frames=4,
        crop_size=32,
        train_short_side=(32, 40),
        test_short_side=32,
        test_crops=3,
        test_clips=2,
    )
    ds = ClipDataset([ClipRecord(media.tone, 1, "v")], mode="test", spec=spec)
    assert len(ds) == 6
    crops = [ds[i][0]["rgb"] for i in range(3)]
    assert not torch.equal(crops[0], crops[2])


def test_damaged_and_garbage_files_are_skipped(media):
    records = [ClipRecord(p, 0, "x") for p in (media.damaged, media.garbage)]
    ds = ClipDataset(records, mode="test", spec=SPEC)
    out = [ds[i] for i in (0, 10)]
    assert all(isinstance(o, SkippedSample) and o.fields == 3 for o in out)
    strict = ClipDataset(records, mode="test", spec=SPEC, on_error="raise")
    with pytest.raises(Exception, match=r"Invalid data|cannot open"):
        strict[10]


def test_dataloader_workers_report_skips(media):
    ds = kinetics(media)
    report = SkipReport()
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_clips)
    batches = list(report.track(loader))
    assert all(isinstance(b, ClipBatch) for b in batches)
    inputs, _target = batches[0]
    assert inputs["rgb"].shape == (3, 3, 8, 32, 32)  # 3 of the first 4 are good
    assert report.samples == 3
    assert report.count == 4
    assert report.by_reason() == {
        "no audio stream": 1,
        "cannot open": 1,
        "file not found": 1,
        "silent audio": 1,
    }
    assert len(report.files()) == 4
    assert "3 samples loaded in 2 batches; 4 skipped from 4 files" in report.summary()
    assert batches[1].size == 0  # every sample of the second batch was bad
    assert repr(report) == "SkipReport(samples=3, skipped=4)"


def test_subset_for_holdout_and_batch_pickling(media):
    sub = Subset(kinetics(media), [0, 1])
    batch = collate_clips([sub[0], sub[1], SkippedSample(9, "p", "r")])
    again = pickle.loads(pickle.dumps(batch))
    assert again.skipped == (SkippedSample(9, "p", "r"),)
    assert torch.equal(again[0]["rgb"], batch[0]["rgb"])
    assert again.size == 2
    assert "skipped=1" in repr(batch)


def test_audioset_multilabel_and_mini(media):
    ds = AudioSet(
        media.audioset_root, media.audioset_csv, media.audioset_labels, mode="test", spec=SPEC
    )
    assert ds.classes == ["Speech", "Music", "Animal"]
    assert len(ds.records) == 4
    assert ds.records[2].target == (0, 1, 2)  # stored as indices, loaded as multi-hot
    _inputs, target, video = ds[0]
    assert target.tolist() == [1.0, 1.0, 0.0]
    assert video == 0
    assert isinstance(ds[20], SkippedSample)  # -1nilez17Dg has no audio stream
    assert ds[30].reason == "file not found"
    local = AudioSet(
        media.audioset_root, media.audioset_csv, media.audioset_labels, only_local=True
    )
    assert len(local.records) == 3
    np.testing.assert_array_equal(local.label_matrix().sum(0), [2, 2, 2])
    mini, volumes = mini_audioset(local, min_count=2, target=1, seed=0)
    assert mini.classes == ["Speech", "Music", "Animal"]
    assert len(mini.records) >= 1
    assert (volumes >= 1).all()
    np.testing.assert_array_equal(volumes, mini.label_matrix().sum(0))
    music = local.select([0, 1, 2], classes=[1])
    assert music.classes == ["Music"]
    assert music.class_indices == [1]
    assert [r.target for r in music.records] == [(0,), (), (0,)]
    assert music.target_tensor(music.records[0].target).tolist() == [1.0]
    speech_only = AudioSet(
        media.audioset_root, media.audioset_csv, media.audioset_labels, classes=[2]
    )
    assert speech_only.classes == ["Animal"]
    assert len(speech_only.records) == 2


def test_sports1m_lists_and_mini_sample(tmp_path, media):
    lines = [f"https://www.youtube.com/watch?v=vid{i:08d} {i % 5},{(i + 1) % 5}" for i in range(30)]
    lines.append("https://www.youtube.com/watch?v=vid00000000 3")  # duplicate URL
    part = tmp_path / "train_partition.txt"
    part.write_text("\n".join(lines) + "\n")
    (tmp_path / "vid00000003.mp4").write_bytes(Path(media.tone).read_bytes())
    full = Sports1M(tmp_path, part, spec=SPEC, num_classes=5)
    assert len(full) == 30
    assert full.records[0].target == 0
    mini = Sports1M(tmp_path, part, num_videos=10, seed=1, spec=SPEC, num_classes=5)
    again = Sports1M(tmp_path, part, num_videos=10, seed=1, spec=SPEC, num_classes=5)
    assert [r.video_id for r in mini.records] == [r.video_id for r in again.records]
    assert len({r.video_id for r in mini.records}) == 10
    multi = Sports1M(tmp_path, part, multi_label=True, num_classes=5, spec=SPEC)
    assert multi.records[1].target == (1, 2)
    assert multi.target_tensor(multi.records[1].target).tolist() == [0, 1, 1, 0, 0]
    local = Sports1M(tmp_path, part, only_local=True, progress=True, num_classes=5, spec=SPEC)
    assert [r.video_id for r in local.records] == ["vid00000003"]
    assert set(local[0][0]) == {"rgb", "audio"}
    with pytest.raises(ValueError, match="num_videos"):
        Sports1M(tmp_path, part, num_videos=31, num_classes=5)
    bad = tmp_path / "bad.txt"
    bad.write_text("https://www.youtube.com/watch?v=x 600\n")
    with pytest.raises(ValueError, match="label"):
        Sports1M(tmp_path, bad)


def test_uniform_sample_and_youtube_ids():
    s = uniform_sample(1000, 100, seed=0)
    assert len(set(s.tolist())) == 100
    assert (np.diff(s) > 0).all()
    assert not np.array_equal(s, uniform_sample(1000, 100, seed=1))
    assert youtube_id("https://www.youtube.com/watch?v=UDqivjS-lpI") == "UDqivjS-lpI"
    assert youtube_id("https://youtu.be/UDqivjS-lpI") == "UDqivjS-lpI"
    assert youtube_id("UDqivjS-lpI") == "UDqivjS-lpI"


EPIC_HEADER = (
    "uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,"
    "stop_frame,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes"
)


def test_epic_kitchens_unseen_split_and_targets(tmp_path, media):
    rows = [
        "0,P01,P01_01,open door,00:00:00.14,00:00:01.20,8,72,open,3,door,8,['door'],[8]",
        "1,P01,P01_01,take cup,00:00:01.00,00:00:01.90,60,114,take,0,cup,13,['cup'],[13]",
        "2,P26,P26_02,open fridge,00:00:00.50,00:00:01.50,30,90,open,3,fridge,2,['fridge'],[2]",
    ]
    csv_path = tmp_path / "EPIC_train_action_labels.csv"
    csv_path.write_text(EPIC_HEADER + "\n" + "\n".join(rows) + "\n")
    for pid, vid in [("P01", "P01_01"), ("P26", "P26_02")]:
        (tmp_path / pid).mkdir(exist_ok=True)
        (tmp_path / pid / f"{vid}.MP4").write_bytes(Path(media.tone).read_bytes())
    train = EpicKitchens55(tmp_path, csv_path, split="train", spec=SPEC)
    val = EpicKitchens55(tmp_path, csv_path, split="val", target="noun", spec=SPEC)
    assert [r.video_id for r in train.records] == ["0", "1"]
    assert [r.target for r in train.records] == [3, 0]
    assert train.records[0].start == pytest.approx(0.14)
    assert train.records[0].end == 1.2
    assert val.mode == "test"
    assert [r.target for r in val.records] == [2]
    action = EpicKitchens55(tmp_path, csv_path, split="all", target="action", spec=SPEC)
    assert action.action_classes == [(0, 13), (3, 2), (3, 8)]
    assert [r.target for r in action.records] == [2, 0, 1]
    inputs, target = train[0]
    assert inputs["rgb"].shape == (3, 8, 32, 32)
    assert target == 3
    assert parse_timestamp("01:02:03.50") == pytest.approx(3723.5)
    with pytest.raises(ValueError, match="target"):
        EpicKitchens55(tmp_path, csv_path, target="both")
    with pytest.raises(TypeError, match="val_participants"):
        EpicKitchens55(tmp_path, csv_path, val_participants="P26")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"mode": "eval"}, ValueError),
        ({"modalities": "rgb"}, TypeError),
        ({"modalities": ("depth",)}, ValueError),
        ({"on_error": "ignore"}, ValueError),
        ({"normalize": "gpu"}, ValueError),
    ],
)
def test_clip_dataset_argument_errors(kwargs, error):
    with pytest.raises(error):
        ClipDataset([], **kwargs)


def test_audio_only_file(tmp_path):
    import av

    path = str(tmp_path / "a.wav")
    with av.open(path, "w") as c:
        stream = c.add_stream("pcm_s16le", rate=22050, layout="mono")
        x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44100) / 22050)).astype(np.float32)
        for i in range(0, x.size, 1024):
            frame = av.AudioFrame.from_ndarray(x[None, i : i + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts = 22050, i
            c.mux(stream.encode(frame))
        c.mux(stream.encode(None))
    audio = ClipDataset([ClipRecord(path, 4, "a")], mode="test", modalities=("audio",))
    inputs, target, video = audio[9]
    assert inputs["audio"].shape == (1, 100, 40)
    assert (target, video) == (4, 0)
    both = ClipDataset([ClipRecord(path, 4, "a")], mode="train")
    assert both[0].reason == "no video stream"
