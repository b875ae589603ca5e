"""The holdout split helper: seeded, disjoint, stratified, never 'the first 8%'."""

import numpy as np
import pytest
import torch

from blendopt import holdout_split


def test_default_holds_out_8_percent_disjointly_with_a_probe_of_equal_size():
    s = holdout_split(1000)
    assert len(s.holdout) == 80
    assert len(s.train) == 920
    assert set(s.train).isdisjoint(s.holdout)
    assert sorted(s.train + s.holdout) == list(range(1000))
    assert len(s.probe) == 80
    assert set(s.probe) <= set(s.train)


def test_seeded_and_shuffled():
    a, b, c = holdout_split(500, seed=1), holdout_split(500, seed=1), holdout_split(500, seed=2)
    assert a == b
    assert a.holdout != c.holdout
    assert a.holdout != list(range(40)), "not the first 8%"
    assert max(a.holdout) > 250


def test_counts_and_fractions():
    s = holdout_split(100, holdout=13, probe=0.5)
    assert len(s.holdout) == 13
    assert len(s.probe) == round(0.5 * 87)


def test_stratified_keeps_class_proportions():
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    s = holdout_split(1000, holdout=0.1, labels=torch.as_tensor(labels), seed=3)
    held = labels[s.holdout]
    assert np.bincount(held).tolist() == [50, 30, 20]


def test_stratified_rounding_hits_the_total():
    labels = np.repeat([0, 1, 2], [7, 7, 7])
    s = holdout_split(21, holdout=4, labels=labels)
    assert len(s.holdout) == 4
    assert all(c in (1, 2) for c in np.bincount(labels[s.holdout], minlength=3))


def test_subsets_view_the_dataset():
    data = torch.utils.data.TensorDataset(torch.arange(50))
    train, held, probe = holdout_split(50).subsets(data)
    assert len(train) + len(held) == 50
    assert {int(held[i][0]) for i in range(len(held))}.isdisjoint(
        {int(train[i][0]) for i in range(len(train))}
    )
    assert len(probe) == len(held)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 1}, ValueError, "`size`"),
        ({"size": 10, "holdout": 1.5}, ValueError, r"\(0, 1\)"),
        ({"size": 10, "holdout": 10}, ValueError, "no training data"),
        ({"size": 10, "holdout": "8%"}, TypeError, "fraction"),
        ({"size": 10, "labels": [0, 1]}, ValueError, r"shape \(10,\)"),
    ],
)
def test_bad_arguments_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        holdout_split(**kwargs)
