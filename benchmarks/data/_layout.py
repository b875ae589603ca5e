"""Checks that a data root exists before a loader is built on it (``check_layout``)."""

from __future__ import annotations

import os

__all__ = ["check_root"]


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
