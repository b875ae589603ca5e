"""EPIC-Kitchens-55 action segments, with an unseen-kitchen validation split (§4).

``EPIC_train_action_labels.csv`` columns: uid, participant_id, video_id, narration,
start_timestamp, stop_timestamp, start_frame, stop_frame, verb, verb_class, noun,
noun_class, all_nouns, all_noun_classes. Timestamps are ``HH:MM:SS.ff``; frames are at
60 fps. Local videos: ``<root>/<participant_id>/<video_id>.MP4`` (``path_template``).

§4: "For ablations, following [7], we construct a validation set of unseen kitchen
environments." The paper does not list the participants; the default
:data:`EPIC_UNSEEN_VAL_PARTICIPANTS` is our choice (the six highest-numbered kitchens,
P26–P31), not the paper's list. Pass your own with ``val_participants``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from benchmarks.data._common import read_csv_rows
from benchmarks.data._dataset import ClipDataset, ClipRecord

__all__ = ["EPIC_UNSEEN_VAL_PARTICIPANTS", "EpicKitchens55", "parse_timestamp"]

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
        path_template: local file; fields ``participant_id``, ``video_id``.
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
        path_template: str = "{participant_id}/{video_id}.MP4",
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
        rows = list(read_csv_rows(annotations))
        header = rows[0] if rows else []
        missing = [c for c in _COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"Parameter `annotations` ({annotations!r}) should have the EPIC-55 columns; "
                f"missing {missing}."
            )
        col = {name: i for i, name in enumerate(header)}
        data = [dict(zip(header, r, strict=False)) for r in rows[1:]]
        self.root = os.fspath(root)
        self.val_participants = tuple(val_participants)
        self.target_kind = target
        self.action_classes = sorted({(int(r["verb_class"]), int(r["noun_class"])) for r in data})
        action_index = {pair: i for i, pair in enumerate(self.action_classes)}
        held = set(self.val_participants)
        records = []
        for r in data:
            unseen = r["participant_id"] in held
            if (split == "train" and unseen) or (split == "val" and not unseen):
                continue
            if "start_timestamp" in col and r.get("start_timestamp"):
                start = parse_timestamp(r["start_timestamp"])
                stop = parse_timestamp(r["stop_timestamp"])
            else:
                start, stop = int(r["start_frame"]) / fps, int(r["stop_frame"]) / fps
            verb, noun = int(r["verb_class"]), int(r["noun_class"])
            label = {"verb": verb, "noun": noun, "action": action_index.get((verb, noun), -1)}
            path = os.path.join(self.root, path_template.format(**r))
            records.append(ClipRecord(path, label[target], r["uid"], start, max(stop, start)))
        super().__init__(records, mode=mode or ("train" if split == "train" else "test"), **kwargs)
