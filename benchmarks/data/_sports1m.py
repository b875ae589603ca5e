"""Sports-1M from its released partition lists, and mini-Sports (§3.1).

The release (github.com/gtoderici/sports-1m-dataset) has ``original/train_partition.txt``
and ``original/test_partition.txt`` (optionally gzipped): one video per line,
``URL<space><comma-separated label indices>``, e.g.
``https://www.youtube.com/watch?v=UDqivjS-lpI 168,169``; ``labels.txt`` names the 487
classes, line i = class i (UTF-8: ``yağlı güreş``, ``kyūdō``). A URL maps to a local file
``<root>/<youtube_id>.mp4``, or, in the per-class folder layouts some downloaders write,
``<root>/<label>/<youtube_id>.mp4`` (``labels_file`` names the folders; spaces or
underscores) or ``<root>/<label_index>/<youtube_id>.mp4``; a video with several labels is
looked up under its first label. With ``path_template=None`` (the default) the layout among
:data:`SPORTS1M_PATH_TEMPLATES` that finds most of the first listed videos is used; pass a
template for any other layout.

mini-Sports (§3.1): "We uniformly sampled 240k videos from train split and 20k videos from
the test split" — a seeded uniform sample without replacement (:func:`uniform_sample`).
A line with several labels keeps the first one as its class (``multi_label=False``, the
usual single-label reading of Sports-1M) or all of them as a multi-hot vector.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import numpy as np

from benchmarks.data._common import AnnotationError, check_template, existing, open_text
from benchmarks.data._dataset import ClipDataset, ClipRecord
from benchmarks.data._layout import check_root, describe_template, detect_template

__all__ = [
    "MINI_SPORTS_SIZES",
    "SPORTS1M_NUM_CLASSES",
    "SPORTS1M_PATH_TEMPLATES",
    "Sports1M",
    "uniform_sample",
    "youtube_id",
]

SPORTS1M_NUM_CLASSES = 487
#: Videos per split in mini-Sports (§3.1).
MINI_SPORTS_SIZES = {"train": 240_000, "test": 20_000}
#: The layouts looked up when no template is given, in order of preference (the ``{label}``
#: ones only with a ``labels_file``).
SPORTS1M_PATH_TEMPLATES = (
    "{youtube_id}.mp4",
    "{label}/{youtube_id}.mp4",
    "{label_underscored}/{youtube_id}.mp4",
    "{label_index}/{youtube_id}.mp4",
)


def youtube_id(url: str) -> str:
    """The YouTube id of a watch URL (``...watch?v=ID``), a youtu.be URL, or a bare id."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "v" in query:
        return query["v"][0]
    return parsed.path.rstrip("/").rsplit("/", 1)[-1] or url


def uniform_sample(n: int, k: int, seed: int = 0) -> np.ndarray:
    """``k`` distinct indices of ``range(n)`` drawn uniformly (seeded), returned sorted."""
    if not 0 <= k <= n:
        raise ValueError(
            f"Parameter `num_videos` should be between 0 and the {n} videos available. "
            f"Found {k}; lower it (or pass None to keep all)."
        )
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


