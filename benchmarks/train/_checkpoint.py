"""Atomic checkpoints and the random state of every rank, loadable with ``weights_only=True``.

A run folder keeps two checkpoints: the newest (``checkpoint.pt``) and the one before it
(``checkpoint.prev.pt``), so a newest file that does not load (a truncated copy, a full
disk) leaves a good one to resume from (:func:`load_latest`).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "load_checkpoint",
    "load_latest",
    "previous_path",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]


class CheckpointError(ValueError):
    """A checkpoint file does not load (truncated, not a checkpoint, missing keys)."""


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), NumPy and Python random state as tensors, ints and lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (legacy global)
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002 (legacy global)
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint before ``path``:
    ``checkpoint.pt`` -> ``checkpoint.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(
    state: dict[str, Any], path: str | os.PathLike[str], *, keep_previous: bool = False
) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace`` (a reader sees the old or the new checkpoint, never half of one).

    Args:
        state: tensors, numbers, strings, lists and dicts (what ``weights_only`` loads).
        path: the checkpoint file.
        keep_previous: keep the file ``path`` held before as :func:`previous_path` (replaced
            only once the new checkpoint is complete on disk).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.is_file():
            _keep_as_previous(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _keep_as_previous(path: Path) -> None:
    """Make ``path``'s current content the previous checkpoint; ``path`` stays in place (a
    hard link, renamed over the old previous one) where the file system allows links."""
    prev = previous_path(path)
    link = prev.with_name(f".{prev.name}.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)
    except OSError:  # no hard links here: move it (a crash now leaves only the previous one)
        os.replace(path, prev)
        return
    os.replace(link, prev)


def load_checkpoint(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the checkpoint file.
        required: keys the checkpoint must hold.

    Raises:
        CheckpointError: the file is missing, truncated or not a checkpoint, or lacks a key
            of ``required``; the message names the file and the cause.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {str(path)!r} does not exist.") from None
    except Exception as exc:  # whatever a damaged file makes torch raise
        size = path.stat().st_size if path.is_file() else 0
        raise CheckpointError(
            f"Checkpoint {str(path)!r} ({size} bytes) does not load: {_cause(exc)} "
            "(a truncated or interrupted copy, or not a checkpoint)."
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds a {type(state).__name__}, not a checkpoint dict."
        )
    missing = [k for k in required if k not in state]
    if missing:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} lacks the keys {missing}: it was not written by this "
            "training loop."
        )
    return state


def _cause(exc: BaseException) -> str:
    """The first sentence of ``exc``'s message (torch's run on for a paragraph)."""
    text = " ".join(str(exc).split())
    first = text.split(". ", 1)[0].rstrip(".")
    return f"{type(exc).__name__}: {first[:160]}" if first else type(exc).__name__


def load_latest(
    path: str | os.PathLike[str], required: tuple[str, ...] = ()
) -> tuple[dict[str, Any], Path, CheckpointError | None]:
    """Load ``path``, or, if it does not load, the previous checkpoint beside it.

    Returns:
        ``(state, the file loaded, why path itself did not load or None)``.

    Raises:
        CheckpointError: neither loads; the message names both files and causes.
    """
    path = Path(path)
    try:
        return load_checkpoint(path, required), path, None
    except CheckpointError as newest:
        prev = previous_path(path)
        if not prev.is_file():
            raise CheckpointError(
                f"{newest} No previous checkpoint ({prev.name}) to fall back to: start a new "
                "run (drop --resume, or choose another --out)."
            ) from newest
        try:
            return load_checkpoint(prev, required), prev, newest
        except CheckpointError as older:
            raise CheckpointError(
                f"Neither checkpoint loads. {newest} {older} Start a new run (drop --resume, "
                "or choose another --out)."
            ) from older
