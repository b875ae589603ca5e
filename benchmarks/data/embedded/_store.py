"""Where the embedded files live, how they are written bit-for-bit, and how they are checked.

``np.savez_compressed`` stamps each zip entry with the current local time, so two builds of the
same arrays differ byte-wise. :func:`save_npz` writes the same ``.npz`` layout (one ``.npy``
member per array, read back by :func:`numpy.load`) with a fixed date, sorted member names and a
fixed compression level, so a rebuild on the same zlib gives the same bytes. The manifest also
records a *content* hash of the arrays (:func:`content_sha256`), which does not depend on the
zlib build, so ``rebuild --check`` can tell "same data, other compressor" from "other data".
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

FILES_DIR = Path(__file__).resolve().parent / "files"
MANIFEST_PATH = FILES_DIR / "MANIFEST.json"

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def save_npz(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as a deflate-compressed ``.npz`` with no timestamps (deterministic).

    Args:
        path: Output file; its folder must exist.
        arrays: Name → array; names become ``<name>.npy`` members, written in sorted order.
            Object arrays are refused (they would need pickle to load).
    """
    with zipfile.ZipFile(path, "w") as archive:
        for name in sorted(arrays):
            array = np.ascontiguousarray(arrays[name])
            if array.dtype.hasobject:
                raise TypeError(
                    f"Array `{name}` has dtype {array.dtype}; save_npz stores plain numeric "
                    "arrays only (object arrays need pickle). Convert it first."
                )
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue(), compresslevel=9)


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` into memory (no pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def content_sha256(arrays: Mapping[str, np.ndarray]) -> str:
    """Hex sha256 over the arrays' names, dtypes, shapes and bytes (independent of zlib)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        header = f"{name}|{array.dtype.str}|{array.shape}\n"
        digest.update(header.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def read_manifest() -> dict:
    """The committed ``files/MANIFEST.json``: file name → sizes and hashes, plus sources."""
    with open(MANIFEST_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def embedded_path(file_name: str, *, verify: bool = False) -> Path:
    """Path of an embedded file, optionally checked against the manifest's sha256.

    Raises:
        FileNotFoundError: The file is missing (e.g. a clone without the data files).
        ValueError: ``verify`` is true and the file's sha256 differs from the manifest's.
    """
    path = FILES_DIR / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"Embedded data file {path} is missing. Restore it from git "
            "(`git checkout -- benchmarks/data/embedded/files`) or rebuild it with "
            "`python -m benchmarks.data.embedded.rebuild`."
        )
    if verify:
        expected = read_manifest()["files"][file_name]["sha256"]
        found = file_sha256(path)
        if found != expected:
            raise ValueError(
                f"Embedded data file {path} has sha256 {found}, but MANIFEST.json records "
                f"{expected}. Restore it from git or rebuild it with "
                "`python -m benchmarks.data.embedded.rebuild`."
            )
    return path
