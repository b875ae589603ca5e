"""EPIC-Kitchens-55 action segments, with an unseen-kitchen validation split (§4).

``EPIC_train_action_labels.csv`` columns: uid, participant_id, video_id, narration,
start_timestamp, stop_timestamp, start_frame, stop_frame, verb, verb_class, noun,
noun_class, all_nouns, all_noun_classes. Timestamps are ``HH:MM:SS.ff``; frames are at
60 fps. Local videos, found without configuration among :data:`EPIC_PATH_TEMPLATES`:
``<root>/<participant_id>/<video_id>.MP4`` (participant folders),
``<root>/<participant_id>/videos/<video_id>.MP4`` (the EPIC-KITCHENS-100 download scripts,
which fetch the 55 videos too) or ``<root>/videos/train/<participant_id>/<video_id>.MP4``
(the EPIC-KITCHENS-55 release's tree); ``path_template`` for any other. The CSV is read
strictly (an unclosed quote or a row with another field count than the header is an
:class:`~benchmarks.data.AnnotationError` naming file and line).

Class lists: ``EPIC_verb_classes.csv`` (``verb_id,class_key,verbs``, 125 rows) and
``EPIC_noun_classes.csv`` (``noun_id,class_key,nouns``, 352 rows), read from beside the
annotation file when present (or the paths you pass). They give ``num_classes`` (125 verbs,
352 nouns; the train split alone holds only 113 of the 125 verbs) and the class names.

§4: "For ablations, following [7], we construct a validation set of unseen kitchen
environments." The paper does not list the participants; the default
:data:`EPIC_UNSEEN_VAL_PARTICIPANTS` is our choice (the six highest-numbered kitchens,
P26–P31), not the paper's list. Pass your own with ``val_participants``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from benchmarks.data._common import AnnotationError, check_template, read_csv_numbered
from benchmarks.data._dataset import ClipDataset, ClipRecord
from benchmarks.data._layout import check_root, describe_template, detect_template

__all__ = [
    "EPIC_CLASS_FILES",
    "EPIC_PATH_TEMPLATES",
    "EPIC_UNSEEN_VAL_PARTICIPANTS",
    "EpicKitchens55",
    "parse_timestamp",
    "read_epic_classes",
]

#: Our default unseen-kitchen validation participants (a choice; see the module docstring).
EPIC_UNSEEN_VAL_PARTICIPANTS = ("P26", "P27", "P28", "P29", "P30", "P31")

_COLUMNS = (
    "uid",
    "participant_id",
    "video_id",
    "start_frame",
    "stop_frame",
    "verb_class",
    "noun_class",
)


#: The layouts looked up when no template is given, in order of preference: participant
#: folders; the EPIC-100 download scripts' ``P01/videos/``; the EPIC-55 release's
#: ``videos/train/P01/``.
EPIC_PATH_TEMPLATES = (
    "{participant_id}/{video_id}.MP4",
    "{participant_id}/videos/{video_id}.MP4",
    "videos/train/{participant_id}/{video_id}.MP4",
)

#: File names of the EPIC-55 class lists, looked up beside the annotation file.
EPIC_CLASS_FILES = {"verb": "EPIC_verb_classes.csv", "noun": "EPIC_noun_classes.csv"}


def read_epic_classes(path: str | os.PathLike[str]) -> list[str]:
    """Class keys in index order from ``EPIC_verb_classes.csv`` / ``EPIC_noun_classes.csv``.

    EPIC-55 columns: ``verb_id,class_key,verbs`` (``noun_id,class_key,nouns``); the first
    column is the class index (0..C-1), the second its name. EPIC-100's ``id,key,...``
    files are read the same way.

    Raises:
        ValueError: the header has no id/key columns, an id is not an int, or the ids are
            not exactly 0..C-1; the message names the file and line.
    """
    rows = list(read_csv_numbered(path))
    header = [h.lower() for h in rows[0][1]] if rows else []
    if len(header) < 2 or not header[0].endswith("id") or "key" not in header[1]:
        raise ValueError(
            f"Parameter `{os.path.basename(os.fspath(path))}` ({os.fspath(path)!r}) should be "
            f"an EPIC class list with header 'verb_id,class_key,verbs' (or "
            f"'noun_id,class_key,nouns'). Found {rows[0][1] if rows else 'an empty file'}."
        )
    names: dict[int, str] = {}
    for lineno, row in rows[1:]:
        try:
            index = int(row[0])
        except ValueError:
            raise AnnotationError(
                f"{os.fspath(path)!r} line {lineno}, column {header[0]!r}: should be an int "
                f"class index. Found {row[0]!r}; use the class list of the EPIC release.",
                os.fspath(path),
                lineno,
            ) from None
        names[index] = row[1] if len(row) > 1 else ""
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{os.fspath(path)!r} should index its classes 0..C-1 exactly once.")
    return [names[i] for i in range(len(names))]


def parse_timestamp(text: str) -> float:
    """Seconds from ``HH:MM:SS.ff`` (or ``MM:SS.ff`` / ``SS.ff``)."""
    try:
        seconds = 0.0
        for part in text.strip().split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError as exc:
        raise ValueError(f"Cannot read timestamp {text!r}; expected HH:MM:SS.ff.") from exc
    return seconds


class EpicKitchens55(ClipDataset):
    """EPIC-Kitchens-55 action segments as clips.

    Args:
        root: folder holding the videos.
        annotations: ``EPIC_train_action_labels.csv``.
        split: ``"train"`` (kitchens not in ``val_participants``), ``"val"`` (the unseen
            kitchens) or ``"all"``.
        val_participants: the held-out kitchens (default: our choice, see module docs).
        target: ``"verb"`` (125 classes), ``"noun"`` (352), or ``"action"`` — an index into
            :attr:`action_classes`, the sorted (verb_class, noun_class) pairs of the whole
            annotation file.
        fps: frame rate used when only frames are given (60 for EPIC-55).
        verb_classes, noun_classes: the class lists; default: ``EPIC_verb_classes.csv`` /
            ``EPIC_noun_classes.csv`` beside ``annotations`` when they exist, else none
            (then ``num_classes`` is None for verb/noun targets).
        path_template: local file; fields: the CSV's columns (``participant_id``,
            ``video_id``, ...). None (the default): the one of :data:`EPIC_PATH_TEMPLATES`
            that finds most of the first rows' videos.
        mode: ``"train"`` or ``"test"`` sampling (default from ``split``).
        **kwargs: passed to :class:`ClipDataset`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        split: Literal["train", "val", "all"] = "train",
        val_participants: Sequence[str] = EPIC_UNSEEN_VAL_PARTICIPANTS,
        target: Literal["verb", "noun", "action"] = "verb",
        fps: float = 60.0,
        verb_classes: str | os.PathLike[str] | None = None,
        noun_classes: str | os.PathLike[str] | None = None,
        path_template: str | None = None,
        mode: Literal["train", "test"] | None = None,
        **kwargs: Any,
    ) -> None:
        if split not in ("train", "val", "all"):
            raise ValueError(
                f"Parameter `split` should be 'train', 'val' or 'all'. Found {split!r}."
            )
        if target not in ("verb", "noun", "action"):
            raise ValueError(
                f"Parameter `target` should be 'verb', 'noun' or 'action'. Found {target!r}."
            )
        if isinstance(val_participants, str):
            raise TypeError(
                "Parameter `val_participants` should be a sequence of ids like ('P26',), not "
                f"the string {val_participants!r}."
            )
        annotations = os.fspath(annotations)
        rows = list(read_csv_numbered(annotations, same_width=True))
        header = rows[0][1] if rows else []
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"Parameter `annotations` ({annotations!r}) should have the EPIC-55 columns; "
                f"missing {missing}."
            )
        if path_template is not None:
            check_template(path_template, header)
        col = {name: i for i, name in enumerate(header)}
        folder = os.path.dirname(annotations)
        class_files = {"verb": verb_classes, "noun": noun_classes}
        self.verb_classes: list[str] | None = None
        self.noun_classes: list[str] | None = None
        for kind, given in class_files.items():
            path = given
            if path is None and os.path.isfile(os.path.join(folder, EPIC_CLASS_FILES[kind])):
                path = os.path.join(folder, EPIC_CLASS_FILES[kind])
            if path is not None:
                setattr(self, f"{kind}_classes", read_epic_classes(path))
        data: list[tuple[int, dict[str, str], int, int]] = []
        for lineno, r in rows[1:]:
            row = dict(zip(header, r, strict=False))
            verb = _class_field(row, "verb_class", annotations, lineno, self.verb_classes)
            noun = _class_field(row, "noun_class", annotations, lineno, self.noun_classes)
            data.append((lineno, row, verb, noun))
        self.root = os.fspath(root)
        self.val_participants = tuple(val_participants)
        self.target_kind = target
        self.action_classes = sorted({(verb, noun) for _, _, verb, noun in data})
        action_index = {pair: i for i, pair in enumerate(self.action_classes)}
        held = set(self.val_participants)
        found = looked_up = 0
        if path_template is None:
            path_template, found, looked_up = detect_template(
                self.root, EPIC_PATH_TEMPLATES, [row for _, row, _, _ in data]
            )
        #: The video path template in use (given, or detected).
        self.path_template = path_template
        #: One line saying where the videos are, e.g. for a training log.
        self.layout = f"videos: {describe_template(path_template)}" + (
            f" (found {found} of the first {looked_up})" if looked_up else ""
        )
        records = []
        for lineno, r, verb, noun in data:
            unseen = r["participant_id"] in held
            if (split == "train" and unseen) or (split == "val" and not unseen):
                continue
            try:
                if "start_timestamp" in col and r.get("start_timestamp"):
                    start = parse_timestamp(r["start_timestamp"])
                    stop = parse_timestamp(r["stop_timestamp"])
                else:
                    start, stop = int(r["start_frame"]) / fps, int(r["stop_frame"]) / fps
            except ValueError as exc:
                raise AnnotationError(
                    f"Parameter `annotations` ({annotations!r}) line {lineno}: {exc} Fix the "
                    "time or drop the line.",
                    annotations,
                    lineno,
                ) from None
            label = {"verb": verb, "noun": noun, "action": action_index[(verb, noun)]}
            path = os.path.join(self.root, path_template.format(**r))
            records.append(ClipRecord(path, label[target], r["uid"], start, max(stop, start)))
        names = {
            "verb": self.verb_classes,
            "noun": self.noun_classes,
            "action": None,
        }[target]
        verbs, nouns = self.verb_classes, self.noun_classes
        if target == "action" and verbs and nouns:
            names = [f"{verbs[v]} {nouns[n]}" for v, n in self.action_classes]
        kwargs.setdefault("classes", names)
        if target == "action":
            kwargs.setdefault("num_classes", len(self.action_classes))
        super().__init__(records, mode=mode or ("train" if split == "train" else "test"), **kwargs)

    @classmethod
    def check_layout(
        cls,
        root: str | os.PathLike[str],
        annotations: str | os.PathLike[str],
        verb_classes: str | os.PathLike[str] | None = None,
        noun_classes: str | os.PathLike[str] | None = None,
        path_template: str | None = None,
        sample: int = 64,
    ) -> None:
        """Check before training that ``root`` holds the annotated videos where expected.

        Raises:
            ValueError: the root is not a folder, a CSV is missing or malformed, or none of
                ``sample`` annotated videos exists; the message names the path and layout.
        """
        shown = path_template or " or <root>/".join(EPIC_PATH_TEMPLATES)
        layout = f"<root>/{shown}, annotations {os.fspath(annotations)!r}"
        check_root(root, layout)
        try:
            dataset = cls(
                root,
                annotations,
                split="all",
                verb_classes=verb_classes,
                noun_classes=noun_classes,
                path_template=path_template,
            )
        except FileNotFoundError as exc:
            raise ValueError(f"{exc} Expected layout: {layout}.") from None
        dataset.check_media(layout, sample)


def _class_field(
    row: dict[str, str], column: str, path: str, lineno: int, names: list[str] | None
) -> int:
    """The int in ``column`` of an annotation row, with an error naming file, line, column."""
    text = row[column]
    try:
        value = int(text)
    except ValueError:
        raise AnnotationError(
            f"Parameter `annotations` ({path!r}) line {lineno}, column {column!r}: should be "
            f"an int class index. Found {text!r}; fill it from the class list or drop the row.",
            path,
            lineno,
        ) from None
    if names is not None and not 0 <= value < len(names):
        raise AnnotationError(
            f"Parameter `annotations` ({path!r}) line {lineno}, column {column!r}: class "
            f"{value} is outside the {len(names)} classes of the class list; pass the class "
            "list of the same EPIC release.",
            path,
            lineno,
        )
    return value
