"""A seeded synthetic audio-visual dataset in the regime where naive late fusion underperforms.

Each modality ``m`` is a Gaussian mixture in ``dims[m]`` dimensions: class ``c`` owns
``clusters_per_class[m]`` cluster centres drawn uniformly on the sphere of radius
``signal[m]``; a sample of class ``c`` picks one of its centres at random and adds isotropic
Gaussian noise of standard deviation ``noise[m]`` in every dimension. The modalities are
conditionally independent given the class, so each carries complementary evidence.

The defaults reproduce the paper's regime at CPU scale (Wang et al., CVPR 2020, §3 and Fig. 4):

- ``visual``: 16 dimensions, 2 clusters per class — fewer dimensions than training samples,
  so it cannot be memorized; it generalizes slowly and is the best single modality;
- ``audio``: 2048 dimensions, 1 cluster per class, weak signal — more dimensions than
  training samples, so an MLP fits the training set perfectly within a few epochs while its
  holdout accuracy stays low: it overfits fastest;
- a late-fusion MLP trained naively (only the fused head's loss) memorizes through ``audio``
  before it has learned ``visual``, and ends *below* the ``visual``-only model, although the
  two modalities together hold more information (averaging the log-probabilities of the two
  single-modality models beats both). Numbers: ``docs/embedded_datasets.md``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from ._dataset import MultiModalTensorDataset, Split, check_split

DEFAULT_DIMS: dict[str, int] = {"visual": 16, "audio": 2048}
DEFAULT_SIGNAL: dict[str, float] = {"visual": 2.0, "audio": 2.25}
DEFAULT_CLUSTERS: dict[str, int] = {"visual": 2, "audio": 1}


def _per_modality(
    name: str, value: float | Mapping[str, float], modalities: tuple[str, ...], kind: type
) -> dict[str, float]:
    """Expand a scalar to every modality or check that a mapping names exactly the modalities."""
    if isinstance(value, Mapping):
        if set(value) != set(modalities):
            raise ValueError(
                f"Parameter `{name}` should name exactly the modalities {list(modalities)} "
                f"(the keys of `dims`); found keys {sorted(value)}."
            )
        values = {m: value[m] for m in modalities}
    else:
        values = dict.fromkeys(modalities, value)
    for modality, item in values.items():
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise TypeError(
                f"Parameter `{name}` for modality `{modality}` should be a number; found "
                f"{type(item).__name__}."
            )
        if kind is int and (item != int(item) or item < 1):
            raise ValueError(
                f"Parameter `{name}` for modality `{modality}` should be a positive integer; "
                f"found {item!r}."
            )
        if kind is float and item < 0:
            raise ValueError(
                f"Parameter `{name}` for modality `{modality}` should be >= 0; found {item!r}."
            )
    return {m: kind(v) for m, v in values.items()}


def _samples(
    rng: np.random.Generator,
    count: int,
    num_classes: int,
    centres: Mapping[str, np.ndarray],
    noise: Mapping[str, float],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    labels = np.arange(count) % num_classes  # balanced: counts differ by at most one
    rng.shuffle(labels)
    inputs = {}
    for modality, centre in centres.items():
        which = rng.integers(0, centre.shape[1], size=count)
        values = centre[labels, which] + noise[modality] * rng.standard_normal(
            (count, centre.shape[2])
        )
        inputs[modality] = values.astype(np.float32)
    return inputs, labels


def make_synthetic_av(
    split: Split = "train",
    *,
    n_train: int = 1000,
    n_test: int = 2000,
    num_classes: int = 10,
    dims: Mapping[str, int] | None = None,
    signal: float | Mapping[str, float] | None = None,
    noise: float | Mapping[str, float] = 1.0,
    clusters_per_class: int | Mapping[str, int] | None = None,
    seed: int = 0,
) -> MultiModalTensorDataset:
    """Seeded synthetic multi-modal data whose modalities overfit at chosen rates.

    Calls with the same parameters and ``seed`` share the class centres, so
    ``make_synthetic_av("train", seed=s)`` and ``make_synthetic_av("test", seed=s)`` are the
    two halves of one dataset (``"all"`` is train followed by test).

    Args:
        split: ``"train"`` (``n_train`` samples), ``"test"`` (``n_test``) or ``"all"``.
        n_train: Training samples; with the defaults, fewer than ``dims["audio"]``, which is
            what lets ``audio`` be memorized.
        n_test: Test samples.
        num_classes: Number of classes (labels are balanced to within one sample).
        dims: Modality name → dimensionality; the keys define the modalities and their
            order. Default ``{"visual": 16, "audio": 2048}``.
        signal: Distance of each cluster centre from the origin, per modality or one number
            for all; larger separates the classes more. Default ``visual`` 2.0, ``audio``
            2.25 (spread over 2048 dimensions, so weak per dimension); 2.0 for every modality
            when ``dims`` names other modalities.
        noise: Standard deviation of the per-dimension Gaussian noise (per modality or one
            number); larger separates the classes less.
        clusters_per_class: Cluster centres per class (per modality or one number); more
            clusters make the class boundary less linear. Default ``visual`` 2, ``audio`` 1;
            1 for every modality when ``dims`` names other modalities.
        seed: Seed of the centres and of both splits' samples.

    Returns:
        A :class:`MultiModalTensorDataset` of float32 vectors ``(dims[m],)`` per modality.
    """
    check_split(split)
    dims = dict(DEFAULT_DIMS if dims is None else dims)
    if not dims:
        raise ValueError("Parameter `dims` should name at least one modality; found {}.")
    modalities = tuple(dims)
    dims_checked = _per_modality("dims", dims, modalities, int)
    if signal is None:
        signal = DEFAULT_SIGNAL if set(modalities) == set(DEFAULT_SIGNAL) else 2.0
    if clusters_per_class is None:
        clusters_per_class = DEFAULT_CLUSTERS if set(modalities) == set(DEFAULT_CLUSTERS) else 1
    signals = _per_modality("signal", signal, modalities, float)
    noises = _per_modality("noise", noise, modalities, float)
    clusters = _per_modality("clusters_per_class", clusters_per_class, modalities, int)
    for name, value, low in (
        ("n_train", n_train, 0),
        ("n_test", n_test, 0),
        ("num_classes", num_classes, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"Parameter `{name}` should be an int >= {low}; found {value!r}.")
    if not isinstance(seed, int):
        raise TypeError(f"Parameter `seed` should be an int; found {type(seed).__name__}.")

    centre_seq, train_seq, test_seq = np.random.SeedSequence(seed).spawn(3)
    centre_rng = np.random.default_rng(centre_seq)
    centres = {}
    for modality in modalities:
        raw = centre_rng.standard_normal((num_classes, clusters[modality], dims_checked[modality]))
        raw /= np.linalg.norm(raw, axis=-1, keepdims=True)
        centres[modality] = raw * signals[modality]

    parts = []
    if split in ("train", "all"):
        parts.append(
            _samples(np.random.default_rng(train_seq), n_train, num_classes, centres, noises)
        )
    if split in ("test", "all"):
        parts.append(
            _samples(np.random.default_rng(test_seq), n_test, num_classes, centres, noises)
        )
    tensors = {
        m: torch.from_numpy(np.concatenate([inputs[m] for inputs, _ in parts])) for m in modalities
    }
    labels = np.concatenate([labels for _, labels in parts])
    return MultiModalTensorDataset(tensors, labels, num_classes, name=f"synthetic_av/{split}")
