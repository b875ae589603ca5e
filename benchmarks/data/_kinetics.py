"""Kinetics-400/600/700 in the published format (§3.1: train split for training, val for test).

Annotation CSV columns: ``label,youtube_id,time_start,time_end,split`` (``split`` and other
extra columns such as ``is_cc`` optional). Videos laid out as
``<root>/<split>/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` (the trimmed
10 s clips the common downloaders write). Class index: labels sorted alphabetically, or the
``classes`` list you pass (pass the train split's ``dataset.classes`` to the val split).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from benchmarks.data._common import class_index, read_csv_rows
from benchmarks.data._dataset import ClipDataset, ClipRecord

__all__ = ["KINETICS_PATH_TEMPLATE", "Kinetics"]

#: Default location of a video under the root. Fields: split, label, label_underscored,
#: youtube_id, time_start, time_end (ints, seconds).
KINETICS_PATH_TEMPLATE = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"


class Kinetics(ClipDataset):
    """Kinetics-400/600/700 clips from an annotation CSV and a root folder.

    Args:
        root: folder holding the videos.
        annotations: the split's CSV (e.g. ``<root>/annotations/train.csv``).
        split: the folder name used in ``path_template`` (``"train"``, ``"val"``, ...). Rows
            whose ``split`` column names another split are kept; the CSV defines the split.
        mode: ``"train"`` or ``"test"`` sampling (default: train for split "train").
        classes: class names in index order (default: the CSV's labels sorted).
        path_template: where a row's video is, relative to ``root``.
        **kwargs: passed to :class:`ClipDataset` (``spec``, ``modalities``, ...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        split: str = "train",
        mode: Literal["train", "test"] | None = None,
        classes: Sequence[str] | None = None,
        path_template: str = KINETICS_PATH_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        rows = list(read_csv_rows(annotations))
        if not rows:
            raise ValueError(f"Parameter `annotations` points at an empty file: {annotations!r}.")
        header = [h.lower() for h in rows[0]]
        needed = ["label", "youtube_id", "time_start", "time_end"]
        missing = [c for c in needed if c not in header]
        if missing:
            raise ValueError(
                f"Parameter `annotations` ({annotations!r}) should have the columns {needed}; "
                f"missing {missing} in header {rows[0]}."
            )
        col = {name: header.index(name) for name in needed}
        data = [r for r in rows[1:] if len(r) >= len(header)]
        labels = [r[col["label"]] for r in data]
        if classes is not None:
            unknown = sorted(set(labels) - set(classes))
            if unknown:
                raise ValueError(
                    f"Parameter `classes` lacks labels found in {annotations!r}: {unknown[:5]}."
                )
        index = class_index(labels, classes)
        self.root = os.fspath(root)
        self.split = split
        records = []
        for r, label in zip(data, labels, strict=True):
            fields = {
                "split": split,
                "label": label,
                "label_underscored": label.replace(" ", "_"),
                "youtube_id": r[col["youtube_id"]],
                "time_start": int(float(r[col["time_start"]])),
                "time_end": int(float(r[col["time_end"]])),
            }
            path = os.path.join(self.root, path_template.format(**fields))
            records.append(ClipRecord(path, index[label], fields["youtube_id"]))
        if mode is None:
            mode = "train" if split == "train" else "test"
        super().__init__(records, mode=mode, classes=list(index), **kwargs)