class Sports1M(ClipDataset):
    """Sports-1M (or mini-Sports with ``num_videos``) from a released partition list.

    Args:
        root: folder holding the videos.
        partition: ``train_partition.txt`` or ``test_partition.txt`` (``.gz`` accepted).
        split: ``"train"`` or ``"test"``; picks the default mode and the mini size.
        num_videos: keep a seeded uniform sample of this many videos; ``"mini"`` means
            :data:`MINI_SPORTS_SIZES` [split] (240k train / 20k test); None keeps all.
        seed: seed of the sample.
        multi_label: False: target = first label (int); True: 487-dim multi-hot float.
        labels_file: ``labels.txt`` for class names (optional).
        only_local: drop lines whose file is not under ``root`` before sampling (for a
            partial download; one ``stat`` per line).
        progress: show a tqdm bar during that scan (if tqdm is installed).
        path_template: local file of a video; fields ``youtube_id``, ``split``,
            ``label_index`` (the first label), and with ``labels_file`` ``label`` (its
            name) and ``label_underscored`` (spaces → ``_``). None (the default): the one
            of :data:`SPORTS1M_PATH_TEMPLATES` that finds most of the first videos.
        mode: ``"train"`` or ``"test"`` sampling (default from ``split``).
        **kwargs: passed to :class:`ClipDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        partition: str | os.PathLike[str],
        split: Literal["train", "test"] = "train",
        num_videos: int | Literal["mini"] | None = None,
        seed: int = 0,
        multi_label: bool = False,
        labels_file: str | os.PathLike[str] | None = None,
        only_local: bool = False,
        progress: bool = False,
        path_template: str | None = None,
        mode: Literal["train", "test"] | None = None,
        num_classes: int = SPORTS1M_NUM_CLASSES,
        **kwargs: Any,
    ) -> None:
        self.root = os.fspath(root)
        fields = ["youtube_id", "split", "label_index"]
        if labels_file is not None:
            fields += ["label", "label_underscored"]
        try:
            if path_template is not None:
                check_template(path_template, fields)
        except ValueError as exc:
            if labels_file is None and "label" in str(exc):
                raise ValueError(
                    f"Parameter `path_template` ({path_template!r}) names class folders "
                    "({label} or {label_underscored}): pass `labels_file` (the release's "
                    "labels.txt) so the loader knows their names, or use {label_index}."
                ) from None
            raise
        classes: list[str] | None = None
        if labels_file is not None:
            with open_text(labels_file) as f:
                classes = [line.rstrip("\r\n") for line in f if line.strip()]
        entries: list[tuple[str, list[int]]] = []
        seen: set[str] = set()
        with open_text(partition) as f:
            for lineno, line in enumerate(f, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2:
                    raise AnnotationError(
                        f"Parameter `partition` ({partition!r}) line {lineno} should be "
                        f"'URL label,label,...'. Found {line.strip()!r}; fix or drop the line.",
                        os.fspath(partition),
                        lineno,
                    )
                vid = youtube_id(parts[0])
                if vid in seen:  # a URL listed twice keeps its first line
                    continue
                seen.add(vid)
                try:
                    labels = [int(x) for x in parts[1].split(",") if x]
                except ValueError:
                    raise AnnotationError(
                        f"Parameter `partition` ({partition!r}) line {lineno} should be "
                        f"'URL label,label,...' with int labels. Found {line.strip()!r}; fix or "
                        "drop the line.",
                        os.fspath(partition),
                        lineno,
                    ) from None
                bad = [x for x in labels if not 0 <= x < num_classes]
                if bad or not labels:
                    raise AnnotationError(
                        f"Parameter `partition` ({partition!r}) line {lineno} has label "
                        f"indices {labels}; they should be in [0, {num_classes}). Use the "
                        "release's partition file, or fix or drop the line.",
                        os.fspath(partition),
                        lineno,
                    )
                entries.append((vid, labels))

        if classes is not None:
            beyond = [x for _, labels in entries for x in labels if x >= len(classes)]
            if beyond:
                raise ValueError(
                    f"Parameter `labels_file` ({labels_file!r}) names {len(classes)} classes; "
                    f"`partition` uses label {max(beyond)}. Pass the release's labels.txt."
                )

        def row_fields(vid: str, labels: list[int]) -> dict[str, Any]:
            name = classes[labels[0]] if classes is not None else ""
            return {
                "youtube_id": vid,
                "split": split,
                "label_index": labels[0],
                "label": name,
                "label_underscored": name.replace(" ", "_"),
            }

        rows_fields = [row_fields(vid, labels) for vid, labels in entries]
        found = looked_up = 0
        if path_template is None:
            named = ("{label}", "{label_underscored}")  # class-name folders need labels_file
            candidates = [
                t
                for t in SPORTS1M_PATH_TEMPLATES
                if classes is not None or not any(n in t for n in named)
            ]
            path_template, found, looked_up = detect_template(self.root, candidates, rows_fields)
        #: The video path template in use (given, or detected).
        self.path_template = path_template
        #: One line saying where the videos are, e.g. for a training log.
        self.layout = f"videos: {describe_template(path_template)}" + (
            f" (found {found} of the first {looked_up})" if looked_up else ""
        )
        paths = [os.path.join(self.root, path_template.format(**f)) for f in rows_fields]
        if only_local:
            keep = existing(paths, progress, "Sports-1M: checking local files")
            entries = [entries[i] for i in keep]
            paths = [paths[i] for i in keep]
        if num_videos == "mini":
            num_videos = MINI_SPORTS_SIZES[split]
        if num_videos is not None:
            chosen = uniform_sample(len(entries), int(num_videos), seed)
            entries = [entries[i] for i in chosen]
            paths = [paths[i] for i in chosen]
        records = []
        for (vid, labels), path in zip(entries, paths, strict=True):
            target = tuple(sorted(set(labels))) if multi_label else labels[0]
            records.append(ClipRecord(path, target, vid))
        super().__init__(
            records, mode=mode or split, classes=classes, num_classes=num_classes, **kwargs
        )

    @classmethod
    def check_layout(
        cls,
        root: str | os.PathLike[str],
        partition: str | os.PathLike[str],
        split: Literal["train", "test"] = "train",
        labels_file: str | os.PathLike[str] | None = None,
        path_template: str | None = None,
        num_classes: int = SPORTS1M_NUM_CLASSES,
        sample: int = 64,
    ) -> None:
        """Check before training that ``root`` holds the listed videos where expected.

        When none is found with ``path_template`` but the videos sit in per-class folders
        (``<root>/<folder>/<youtube_id>.mp4``), the message says so and names the template
        to use.

        Raises:
            ValueError: the root is not a folder, the list is missing or malformed, or none
                of ``sample`` listed videos is found; the message names the path, the
                expected layout and the layout found.
        """
        layout = (
            f"<root>/{path_template or SPORTS1M_PATH_TEMPLATES[0]}, list {os.fspath(partition)!r}"
        )
        check_root(root, layout)
        try:
            dataset = cls(
                root,
                partition,
                split=split,
                labels_file=labels_file,
                path_template=path_template,
                num_classes=num_classes,
                modalities=("rgb",),
            )
        except FileNotFoundError as exc:
            raise ValueError(f"{exc} Expected layout: {layout}.") from None
        layout = f"<root>/{dataset.path_template}, list {os.fspath(partition)!r}"
        try:
            dataset.check_media(layout, sample)
        except ValueError as exc:
            found = _per_class_hits(os.fspath(root), dataset.records[:sample])
            if not found:
                raise
            raise ValueError(
                f"{exc} The videos are in per-class folders (e.g. {found[0]!r}): pass "
                "path_template='{label}/{youtube_id}.mp4' and labels_file=labels.txt "
                "(folders named by class), or '{label_index}/{youtube_id}.mp4'."
            ) from None


def _per_class_hits(root: str, records: Sequence[ClipRecord]) -> list[str]:
    """Files ``<root>/<any folder>/<youtube_id>.*`` of ``records``."""
    hits: list[str] = []
    for record in records:
        pattern = os.path.join(glob.escape(root), "*", glob.escape(record.video_id) + ".*")
        hits += glob.glob(pattern)
    return hits
