"""AudioSet from its segment CSVs, and mini-AudioSet by Algorithm 4 (§3.1, appendix E).

Segment CSVs (``balanced_train_segments.csv``, ``unbalanced_train_segments.csv``,
``eval_segments.csv``): three ``#`` header lines, then
``YTID, start_seconds, end_seconds, positive_labels`` with the labels a quoted,
comma-separated list of MIDs. ``class_labels_indices.csv``: ``index,mid,display_name``.
Targets are float multi-hot vectors over the classes.

A label id (MID) that ``class_labels_indices.csv`` does not list is counted per id
(:attr:`AudioSet.unknown_labels`) and warned about; the segment keeps its known labels, and
one without any is dropped. When more than ``max_unknown_labels`` (a fraction, default 1%)
of the rows name an unknown id, the class list is of another release and loading is an
:class:`~benchmarks.data.AnnotationError` naming the file, the first such line and the ids.

A row with more than four fields is an error naming the file and line: it is what a
spreadsheet re-save gives when it drops the quotes around the label list
(``YTID,30.000,40.000,/m/09x0r,/m/04rlf``), and reading only the first label would change
the targets silently. A header line without its ``#`` is an error that says so.

Local files: ``<root>/<ytid>.mp4`` by default (``path_template``; fields ``ytid``,
``start``, ``end`` as floats and ``start_int``, ``end_int``). Files are taken as the
downloaded 10 s segment (``trimmed=True``); with ``trimmed=False`` the segment is cut
from the full video at ``start_seconds``–``end_seconds``.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from benchmarks.data._balance import balance_multilabel, class_volumes
from benchmarks.data._common import (
    AnnotationError,
    check_template,
    existing,
    read_csv_numbered,
    read_csv_rows,
)
from benchmarks.data._dataset import ClipDataset, ClipRecord
from benchmarks.data._layout import check_root, describe_template

__all__ = ["AudioSet", "UnknownLabelsWarning", "mini_audioset", "read_class_labels"]


class UnknownLabelsWarning(UserWarning):
    """Some segment rows name label ids that the class list does not have (under the limit)."""


def read_class_labels(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """``(mids, display_names)`` from ``class_labels_indices.csv``, in index order."""
    rows = list(read_csv_rows(path))
    if not rows or [h.lower() for h in rows[0][:3]] != ["index", "mid", "display_name"]:
        raise ValueError(
            f"Parameter `class_labels` ({path!r}) should be class_labels_indices.csv with "
            f"header index,mid,display_name. Found {rows[0] if rows else 'an empty file'}."
        )
    body = sorted(rows[1:], key=lambda r: int(r[0]))
    if [int(r[0]) for r in body] != list(range(len(body))):
        raise ValueError(f"Parameter `class_labels` ({path!r}) should index classes 0..C-1.")
    return [r[1] for r in body], [r[2] for r in body]


class AudioSet(ClipDataset):
    """AudioSet segments with multi-hot targets.

    Args:
        root: folder holding the media files.
        segments: a segment CSV.
        class_labels: ``class_labels_indices.csv``.
        classes: keep only these class indices (of ``class_labels``), e.g. the ``kept``
            classes of mini-AudioSet; targets are then over these classes, in this order.
            Rows with no remaining label are dropped.
        rows: keep only these rows of the CSV (after ``only_local``), e.g. Algorithm 4's.
        only_local: drop rows whose file is absent before anything else.
        progress: show a tqdm bar during that scan (if tqdm is installed).
        trimmed: files are the 10 s segments (True) or full videos (False).
        path_template: local file of a row.
        mode: ``"train"`` or ``"test"`` sampling.
        max_unknown_labels: the largest fraction of rows that may name a label id missing
            from ``class_labels`` (counted and warned about); above it is an error. 0 makes
            any unknown id an error, 1 only warns.
        **kwargs: passed to :class:`ClipDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        segments: str | os.PathLike[str],
        class_labels: str | os.PathLike[str],
        classes: Sequence[int] | None = None,
        rows: Sequence[int] | None = None,
        only_local: bool = False,
        progress: bool = False,
        trimmed: bool = True,
        path_template: str = "{ytid}.mp4",
        mode: Literal["train", "test"] = "train",
        max_unknown_labels: float = 0.01,
        **kwargs: Any,
    ) -> None:
        self.root = os.fspath(root)
        mids, names = read_class_labels(class_labels)
        unknown: Counter[str] = Counter()
        unknown_lines: list[int] = []
        mid_index = {m: i for i, m in enumerate(mids)}
        entries: list[tuple[str, float, float, list[int], str]] = []
        check_template(path_template, ("ytid", "start", "end", "start_int", "end_int"))
        expected = 'YTID, start_seconds, end_seconds, "label,label,..."'
        for lineno, row in read_csv_numbered(segments, comment="#"):
            name = os.fspath(segments)
            where = f"Parameter `segments` ({name!r}) line {lineno}"
            if len(row) >= 2 and row[0].upper() == "YTID" and row[1].lower() == "start_seconds":
                raise AnnotationError(
                    f"{where} is a header line without its '#': {','.join(row)!r}. Header "
                    "lines of AudioSet segment CSVs start with '#'; add it or delete the line.",
                    name,
                    lineno,
                )
            if len(row) != 4:
                hint = (
                    " The label list seems to have lost its quotes (a spreadsheet re-save): "
                    "quote it again, or use the downloaded file."
                    if len(row) > 4
                    else " Fill the missing fields, or drop the line."
                )
                raise AnnotationError(
                    f"{where} should have 4 fields: {expected}. Found {len(row)}: {row}.{hint}",
                    name,
                    lineno,
                )
            try:
                ytid, start, end = row[0], float(row[1]), float(row[2])
            except ValueError:
                raise AnnotationError(
                    f"{where}: start_seconds and end_seconds should be numbers. Found "
                    f"{row[1]!r} and {row[2]!r} in {row}; write seconds (30.000) or drop the "
                    "line.",
                    name,
                    lineno,
                ) from None
            row_mids = [m.strip() for m in row[3].split(",") if m.strip()]
            strange = sorted({m for m in row_mids if m not in mid_index})
            if strange:
                unknown.update(strange)
                unknown_lines.append(lineno)
            labels = sorted({mid_index[m] for m in row_mids if m in mid_index})
            fields = {
                "ytid": ytid,
                "start": start,
                "end": end,
                "start_int": int(start),
                "end_int": int(end),
            }
            path = os.path.join(self.root, path_template.format(**fields))
            entries.append((ytid, start, end, labels, path))
        #: Rows per label id that ``class_labels`` does not list.
        self.unknown_labels: dict[str, int] = dict(unknown.most_common())
        #: The lines (1-based) of the rows that name such an id.
        self.unknown_label_lines = unknown_lines
        self.unknown_labels_note = ""
        if unknown_lines:
            ids = ", ".join(f"{m} ({n})" for m, n in list(self.unknown_labels.items())[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            share = len(unknown_lines) / max(1, len(entries))
            #: One line about unknown label ids for a log ("" when there are none).
            self.unknown_labels_note = (
                f"{os.fspath(segments)!r}: {len(unknown_lines)} of {len(entries)} rows "
                f"({share:.1%}, first on line {unknown_lines[0]}) name label ids missing from "
                f"{os.fspath(class_labels)!r}: {ids}{more}"
            )
            if share > max_unknown_labels:
                raise AnnotationError(
                    f"{self.unknown_labels_note}; more than the {max_unknown_labels:.1%} "
                    "allowed (max_unknown_labels). Pass the class_labels_indices.csv of the "
                    "same AudioSet release as the segment CSV, or raise the limit to train "
                    "without those labels.",
                    os.fspath(segments),
                    unknown_lines[0],
                )
            warnings.warn(
                f"{self.unknown_labels_note}; those labels are ignored, and a row without a "
                "known label is dropped.",
                UnknownLabelsWarning,
                stacklevel=2,
            )
        #: The media path template in use, and one line saying where the media are.
        self.path_template = path_template
        self.layout = f"media: {describe_template(path_template)}"
        if only_local:
            keep = existing([e[4] for e in entries], progress, "AudioSet: checking local files")
            entries = [entries[i] for i in keep]
        if rows is not None:
            entries = [entries[i] for i in np.asarray(rows, dtype=np.int64)]
        self.all_mids = mids
        self.class_indices = (
            list(range(len(mids))) if classes is None else [int(c) for c in classes]
        )
        remap = {c: j for j, c in enumerate(self.class_indices)}
        records = []
        for ytid, start, end, labels, path in entries:
            kept = [remap[c] for c in labels if c in remap]
            if not kept:
                continue
            window = (None, None) if trimmed else (start, end)
            records.append(ClipRecord(path, tuple(kept), ytid, *window))
        super().__init__(
            records, mode=mode, classes=[names[c] for c in self.class_indices], **kwargs
        )

    @classmethod
    def check_layout(
        cls,
        root: str | os.PathLike[str],
        segments: str | os.PathLike[str],
        class_labels: str | os.PathLike[str],
        path_template: str = "{ytid}.mp4",
        trimmed: bool = True,
        sample: int = 64,
    ) -> None:
        """Check before training that ``root`` holds the segments' files where expected.

        Raises:
            ValueError: the root is not a folder, a CSV is missing or malformed, or none of
                ``sample`` listed files exists; the message names the path and the layout.
        """
        layout = (
            f"<root>/{path_template}, segments {os.fspath(segments)!r}, "
            f"classes {os.fspath(class_labels)!r}"
        )
        check_root(root, layout)
        try:
            dataset = cls(
                root, segments, class_labels, path_template=path_template, trimmed=trimmed
            )
        except FileNotFoundError as exc:
            raise ValueError(f"{exc} Expected layout: {layout}.") from None
        dataset.check_media(layout, sample)

    def label_matrix(self) -> np.ndarray:
        """N × C boolean matrix of the targets (the ``labels`` of Algorithm 4)."""
        if not self.records:
            return np.zeros((0, len(self.class_indices)), dtype=bool)
        labels = np.zeros((len(self.records), len(self.class_indices)), dtype=bool)
        for i, r in enumerate(self.records):
            labels[i, list(r.target)] = True
        return labels

    def select(self, rows: Sequence[int], classes: Sequence[int] | None = None) -> AudioSet:
        """A copy restricted to ``rows`` and (local) class indices ``classes``."""
        new = object.__new__(AudioSet)
        new.__dict__.update(self.__dict__)
        classes = list(range(len(self.class_indices))) if classes is None else list(classes)
        new.class_indices = [self.class_indices[c] for c in classes]
        new.classes = [self.classes[c] for c in classes] if self.classes else None
        new.num_classes = len(classes)
        remap = {c: j for j, c in enumerate(classes)}
        picked = [self.records[i] for i in np.asarray(rows, dtype=np.int64)]
        new.records = [
            ClipRecord(
                r.path,
                tuple(sorted(remap[c] for c in r.target if c in remap)),
                r.video_id,
                r.start,
                r.end,
            )
            for r in picked
        ]
        return new


def mini_audioset(
    dataset: AudioSet, min_count: int = 500, target: int = 1100, seed: int = 0
) -> tuple[AudioSet, np.ndarray]:
    """mini-AudioSet: Algorithm 4 applied to ``dataset`` (§3.1: 500 / 1100 → 418 classes).

    Returns:
        ``(subset, volumes)``: the balanced dataset over the kept classes, and the final
        number of positives per kept class (some end above ``target``; see
        :func:`balance_multilabel`).
    """
    labels = dataset.label_matrix()
    rows, kept = balance_multilabel(labels, min_count=min_count, target=target, seed=seed)
    subset = dataset.select(rows, kept)
    return subset, class_volumes(labels, rows, kept)
