"""Algorithm 4 (appendix E) on a seeded synthetic label matrix: its properties."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.data import balance_multilabel, class_volumes

TARGET, MIN_COUNT = 1100, 500


def synthetic_labels(seed: int = 0, n: int = 60_000, c: int = 45) -> np.ndarray:
    """Zipf-like volumes; classes 0-9 exclusive, 10-39 get a second label (10-39) 30% of the
    time, 40-44 are rare (a few dozen rows each, below ``MIN_COUNT``)."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, c + 1)
    freq[40:] *= 0.05
    labels = np.zeros((n, c), dtype=bool)
    primary = rng.choice(c, size=n, p=freq / freq.sum())
    labels[np.arange(n), primary] = True
    second = rng.choice(np.arange(10, 40), size=n)
    extra = (rng.random(n) < 0.3) & (primary >= 10) & (primary < 40)
    labels[np.flatnonzero(extra), second[extra]] = True
    return labels


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return synthetic_labels()


@pytest.fixture(scope="module")
def printed(labels):
    return balance_multilabel(labels, MIN_COUNT, TARGET, seed=0)


def test_drops_rare_classes_and_selects_valid_rows(labels, printed):
    rows, kept = printed
    totals = labels.sum(0)
    np.testing.assert_array_equal(kept, np.flatnonzero(totals >= MIN_COUNT))
    assert (totals < MIN_COUNT).any()  # the fixture does have classes to drop
    assert (np.diff(rows) > 0).all()  # sorted and unique
    assert labels[rows][:, kept].any(axis=1).all()  # every selected row has a kept label


def test_deterministic_with_seed(labels, printed):
    rows, kept = balance_multilabel(labels, MIN_COUNT, TARGET, seed=0)
    np.testing.assert_array_equal(rows, printed[0])
    np.testing.assert_array_equal(kept, printed[1])
    other, _ = balance_multilabel(labels, MIN_COUNT, TARGET, seed=1)
    assert not np.array_equal(other, rows)


def test_volumes_as_printed(labels, printed):
    rows, kept = printed
    volumes = class_volumes(labels, rows, kept)
    exclusive = volumes[:10]  # large classes with no co-occurring label
    # Printed rule: P(select) = (N - V') / (V - V' + 1); a class with V >> N ends near
    # N (1 - 1/e) ≈ 0.63 N; the smallest exclusive class here (V ≈ 1.5k) a bit higher.
    assert (exclusive >= 0.55 * TARGET).all()
    assert (exclusive <= TARGET).all()
    print(
        f"\nAlgorithm 4 as printed: {len(rows)} rows, {kept.size} classes, volumes "
        f"min {volumes.min()} median {np.median(volumes):.0f} max {volumes.max()} "
        f"mean {volumes.mean():.0f}; exclusive large classes {exclusive.min()}-{exclusive.max()}"
    )


def test_volumes_with_remaining_counts(labels):
    rows, kept = balance_multilabel(labels, MIN_COUNT, TARGET, seed=0, volume="remaining")
    volumes = class_volumes(labels, rows, kept)
    totals = labels[:, kept].sum(0)
    np.testing.assert_array_equal(volumes[:10], TARGET)  # selection sampling: exact
    small = totals < TARGET
    assert (volumes[small] <= totals[small]).all()
    over = volumes > TARGET  # only classes that co-occur with others may exceed the target
    assert not over[:10].any()
    assert volumes.max() <= 1.05 * TARGET
    print(
        f"\nAlgorithm 4, remaining volumes: {len(rows)} rows, volumes min {volumes.min()} "
        f"median {np.median(volumes):.0f} max {volumes.max()}; {int(over.sum())} classes above"
    )


def test_small_exact_case():
    # class 2 has one positive (< min_count=2) and is dropped; row 3 then has no label.
    labels = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=bool)
    rows, kept = balance_multilabel(labels, min_count=2, target=10, seed=3)
    np.testing.assert_array_equal(kept, [0, 1])
    np.testing.assert_array_equal(rows, [0, 1, 2, 4])  # target above every volume: all kept
    rows, _ = balance_multilabel(labels.astype(int), min_count=2, target=1, seed=3)
    assert 1 <= len(rows) <= 2
    assert 3 not in rows


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": np.zeros(5)}, "2-D"),
        ({"labels": np.full((2, 2), 0.5)}, "0/1"),
        ({"labels": np.zeros((2, 2)), "min_count": 0}, "min_count"),
        ({"labels": np.zeros((2, 2)), "target": 2.5}, "target"),
        ({"labels": np.zeros((2, 2)), "volume": "all"}, "volume"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        balance_multilabel(**kwargs)
