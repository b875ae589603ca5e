"""Helpers shared by the dataset formats: label maps, path templates, CSV reading."""

from __future__ import annotations

import csv
import gzip
import os
import string
from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "check_template",
    "class_index",
    "existing",
    "open_text",
    "read_csv_numbered",
    "read_csv_rows",
]


def open_text(path: str | os.PathLike[str]):
    """Open a text file, transparently un-gzipping ``*.gz``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Annotation file not found: {path!r}. Check the root folder.")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_csv_numbered(
    path: str | os.PathLike[str], comment: str | None = None
) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a CSV file, skipping blank lines and ``comment`` lines.

    Line numbers count from 1 in the file itself (comments and blank lines included), so
    error messages can point at the line a user opens in an editor. Fields are stripped.
    """
    with open_text(path) as f:
        # Comment lines become blank lines (not dropped) so the reader's line count stays true.
        lines: Iterable[str] = f
        if comment is not None:
            lines = ("\n" if line.lstrip().startswith(comment) else line for line in f)
        reader = csv.reader(lines, skipinitialspace=True)
        for row in reader:
            if not row or not any(field.strip() for field in row):
                continue
            yield reader.line_num, [field.strip() for field in row]


def read_csv_rows(path: str | os.PathLike[str], comment: str | None = None) -> Iterator[list[str]]:
    """Rows of a CSV file (fields stripped), skipping blank lines and ``comment`` lines."""
    for _, row in read_csv_numbered(path, comment):
        yield row


def check_template(template: str, fields: Iterable[str], parameter: str = "path_template") -> None:
    """Raise a ValueError naming the unknown fields of a ``str.format`` path template.

    Args:
        template: e.g. ``"{label}/{youtube_id}.mp4"``.
        fields: the field names the loader fills.
        parameter: the parameter's name, for the message.

    Raises:
        TypeError: ``template`` is not a string.
        ValueError: the template is malformed or names a field the loader does not fill.
    """
    if not isinstance(template, str):
        raise TypeError(
            f"Parameter `{parameter}` should be a str.format template. Found "
            f"{type(template).__name__}."
        )
    known = sorted(set(fields))
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"Parameter `{parameter}` ({template!r}) is malformed: {exc}.") from exc
    unknown = sorted({n.split(".")[0].split("[")[0] for n in names} - set(known))
    if unknown or any(not n for n in names):
        raise ValueError(
            f"Parameter `{parameter}` ({template!r}) uses the fields {unknown or ['{}']}; "
            f"this loader fills only {known}. Use named fields among those."
        )


def class_index(names: Iterable[str], classes: Sequence[str] | None) -> dict[str, int]:
    """Map class name → index: ``classes`` order if given, else the names sorted."""
    if classes is None:
        classes = sorted(set(names))
    return {name: i for i, name in enumerate(classes)}


def existing(
    paths: Sequence[str], progress: bool = False, desc: str = "checking files"
) -> list[int]:
    """Indices of ``paths`` that are files; a tqdm bar when ``progress`` and tqdm is installed."""
    items: Iterable[tuple[int, str]] = enumerate(paths)
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # tqdm is an optional extra
            pass
        else:
            items = tqdm(items, total=len(paths), desc=desc, unit="file")
    return [i for i, p in items if os.path.isfile(p)]
