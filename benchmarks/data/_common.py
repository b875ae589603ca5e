"""Helpers shared by the dataset formats: label maps, path templates, CSV reading."""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterable, Iterator, Sequence

__all__ = ["class_index", "existing", "open_text", "read_csv_rows"]


def open_text(path: str | os.PathLike[str]):
    """Open a text file, transparently un-gzipping ``*.gz``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Annotation file not found: {path!r}. Check the root folder.")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_csv_rows(path: str | os.PathLike[str], comment: str | None = None) -> Iterator[list[str]]:
    """Rows of a CSV file (fields stripped), skipping blank lines and ``comment`` lines."""
    with open_text(path) as f:
        lines = (line for line in f if line.strip())
        if comment is not None:
            lines = (line for line in lines if not line.lstrip().startswith(comment))
        for row in csv.reader(lines, skipinitialspace=True):
            yield [field.strip() for field in row]


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
