"""The error contract of the command lines (``python -m benchmarks`` and ``... train``).

A user-input or data error (a bad config key, a data root that does not match its layout, an
annotation file that does not parse, a checkpoint that does not load, a path that cannot be
read or written) prints one line (or a short block) that names the thing and the fix, and
exits 2; ``--debug`` shows the traceback instead. Every other exception is a bug and keeps
its traceback. Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

__all__ = ["USER_ERRORS", "fail", "is_main_rank", "user_message"]

#: Exceptions that are the user's input or data, not a bug: our own ``ConfigError``,
#: ``DataError``, ``CheckpointError`` and the data layer's annotation errors subclass
#: ``ValueError`` (as do TOML, JSON and Unicode decode errors); ``OSError`` covers paths that
#: do not exist or cannot be read or written.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)


def is_main_rank() -> bool:
    """Whether this process prints: rank 0 under ``torchrun``, always otherwise."""
    return os.environ.get("RANK", "0") == "0"


def user_message(exc: BaseException) -> str:
    """The one-line (or short-block) text of a user error."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = repr(os.fspath(exc.filename))
        if exc.filename2 is not None:
            where += f" -> {os.fspath(exc.filename2)!r}"
        return f"{exc.strerror}: {where}. Check the path and its permissions."
    text = str(exc).strip()
    return text or type(exc).__name__


def fail(prog: str, exc: BaseException, *, code: int = 2, label: str = "error") -> NoReturn:
    """Print ``PROG: LABEL: message`` on rank 0 and exit with ``code``."""
    if is_main_rank():
        print(f"{prog}: {label}: {user_message(exc)}", file=sys.stderr, flush=True)
    raise SystemExit(code)
