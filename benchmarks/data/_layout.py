"""Where a dataset's media are: the root check, layout detection, and the missing-media count.

A published dataset is unpacked in a few common layouts (Kinetics with label folders spelled
with spaces or underscores, or with no label folders at all; Sports-1M flat or in class
folders; EPIC-Kitchens by participant, by split, or the EPIC-100 download scripts' tree).
:func:`detect_template` looks up the files of the first annotated rows under each candidate
path template and keeps the one that finds most, once, before any record is built;
:func:`describe_template` renders it for a one-line log.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DETECT_SAMPLE",
    "check_root",
    "count_missing",
    "describe_template",
    "detect_template",
    "missing_allowed",
]

#: How many annotated rows :func:`detect_template` looks up per candidate template.
DETECT_SAMPLE = 32

_FIELD = re.compile(r"\{(\w+)(?::([^}]*))?\}")
_FIELD_NAMES = {"label_underscored": "label with underscores"}


def check_root(root: str | os.PathLike[str], layout: str) -> None:
    """Raise a ValueError naming ``root`` and the expected ``layout`` if it is not a folder.

    Raises:
        TypeError: ``root`` is not a path.
        ValueError: ``root`` does not exist or is a file.
    """
    if not isinstance(root, str | os.PathLike):
        raise TypeError(f"Parameter `root` should be a path. Found {type(root).__name__}.")
    path = os.fspath(root)
    if not os.path.isdir(path):
        state = "is a file" if os.path.exists(path) else "does not exist"
        raise ValueError(
            f"Data root {path!r} {state}; expected a folder laid out as {layout}. Pass the "
            "folder that holds the dataset (--data-root)."
        )


def describe_template(template: str) -> str:
    """A path template for people: ``{label_underscored}`` → ``<label with underscores>``."""

    def field(match: re.Match[str]) -> str:
        name = _FIELD_NAMES.get(match.group(1), match.group(1))
        spec = f":{match.group(2)}" if match.group(2) else ""
        return f"<{name}{spec}>"

    return _FIELD.sub(field, template)


def detect_template(
    root: str | os.PathLike[str],
    candidates: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    sample: int = DETECT_SAMPLE,
) -> tuple[str, int, int]:
    """The candidate path template under which most of the first ``sample`` rows' files exist.

    Args:
        root: the folder the templates are relative to.
        candidates: ``str.format`` templates in order of preference (a tie keeps the earlier
            one; none found keeps the first, so the usual "not found" errors name it).
        rows: the fields of each annotated row, in file order.
        sample: how many rows to look up (the first ones).

    Returns:
        ``(template, found, looked_up)``: the chosen template, how many of the looked-up
        files it finds, and how many rows were looked up.
    """
    if not candidates:
        raise ValueError("Parameter `candidates` should name at least one path template.")
    root = os.fspath(root)
    first = list(rows[:sample])
    best, best_found = candidates[0], -1
    for template in candidates:
        found = sum(os.path.isfile(os.path.join(root, template.format(**r))) for r in first)
        if found > best_found:
            best, best_found = template, found
        if found == len(first):
            break
    return best, max(best_found, 0), len(first)


def missing_allowed(total: int, fraction: float) -> int:
    """How many of ``total`` media files may be missing under a ``fraction`` limit (rounded up,
    so one missing file of a tiny dataset is tolerated by any positive limit)."""
    return math.ceil(max(0.0, fraction) * total - 1e-9)


def count_missing(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(missing, empty)``: the paths that are not files, and the zero-byte files.

    One ``stat`` per path.
    """
    missing: list[str] = []
    empty: list[str] = []
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        if not stat.S_ISREG(info.st_mode):
            missing.append(path)
        elif info.st_size == 0:
            empty.append(path)
    return missing, empty
