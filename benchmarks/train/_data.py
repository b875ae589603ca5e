"""Datasets of a config on a data root, the root check, and resumable seeded loaders.

Expected layouts (relative to ``--data-root``; the config keys name the files):

- ``kinetics``: ``annotations/train.csv``, ``annotations/validate.csv``; videos
  ``<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4``, label folders with spaces or
  underscores, or ``<split>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (found by looking up
  the first files); with the ``flow`` modality (Table 4) also ``flow/`` + the video path
  with ``.npy`` (precomputed ``(N, 2, H, W)`` float16 flow, ``benchmarks.data.save_flow``).
- ``sports1m``: ``train_partition.txt``, ``test_partition.txt`` (``labels.txt``
  optional); videos ``<media_dir>/<youtube_id>.mp4`` or in class folders.
- ``audioset`` / ``mini_audioset``: ``class_labels_indices.csv``, a train segment CSV,
  ``eval_segments.csv``; segments ``<media_dir>/<ytid>.mp4``.
- ``epic``: ``EPIC_train_action_labels.csv``; videos ``<participant>/<video_id>.MP4``,
  ``<participant>/videos/<video_id>.MP4`` or ``videos/train/<participant>/<video_id>.MP4``.

``data.path_template`` names any other layout. The layout in use is printed in one line
(rank 0); so are the media missing at start-up (more than ``data.max_missing`` of a split is
a :class:`DataError` naming the template and the first missing paths), zero-byte files, and
(:func:`print_skipped`, at the end of a run) every sample skipped while loading.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

import blendopt
from benchmarks.data import (
    AnnotationError,
    AudioSet,
    ClipDataset,
    ClipSpec,
    EpicKitchens55,
    Kinetics,
    SkipReport,
    Sports1M,
    UnknownLabelsWarning,
    collate_clips,
    mini_audioset,
    uniform_sample,
)
from benchmarks.data._layout import count_missing, missing_allowed
from benchmarks.train._config import ConfigError, TrainConfig

__all__ = [
    "FLOW_LAYOUT",
    "LAYOUTS",
    "DataError",
    "RunData",
    "SeededClips",
    "StatefulSampler",
    "build_data",
    "make_loader",
    "print_skipped",
    "worker_count",
]

LAYOUTS = {
    "kinetics": "annotations/train.csv and annotations/validate.csv (label,youtube_id,"
    "time_start,time_end[,split]); videos <split>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4"
    " (label folders with spaces or underscores, or none: <split>/<youtube_id>_...mp4)",
    "sports1m": "train_partition.txt and test_partition.txt ('URL label,label'), optional "
    "labels.txt; videos <media_dir>/<youtube_id>.mp4 (or <label>/, <label_index>/ folders)",
    "audioset": "class_labels_indices.csv, a segment CSV for train and eval_segments.csv "
    '(YTID, start_seconds, end_seconds, "labels"); segments <media_dir>/<ytid>.mp4',
    "epic": "EPIC_train_action_labels.csv (EPIC-55 columns); videos "
    "<participant_id>/<video_id>.MP4 (or <participant_id>/videos/, videos/train/<participant_id>/)",
}
#: How many paths a console line or an error message shows.
_SHOWN = 3
LAYOUTS["mini_audioset"] = LAYOUTS["audioset"]
#: Extra files of the ``flow`` modality (Table 4), Kinetics only.
FLOW_LAYOUT = (
    "precomputed optical flow flow/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.npy, "
    "one (N, 2, H, W) float16 array per video (benchmarks.data.save_flow; docs/datasets.md)"
)


class DataError(ValueError):
    """The data root does not match the config (missing files, no media found)."""


def _is_main() -> bool:
    """Rank 0 (or a single process) prints; torchrun sets ``RANK``."""
    return os.environ.get("RANK", "0") == "0"


def _say(line: str) -> None:
    if _is_main():
        print(line, flush=True)


def _first(paths: list[str]) -> str:
    more = f" (+{len(paths) - _SHOWN} more)" if len(paths) > _SHOWN else ""
    return ", ".join(repr(p) for p in paths[:_SHOWN]) + more


def worker_count(configured: int, local_world_size: int = 1) -> int:
    """DataLoader workers: the configured number, or (``-1``) the CPUs this process may use
    divided among the processes of this host, minus one for the main process."""
    if configured >= 0:
        return configured
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(0, cpus // max(1, local_world_size) - 1)


@dataclasses.dataclass
class RunData:
    """The datasets of one run.

    Attributes:
        train: T, train-mode clips (the training split minus the holdout).
        holdout: V, one center clip per video (never trained on).
        probe: T', one center clip per video of a fixed subset of T.
        test: the test split (``ClipDataset`` in test mode).
        num_classes: classifier width.
        multi_label: multi-hot targets (AudioSet).
        notes: lines for the report (class counts, mini-AudioSet volumes...).
    """

    train: ClipDataset
    holdout: ClipDataset
    probe: ClipDataset
    test: ClipDataset
    num_classes: int
    multi_label: bool
    notes: list[str]


def _spec(cfg: TrainConfig) -> ClipSpec:
    d = cfg.data
    return ClipSpec(
        num_frames=d.num_frames,
        frame_stride=d.frame_stride,
        crop_size=d.crop_size,
        train_short_side=tuple(d.train_short_side),
        test_short_side=d.test_short_side,
        test_clips=d.test_clips,
        test_crops=d.test_crops,
    )


def _file(root: str, name: str, key: str, dataset: str, modalities: tuple[str, ...] = ()) -> str:
    if not name:
        raise ConfigError(f"Config key `data.{key}` is empty; the {dataset} config needs it.")
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        raise DataError(
            f"The data root {root!r} does not match the config: {path!r} (config key "
            f"`data.{key}`) is missing. Expected layout for {dataset!r}: "
            f"{_layout(dataset, modalities)}."
        )
    return path


def _videos(n: int | str) -> int | str | None:
    return None if n == 0 else n


def _load_splits(cfg: TrainConfig, root: str) -> tuple[ClipDataset, ClipDataset, list[str]]:
    d = cfg.data
    spec = _spec(cfg)
    mods = tuple(d.modalities)
    media = os.path.join(root, d.media_dir) if d.media_dir else root
    common: dict[str, Any] = {"spec": spec, "modalities": mods}
    if d.path_template:
        common["path_template"] = d.path_template
    notes: list[str] = []
    try:
        with warnings.catch_warnings():  # unknown AudioSet labels: printed below instead
            warnings.simplefilter("ignore", UnknownLabelsWarning)
            train, test = _make_splits(cfg, root, media, common, notes)
    except AnnotationError as exc:
        raise DataError(str(exc)) from None
    except ValueError as exc:
        if d.path_template and str(exc).startswith("Parameter `path_template`"):
            raise ConfigError(f"Config key `data.path_template`: {exc}") from None
        raise
    for ds in (train, test):
        note = getattr(ds, "unknown_labels_note", "")
        if note:
            _say(f"unknown label ids: {note}; those labels are ignored (data.max_unknown_labels)")
    return train, test, notes


def _make_splits(
    cfg: TrainConfig, root: str, media: str, common: dict[str, Any], notes: list[str]
) -> tuple[ClipDataset, ClipDataset]:
    d = cfg.data
    kind = d.dataset
    mods = tuple(d.modalities)
    if kind == "kinetics":
        tr = _file(root, d.train_annotations, "train_annotations", kind, mods)
        te = _file(root, d.test_annotations, "test_annotations", kind, mods)
        train = Kinetics(media, tr, split=d.train_split, mode="train", **common)
        test = Kinetics(media, te, split=d.test_split, mode="test", classes=train.classes, **common)
    elif kind == "sports1m":
        tr = _file(root, d.train_annotations, "train_annotations", kind)
        te = _file(root, d.test_annotations, "test_annotations", kind)
        labels = _file(root, d.labels_file, "labels_file", kind) if d.labels_file else None
        extra = {"only_local": d.only_local, "labels_file": labels, "seed": cfg.train.seed}
        try:
            train = Sports1M(
                media,
                tr,
                split="train",
                num_videos=_videos(d.num_train_videos),
                mode="train",
                **extra,
                **common,
            )
            test = Sports1M(
                media,
                te,
                split="test",
                num_videos=_videos(d.num_test_videos),
                mode="test",
                **extra,
                **common,
            )
        except ValueError as exc:
            if "num_videos" in str(exc):
                raise ConfigError(
                    f"Config keys `data.num_train_videos`/`data.num_test_videos`: {exc}"
                ) from None
            raise
    elif kind in ("audioset", "mini_audioset"):
        tr = _file(root, d.train_annotations, "train_annotations", kind)
        te = _file(root, d.test_annotations, "test_annotations", kind)
        labels = _file(root, d.class_labels, "class_labels", kind)
        common = {**common, "max_unknown_labels": d.max_unknown_labels}
        train = AudioSet(media, tr, labels, only_local=d.only_local, mode="train", **common)
        if kind == "mini_audioset":  # Algorithm 4 (appendix E) on the training segments
            if not train.records:
                raise DataError(
                    f"No training segment of {tr!r} has a file under {media!r}. Expected "
                    f"layout: {LAYOUTS[kind]}."
                )
            train, volumes = mini_audioset(
                train, min_count=d.min_count, target=d.target_count, seed=cfg.train.seed
            )
            notes.append(
                f"mini-AudioSet (Algorithm 4, min_count={d.min_count}, target="
                f"{d.target_count}): {len(train.records)} segments, {len(volumes)} classes"
            )
        test = AudioSet(
            media,
            te,
            labels,
            classes=train.class_indices,
            only_local=d.only_local,
            mode="test",
            **common,
        )
    else:  # epic
        tr = _file(root, d.train_annotations, "train_annotations", kind)
        train = EpicKitchens55(
            media, tr, split="train", target=d.epic_target, mode="train", **common
        )
        test = EpicKitchens55(media, tr, split="val", target=d.epic_target, mode="test", **common)
    return train, test


def _layout(kind: str, modalities: tuple[str, ...]) -> str:
    return LAYOUTS[kind] + (f"; {FLOW_LAYOUT}" if "flow" in modalities else "")


def _check_media(
    ds: ClipDataset, root: str, kind: str, split: str, max_missing: float = 1.0
) -> None:
    """Check the split's media at start-up: some exist, at most ``max_missing`` are missing.

    Prints (rank 0) the layout in use, the missing files and the zero-byte files.
    """
    layout = _layout(kind, ds.modalities)
    template = getattr(ds, "path_template", None)
    tried = f" Template tried: <root>/{template}." if template else ""
    if not ds.records:
        raise DataError(
            f"The {split} split of {kind!r} under {root!r} is empty. Expected layout: {layout}."
        )
    sample = ds.records[:200]
    files = [("media", [r.path for r in sample])]
    if "flow" in ds.modalities:
        files.append(("optical-flow", [r.flow_path or "" for r in sample]))
    for what, paths in files:
        if not any(os.path.isfile(p) for p in paths):
            raise DataError(
                f"The data root {root!r} does not match the config: none of the first "
                f"{len(sample)} {split} {what} files exists (e.g. {paths[0]!r}). Expected "
                f"layout for {kind!r}: {layout}.{tried} Set `data.path_template` for another "
                "layout."
            )
    if getattr(ds, "layout", ""):
        _say(f"{split} {ds.layout}")
    checks = [("media", [r.path for r in ds.records], max_missing)]
    if "flow" in ds.modalities:
        checks.append(("optical-flow", [r.flow_path or "" for r in ds.records], 1.0))
    for what, paths, limit in checks:
        missing, empty = count_missing(paths)
        n = len(paths)
        if len(missing) > missing_allowed(n, limit):
            raise DataError(
                f"{len(missing)} of {n} {split} {what} files ({len(missing) / n:.0%}) are "
                f"missing under {root!r}, more than `data.max_missing` = {limit} allows.{tried} "
                f"First missing: {_first(missing)}. Fix the data root, set "
                "`data.path_template` to where the files are, or finish the download (or set "
                "`data.only_local = true`, or raise `data.max_missing`, to train on the files "
                "that are there)."
            )
        if missing:
            _say(
                f"{split} {what}: {len(missing)} of {n} files missing ({len(missing) / n:.1%}; "
                f"skipped when loaded, limit data.max_missing = {limit}): {_first(missing)}"
            )
        if empty:
            _say(
                f"{split} {what}: {len(empty)} of {n} files are empty (0 bytes; skipped when "
                f"loaded): {_first(empty)}"
            )


def print_skipped(reports: Mapping[str, SkipReport]) -> None:
    """Print (rank 0) the samples skipped while loading: a count per reason and the first files.

    Args:
        reports: what was loaded (``"train"``, ``"test"``, ...) → its :class:`SkipReport`.
    """
    for what, report in reports.items():
        if not report.count:
            continue
        files: dict[str, list[str]] = {}
        for s in report.skipped:
            reason = s.reason.split(":")[0]
            if s.path not in files.setdefault(reason, []):
                files[reason].append(s.path)
        _say(
            f"skipped media ({what}): {report.count} samples from {_files(report.files())} "
            f"({report.samples} samples loaded)"
        )
        counts = report.by_reason()
        for reason, paths in sorted(files.items()):
            _say(f"  {reason}: {counts.get(reason, 0)} samples, {_files(paths)}: {_first(paths)}")


def _files(paths: list[str]) -> str:
    return f"{len(paths)} file{'' if len(paths) == 1 else 's'}"


def _num_classes(cfg: TrainConfig, train: ClipDataset, test: ClipDataset) -> int:
    if train.num_classes:
        return int(train.num_classes)
    if isinstance(train, EpicKitchens55) and cfg.data.epic_target == "action":
        return len(train.action_classes)
    targets = [t for ds in (train, test) for t in ds.targets() if isinstance(t, int)]
    return max(targets) + 1


def _subset(ds: ClipDataset, indices: Any, mode: str, spec: ClipSpec | None = None) -> ClipDataset:
    new = copy.copy(ds)
    new.records = [ds.records[int(i)] for i in indices]
    new.mode = mode
    if spec is not None:
        new.spec = spec
    return new


def _limit(ds: ClipDataset, limit: int, seed: int) -> ClipDataset:
    if len(ds.records) <= limit:
        return ds
    return _subset(ds, uniform_sample(len(ds.records), limit, seed), ds.mode)


def build_data(cfg: TrainConfig, root: str | os.PathLike[str]) -> RunData:
    """Build T, V, T' and the test split of ``cfg`` on ``root``, checking the layout first.

    The media layout is looked up unless ``data.path_template`` names it; rank 0 prints the
    layout in use, the missing and empty media files, and unknown AudioSet label ids.

    Raises:
        DataError: a file the config names is missing, no media file is where the layout
            says, more than ``data.max_missing`` of a split's media are missing (the message
            names the template and the first missing paths), or an annotation file does
            not read cleanly (file, line and fix).
        ConfigError: a key the dataset needs is empty or out of range, or
            ``data.path_template`` names a field the loader does not fill.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise DataError(
            f"--data-root {root!r} is not a folder. Expected layout for "
            f"{cfg.data.dataset!r}: {_layout(cfg.data.dataset, tuple(cfg.data.modalities))}."
        )
    train_full, test, notes = _load_splits(cfg, root)
    if cfg.data.limit_videos:
        train_full, test = (
            _limit(ds, cfg.data.limit_videos, cfg.train.seed) for ds in (train_full, test)
        )
    _check_media(train_full, root, cfg.data.dataset, "train", cfg.data.max_missing)
    _check_media(test, root, cfg.data.dataset, "test", cfg.data.max_missing)
    n = len(train_full.records)
    if n < 4:
        raise DataError(f"The train split has {n} videos under {root!r}; G-Blend needs >= 4.")
    labels = None if cfg.multi_label else [int(t) for t in train_full.targets()]
    held = max(1, round(cfg.data.holdout * n))
    try:
        split = blendopt.holdout_split(n, holdout=held, labels=labels, seed=cfg.train.seed)
    except ValueError:  # a class too small to stratify: fall back to a plain seeded shuffle
        split = blendopt.holdout_split(n, holdout=held, seed=cfg.train.seed)
    center = dataclasses.replace(train_full.spec, test_clips=1, test_crops=1)
    return RunData(
        train=_subset(train_full, split.train, "train"),
        holdout=_subset(train_full, split.holdout, "test", center),
        probe=_subset(train_full, split.probe, "test", center),
        test=test,
        num_classes=_num_classes(cfg, train_full, test),
        multi_label=cfg.multi_label,
        notes=[
            *notes,
            f"train {len(split.train)} / holdout {len(split.holdout)} / probe "
            f"{len(split.probe)} / test {len(test.records)} videos",
        ],
    )


