import numpy as np
import pytest
import torch

from benchmarks.data.embedded import load_mfeat
from benchmarks.data.embedded._mfeat import VIEWS, build_arrays

WIDTHS = {view: width for view, (width, _) in VIEWS.items()}


def test_train_split_shapes_dtypes_and_balance():
    data = load_mfeat()
    assert data.modalities == ("fou", "fac", "kar", "pix", "zer", "mor")
    assert data.input_shapes == {view: (width,) for view, width in WIDTHS.items()}
    assert len(data) == 1600
    assert data.num_classes == 10
    assert data.class_counts().tolist() == [160] * 10
    for tensor in data.tensors.values():
        assert tensor.dtype == torch.float32
        assert torch.isfinite(tensor).all()
    # standardized with train statistics
    pix = data.tensors["pix"]
    assert torch.allclose(pix.mean(0), torch.zeros(240), atol=1e-4)
    std = pix.std(0, unbiased=False)
    assert torch.all(((std - 1).abs() < 1e-3) | (std == 0))


def test_splits_partition_all_and_are_fixed():
    train, test, everything = load_mfeat("train"), load_mfeat("test"), load_mfeat("all")
    assert (len(train), len(test), len(everything)) == (1600, 400, 2000)
    assert test.class_counts().tolist() == [40] * 10
    raw = {
        s: load_mfeat(s, views=("fac",), standardize=False).tensors["fac"]
        for s in ("train", "test", "all")
    }
    rows = torch.cat([raw["train"], raw["test"]])
    assert torch.equal(rows.sort(0).values, raw["all"].sort(0).values)
    assert torch.equal(
        load_mfeat("test", standardize=False).tensors["mor"],
        load_mfeat("test", standardize=False).tensors["mor"],
    )


def test_raw_values_are_integers_where_stored_exactly():
    data = load_mfeat("all", views=("pix", "fac"), standardize=False)
    assert data.tensors["pix"].min() == 0
    assert data.tensors["pix"].max() == 6
    assert torch.equal(data.tensors["fac"], data.tensors["fac"].round())


@pytest.mark.parametrize("views", [("rgb",), (), ("pix", "nope")])
def test_bad_views(views):
    with pytest.raises(ValueError, match="views"):
        load_mfeat(views=views)


def test_build_arrays_from_fake_members(mfeat_members):
    arrays = build_arrays(mfeat_members)
    assert set(arrays) == {*VIEWS, "labels", "is_test"}
    for view, (width, dtype) in VIEWS.items():
        assert arrays[view].shape == (30, width)
        assert arrays[view].dtype == np.dtype(dtype)
    assert np.bincount(arrays["labels"]).tolist() == [3] * 10
    assert np.bincount(arrays["labels"][arrays["is_test"]]).tolist() == [1] * 10
    again = build_arrays(mfeat_members)
    for name in arrays:
        np.testing.assert_array_equal(arrays[name], again[name])


def test_build_arrays_rejects_unpaired_or_missing_views(mfeat_members):
    with pytest.raises(ValueError, match="lacks"):
        build_arrays({k: v for k, v in mfeat_members.items() if k != "mor"})
    lines = mfeat_members["mor"].decode().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",9"
    with pytest.raises(ValueError, match="paired"):
        build_arrays({**mfeat_members, "mor": ("\n".join(lines) + "\n").encode()})
    with pytest.raises(ValueError, match="feature columns"):
        build_arrays({**mfeat_members, "mor": mfeat_members["zer"]})
