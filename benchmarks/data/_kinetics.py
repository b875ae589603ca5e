"""Kinetics-400/600/700 in the published format (§3.1: train split for training, val for test).

Annotation CSV columns: ``label,youtube_id,time_start,time_end,split`` (``split`` and other
extra columns such as ``is_cc`` optional); the CSV is read strictly (an unclosed quote, a
field over several lines or a row with another field count than the header is an
:class:`~benchmarks.data.AnnotationError` naming file and line). Videos are the trimmed 10 s
clips ``<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` the common downloaders write, in
one of the layouts of :data:`KINETICS_PATH_TEMPLATES`, found without configuration
(``path_template=None``): label folders spelled as in the CSV
(``<root>/<split>/<label>/...``), with underscores for spaces (``<split>/air_drumming/...``),
or no label folders (``<root>/<split>/<file>``, as the CVDF tarballs unpack). Class index:
labels sorted alphabetically, or the ``classes`` list you pass (pass the train split's
``dataset.classes`` to the val split).

Optical flow (Table 4): ``modalities=("rgb", "flow")`` etc. reads a precomputed
``(N, 2, H, W)`` float16 ``.npy`` per video at ``flow_template`` (default: ``flow/`` + the
video's template with ``.npy``, e.g.
``<root>/flow/<split>/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.npy``), sampled
with the RGB clip's window; see ``_flow.py`` and docs/datasets.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from benchmarks.data._common import (
    AnnotationError,
    check_template,
    class_index,
    read_csv_numbered,
)
from benchmarks.data._dataset import MODALITIES, ClipDataset, ClipRecord
from benchmarks.data._layout import check_root, describe_template, detect_template

__all__ = [
    "KINETICS_FLOW_TEMPLATE",
    "KINETICS_PATH_TEMPLATE",
    "KINETICS_PATH_TEMPLATES",
    "Kinetics",
]

#: Default location of a video under the root. Fields: split, label, label_underscored,
#: youtube_id, time_start, time_end (ints, seconds).
KINETICS_PATH_TEMPLATE = "{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
#: The layouts looked up when no template is given, in order of preference: label folders as
#: in the CSV, label folders with underscores for spaces, no label folders.
KINETICS_PATH_TEMPLATES = (
    KINETICS_PATH_TEMPLATE,
    "{split}/{label_underscored}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
    "{split}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
)
#: Default location of a video's precomputed optical flow under the root (same fields).
KINETICS_FLOW_TEMPLATE = "flow/{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.npy"
_FIELDS = ("split", "label", "label_underscored", "youtube_id", "time_start", "time_end")


class Kinetics(ClipDataset):
    """Kinetics-400/600/700 clips from an annotation CSV and a root folder.

    Args:
        root: folder holding the videos.
        annotations: the split's CSV (e.g. ``<root>/annotations/train.csv``).
        split: the folder name used in ``path_template`` (``"train"``, ``"val"``, ...). Rows
            whose ``split`` column names another split are kept; the CSV defines the split.
        mode: ``"train"`` or ``"test"`` sampling (default: train for split "train").
        classes: class names in index order (default: the CSV's labels sorted).
        path_template: where a row's video is, relative to ``root``; None (the default)
            picks among :data:`KINETICS_PATH_TEMPLATES` the one that finds most of the
            first rows' videos (see :attr:`path_template` and :attr:`layout`).
        flow_template: where a row's optical flow is (used with ``"flow"`` in
            ``modalities``), relative to ``root``; None: ``flow/`` + the video template
            with ``.npy`` (:data:`KINETICS_FLOW_TEMPLATE` for the default layout).
        **kwargs: passed to :class:`ClipDataset` (``spec``, ``modalities``, ...).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        split: str = "train",
        mode: Literal["train", "test"] | None = None,
        classes: Sequence[str] | None = None,
        path_template: str | None = None,
        flow_template: str | None = None,
        **kwargs: Any,
    ) -> None:
        if path_template is not None:
            check_template(path_template, _FIELDS)
        if flow_template is not None:
            check_template(flow_template, _FIELDS, "flow_template")
        annotations = os.fspath(annotations)
        rows = list(read_csv_numbered(annotations, same_width=True))
        if not rows:
            raise ValueError(f"Parameter `annotations` points at an empty file: {annotations!r}.")
        header = [h.lower() for h in rows[0][1]]
        needed = ["label", "youtube_id", "time_start", "time_end"]
        missing = [c for c in needed if c not in header]
        if missing:
            unlabelled = " (a test split without labels cannot be trained or scored)"
            raise AnnotationError(
                f"Parameter `annotations` ({annotations!r}) line {rows[0][0]} should be a "
                f"header with the columns {needed}; missing {missing} in {rows[0][1]}"
                f"{unlabelled if missing == ['label'] else ''}. Use the released CSV of the "
                "split (its first line names the columns).",
                annotations,
                rows[0][0],
            )
        col = {name: header.index(name) for name in needed}
        width = max(col.values()) + 1
        data = []
        for lineno, r in rows[1:]:
            if len(r) < width or not r[col["label"]] or not r[col["youtube_id"]]:
                raise AnnotationError(
                    f"Parameter `annotations` ({annotations!r}) line {lineno} should fill "
                    f"{needed} as in the header {rows[0][1]}. Found {r}; fill the empty "
                    "fields or drop the line.",
                    annotations,
                    lineno,
                )
            try:
                times = int(float(r[col["time_start"]])), int(float(r[col["time_end"]]))
            except ValueError:
                raise AnnotationError(
                    f"Parameter `annotations` ({annotations!r}) line {lineno}: time_start and "
                    f"time_end should be numbers (seconds). Found {r}; write seconds (59 or "
                    "59.0, not 0:59) or drop the line.",
                    annotations,
                    lineno,
                ) from None
            data.append((r, times))
        labels = [r[col["label"]] for r, _ in data]
        if classes is not None:
            unknown = sorted(set(labels) - set(classes))
            if unknown:
                raise ValueError(
                    f"Parameter `classes` lacks labels found in {annotations!r}: {unknown[:5]}."
                )
        index = class_index(labels, classes)
        self.root = os.fspath(root)
        self.split = split
        rows_fields = [
            {
                "split": split,
                "label": label,
                "label_underscored": label.replace(" ", "_"),
                "youtube_id": r[col["youtube_id"]],
                "time_start": time_start,
                "time_end": time_end,
            }
            for (r, (time_start, time_end)), label in zip(data, labels, strict=True)
        ]
        found = looked_up = 0
        if path_template is None:
            path_template, found, looked_up = detect_template(
                self.root, KINETICS_PATH_TEMPLATES, rows_fields
            )
        if flow_template is None:
            flow_template = "flow/" + os.path.splitext(path_template)[0] + ".npy"
        #: The video path template in use (given, or detected).
        self.path_template = path_template
        self.flow_template = flow_template
        #: One line saying where the videos are, e.g. for a training log.
        self.layout = f"videos: {describe_template(path_template)}" + (
            f" (found {found} of the first {looked_up})" if looked_up else ""
        )
        records = []
        for fields, label in zip(rows_fields, labels, strict=True):
            path = os.path.join(self.root, path_template.format(**fields))
            flow = os.path.join(self.root, flow_template.format(**fields))
            records.append(ClipRecord(path, index[label], fields["youtube_id"], flow_path=flow))
        if mode is None:
            mode = "train" if split == "train" else "test"
        super().__init__(records, mode=mode, classes=list(index), **kwargs)

    @classmethod
    def check_layout(
        cls,
        root: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        split: str = "train",
        path_template: str | None = None,
        flow_template: str | None = None,
        modalities: Sequence[str] = MODALITIES,
        sample: int = 64,
    ) -> None:
        """Check before training that ``root`` holds this split in the expected layout.

        Reads the annotation CSV (its errors name file and line) and checks that ``sample``
        of its videos (and flow files, with ``"flow"``) are where the templates say.

        Raises:
            ValueError: the root is not a folder, the CSV is missing or malformed, or none
                of the checked files exists; the message names the path and the layout.
        """
        shown = path_template or " or <root>/".join(KINETICS_PATH_TEMPLATES)
        layout = f"<root>/{shown}, annotations {os.fspath(annotations)!r}"
        if "flow" in modalities:
            layout += f", flow <root>/{flow_template or 'flow/<video path>.npy'}"
        check_root(root, layout)
        try:
            dataset = cls(
                root,
                annotations,
                split=split,
                path_template=path_template,
                flow_template=flow_template,
                modalities=modalities,
            )
        except FileNotFoundError as exc:
            raise ValueError(f"{exc} Expected layout: {layout}.") from None
        layout = f"<root>/{dataset.path_template}, annotations {os.fspath(annotations)!r}"
        if "flow" in modalities:
            layout += f", flow <root>/{dataset.flow_template}"
        if path_template is None:
            others = [t for t in KINETICS_PATH_TEMPLATES if t != dataset.path_template]
            layout += f" (looked up first; also tried {others})"
        dataset.check_media(layout, sample)