class SeededClips(Dataset):
    """A dataset whose item ``(index, seed)`` is drawn under ``torch.manual_seed(seed)``.

    The random clip, crop and flip of an item then depend on (run seed, epoch, index) only,
    not on the worker count or on where a resumed epoch starts. The caller's random state is
    restored after each item.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class StatefulSampler(Sampler):
    """A ``DistributedSampler`` shard with a resumable position and per-item seeds.

    ``set_epoch(epoch, skip)`` picks the epoch's permutation (``DistributedSampler`` with
    ``seed``) and skips the first ``skip`` items (a resumed epoch). With ``epoch=None`` every
    ``iter()`` draws a fresh epoch number from torch's global generator (for the G-Blend
    estimate's loaders, which the estimator runs under its own seeded random state).
    Items are ``(index, seed)`` pairs for :class:`SeededClips` (or plain indices with
    ``seeded=False``).
    """

    def __init__(
        self,
        size: int,
        *,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        seeded: bool = True,
    ) -> None:
        self.inner = DistributedSampler(
            range(size),
            num_replicas=world,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.seed = seed
        self.seeded = seeded
        self.epoch: int | None = 0
        self.skip = 0

    def set_epoch(self, epoch: int | None, skip: int = 0) -> None:
        """Select the epoch's order, starting after ``skip`` items."""
        self.epoch = epoch
        self.skip = skip

    def __len__(self) -> int:
        return len(self.inner) - self.skip

    def __iter__(self) -> Iterator[Any]:
        epoch = self.epoch if self.epoch is not None else int(torch.randint(0, 2**31, ()))
        self.inner.set_epoch(epoch)
        for position, index in enumerate(self.inner):
            if position < self.skip:
                continue
            if self.seeded:
                yield index, _item_seed(self.seed, epoch, index)
            else:
                yield index


def _item_seed(seed: int, epoch: int, index: int) -> int:
    value = seed & 0xFFFFFFFF
    for part in (epoch, index):
        value = (value * 6364136223846793005 + part + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
    return value


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    workers: int,
    seed: int,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
    free_running: bool = False,
    persistent: bool = False,
) -> DataLoader:
    """A DataLoader over ``dataset``'s shard for this rank, with ``collate_clips``.

    Args:
        train: seeded random clips in a seeded shuffled order, last partial batch dropped;
            else the dataset in order (every rank a shard, padded to equal length).
        free_running: each pass draws its epoch from the global generator (estimator loaders).
        persistent: keep the workers between passes (the training loader; the estimate's and
            evaluation's loaders, used now and then, release theirs after each pass).
    """
    sampler = StatefulSampler(
        len(dataset),
        rank=rank,
        world=world,
        shuffle=train,
        seed=seed,
        drop_last=train,
        seeded=train,
    )
    if free_running:
        sampler.set_epoch(None)
    return DataLoader(
        SeededClips(dataset) if train else dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_clips,
        pin_memory=pin_memory,
        persistent_workers=persistent and workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=train,
    )
