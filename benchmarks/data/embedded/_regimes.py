"""The embedded datasets by name: one list shared by ``python -m benchmarks`` and ``curves``.

Each name maps to a loader of the official ``(train, test)`` splits for a seed. Besides the
three full datasets, ``digits_small`` keeps a seeded, class-stratified 10% of the digits
training split (240 pairs): a regime built from real data where naive late fusion falls below
the best single modality (measured with ``python -m benchmarks.data.embedded.curves``), and
``mfeat_small`` keeps mfeat's ``pix`` and ``zer`` views with 20 seeded training digits per
class (200): on it naive fusion falls below ``pix`` alone (seeds 0-2: -8.9, -1.3, -1.3 points
in a scan of view pairs, ``benchmarks/perf/estimator_study.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._dataset import MultiModalTensorDataset
from ._digits import load_spoken_written_digits
from ._mfeat import load_mfeat
from ._synthetic import make_synthetic_av

Pair = tuple[MultiModalTensorDataset, MultiModalTensorDataset]

#: Share of the digits training split kept by ``digits_small``.
DIGITS_SMALL_FRACTION = 0.10


def _synthetic_av(seed: int) -> Pair:
    return make_synthetic_av("train", seed=seed), make_synthetic_av("test", seed=seed)


def _mfeat(seed: int) -> Pair:
    return load_mfeat("train"), load_mfeat("test")


def _digits(seed: int) -> Pair:
    # Images flattened to 784-d vectors (the MLP encoders' input).
    return (
        load_spoken_written_digits("train", image_shape=(784,)),
        load_spoken_written_digits("test", image_shape=(784,)),
    )


def _digits_small(seed: int) -> Pair:
    train, test = _digits(seed)
    # split_holdout(f) keeps 1 - f of each class first; the kept part is the small split.
    _, small = train.split_holdout(DIGITS_SMALL_FRACTION, seed=seed)
    return small, test


#: Training digits per class kept by ``mfeat_small``.
MFEAT_SMALL_PER_CLASS = 20


def _mfeat_small(seed: int) -> Pair:
    train = load_mfeat("train", views=("pix", "zer"))
    g = torch.Generator().manual_seed(1000 + seed)
    rows = [
        torch.nonzero(train.targets == c).flatten()[
            torch.randperm(int((train.targets == c).sum()), generator=g)[:MFEAT_SMALL_PER_CLASS]
        ]
        for c in range(train.num_classes)
    ]
    return train.subset(torch.cat(rows)), load_mfeat("test", views=("pix", "zer"))


#: name -> loader of ``(train, test)`` for a seed (the seed only matters where it is used:
#: the synthetic generator and the ``digits_small`` subset).
EMBEDDED_DATASETS: dict[str, Callable[[int], Pair]] = {
    "synthetic_av": _synthetic_av,
    "mfeat": _mfeat,
    "digits": _digits,
    "digits_small": _digits_small,
    "mfeat_small": _mfeat_small,
}


def load_embedded(name: str, seed: int = 0) -> Pair:
    """The ``(train, test)`` splits of the embedded dataset ``name`` for ``seed``.

    Raises:
        ValueError: ``name`` is not one of :data:`EMBEDDED_DATASETS`.
    """
    if name not in EMBEDDED_DATASETS:
        raise ValueError(
            f"Parameter `name` should be one of {list(EMBEDDED_DATASETS)}. Found {name!r}."
        )
    return EMBEDDED_DATASETS[name](seed)
