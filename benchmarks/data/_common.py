"""Helpers shared by the dataset formats: label maps, path templates, CSV reading."""

from __future__ import annotations

import csv
import gzip
import os
import string
from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "AnnotationError",
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


class AnnotationError(ValueError):
    """An annotation file that does not read cleanly; the message names file, line and fix.

    Attributes:
        path: the file.
        line: the line (counted from 1 in the file) where the bad record starts.
    """

    def __init__(self, message: str, path: str, line: int) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


def read_csv_numbered(
    path: str | os.PathLike[str],
    comment: str | None = None,
    same_width: bool = False,
) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` of a CSV file, skipping blank lines and ``comment`` lines.

    Line numbers count from 1 in the file itself (comments and blank lines included), so
    error messages can point at the line a user opens in an editor; a record is numbered by
    the line it starts on. Fields are stripped. The file is read with the csv module's
    strict mode: a quote that is never closed, or text after a closing quote, is an error,
    and so is a field holding a line break (a label never spans lines; such a field is a
    quote opened by mistake that swallowed the following rows).

    Args:
        path: the file (``.gz`` is un-gzipped).
        comment: lines starting with this are skipped.
        same_width: every record must have as many fields as the first one (the header).

    Raises:
        AnnotationError: a record does not parse, holds a line break, or (``same_width``)
            has another field count than the header; the message names file and line.
    """
    name = os.fspath(path)
    with open_text(path) as f:
        # Comment lines become blank lines (not dropped) so the reader's line count stays true.
        lines: Iterable[str] = f
        if comment is not None:
            lines = ("\n" if line.lstrip().startswith(comment) else line for line in f)
        reader = csv.reader(lines, skipinitialspace=True, strict=True)
        width: int | None = None
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise AnnotationError(
                    f"Annotation file {name!r} line {start} does not parse as CSV ({exc}, at "
                    f"line {reader.line_num}): a quote opened on line {start} is not closed "
                    "where the field ends. Fix the quoting there (a field holding a comma is "
                    'wrapped in "...", a quote inside it is written ""), or download the file '
                    "again.",
                    name,
                    start,
                ) from None
            if not row or not any(field.strip() for field in row):
                continue
            if reader.line_num != start or any("\n" in x or "\r" in x for x in row):
                raise AnnotationError(
                    f"Annotation file {name!r} line {start}: a quoted field runs over "
                    f"{reader.line_num - start + 1} lines (to line {reader.line_num}); found "
                    f"{row[:4]}{' ...' if len(row) > 4 else ''}. A field never holds a line "
                    "break: close the quote opened on that line, or remove the stray quote.",
                    name,
                    start,
                )
            fields = [field.strip() for field in row]
            if same_width:
                if width is None:
                    width = len(fields)
                elif len(fields) != width:
                    raise AnnotationError(
                        f"Annotation file {name!r} line {start} has {len(fields)} fields; the "
                        f"header has {width}. Found {fields}. Quote a field that holds a comma, "
                        "fill the missing fields, or drop the line.",
                        name,
                        start,
                    )
            yield start, fields


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
