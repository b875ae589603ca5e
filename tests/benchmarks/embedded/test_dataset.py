from contextlib import nullcontext as does_not_raise

import numpy as np
import pytest
import torch

from benchmarks.data.embedded import MultiModalTensorDataset
from benchmarks.data.embedded._dataset import split_mask, stratified_holdout


def make(n=40, classes=4):
    return MultiModalTensorDataset(
        {"a": torch.arange(n * 3, dtype=torch.float32).reshape(n, 3), "b": torch.zeros(n, 2, 2)},
        torch.arange(n) % classes,
        classes,
        name="toy",
        extras={"id": torch.arange(n)},
    )


def test_items_and_attributes():
    data = make()
    inputs, target = data[5]
    assert set(inputs) == {"a", "b"}
    assert isinstance(target, int)
    assert target == 1
    assert data.modalities == ("a", "b")
    assert data.input_shapes == {"a": (3,), "b": (2, 2)}
    assert data.targets.dtype == torch.long
    assert len(data) == 40
    assert data.class_counts().tolist() == [10] * 4
    assert repr(data) == (
        "MultiModalTensorDataset(name='toy', samples=40, num_classes=4, inputs: a=[3], b=[2, 2])"
    )


def test_split_holdout_is_stratified_disjoint_and_seeded():
    data = make()
    train, holdout = data.split_holdout(0.3, seed=3)
    assert holdout.class_counts().tolist() == [3] * 4
    ids = torch.cat([train.extras["id"], holdout.extras["id"]]).sort().values
    assert torch.equal(ids, torch.arange(40))
    again = data.split_holdout(0.3, seed=3)[1]
    assert torch.equal(again.extras["id"], holdout.extras["id"])
    other = data.split_holdout(0.3, seed=4)[1]
    assert not torch.equal(other.extras["id"], holdout.extras["id"])
    # rows stay aligned across modalities, targets and extras
    assert torch.equal(holdout.tensors["a"][:, 0], holdout.extras["id"].float() * 3)
    assert torch.equal(holdout.targets, holdout.extras["id"] % 4)


@pytest.mark.parametrize(
    ("kwargs", "expectation"),
    [
        ({}, does_not_raise()),
        ({"targets": torch.zeros(39, dtype=torch.long)}, pytest.raises(ValueError, match="39")),
        ({"targets": torch.full((40,), 4)}, pytest.raises(ValueError, match="num_classes")),
        ({"tensors": {"a": np.zeros((40, 2))}}, pytest.raises(TypeError, match="`a`")),
        ({"tensors": {}}, pytest.raises(TypeError, match="tensors")),
    ],
)
def test_constructor_errors(kwargs, expectation):
    arguments = {"tensors": {"a": torch.zeros(40, 2)}, "targets": torch.arange(40) % 4}
    arguments.update(kwargs)
    with expectation:
        MultiModalTensorDataset(arguments["tensors"], arguments["targets"], 4)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, "0.2"])
def test_holdout_fraction_errors(fraction):
    with pytest.raises(ValueError, match="fraction"):
        stratified_holdout(np.zeros(10, dtype=int), fraction, 0)


@pytest.mark.parametrize(("split", "error"), [("valid", ValueError), (1, TypeError)])
def test_split_errors(split, error):
    with pytest.raises(error, match="split"):
        split_mask(np.zeros(3, dtype=bool), split)
