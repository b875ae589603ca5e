import gzip
import io

import numpy as np
import pytest
import torch

from benchmarks.data.embedded import load_spoken_written_digits
from benchmarks.data.embedded._digits import build_arrays, pad_sequences


def test_train_and_test_shapes_and_balance():
    train, test = load_spoken_written_digits("train"), load_spoken_written_digits("test")
    assert (len(train), len(test)) == (2400, 600)
    assert train.modalities == ("audio", "image")
    assert train.input_shapes == {"audio": (32, 13), "image": (1, 28, 28)}
    assert train.class_counts().tolist() == [240] * 10
    assert test.class_counts().tolist() == [60] * 10
    assert train.tensors["audio"].dtype == torch.float32
    image = train.tensors["image"]
    assert image.dtype == torch.float32
    assert image.min() == 0
    assert image.max() == 1
    lengths = train.extras["lengths"]
    assert lengths.dtype == torch.long
    assert lengths.min() >= 6
    assert lengths.max() <= 92
    # padding after the clip's end is 0 (the train mean after standardization)
    short = int(torch.argmin(lengths))
    assert torch.all(train.tensors["audio"][short, int(lengths[short]) :] == 0)


def test_options_and_split_determinism():
    full = load_spoken_written_digits("all", num_frames=None, image_shape=(784,))
    assert full.input_shapes == {"audio": (92, 13), "image": (784,)}
    raw = load_spoken_written_digits("test", standardize=False)
    assert raw.tensors["audio"][:, 0, 0].min() < -100  # raw MFCC 0 is large and negative
    again = load_spoken_written_digits("test", standardize=False)
    assert torch.equal(raw.tensors["audio"], again.tensors["audio"])
    assert torch.equal(raw.targets, again.targets)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": 2.5}, "num_frames"),
        ({"image_shape": (28, 28, 1)}, "image_shape"),
        ({"split": "val"}, "split"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_spoken_written_digits(**kwargs)


def test_build_pairs_by_class_only(fsdd_npz, mnist_csv_gz):
    arrays = build_arrays(fsdd_npz, mnist_csv_gz)
    with np.load(io.BytesIO(fsdd_npz)) as source:
        frames, labels, lengths = source["X"], source["y"], source["lengths"]
    np.testing.assert_array_equal(arrays["labels"], labels)
    np.testing.assert_array_equal(arrays["lengths"], lengths)
    assert arrays["mfcc"].dtype == np.float16
    np.testing.assert_allclose(arrays["mfcc"], frames, rtol=1e-3)
    # the fake images hold their label in pixel 0 and their row in pixel 1
    images = arrays["images"].reshape(len(labels), -1)
    np.testing.assert_array_equal(images[:, 0], labels)
    np.testing.assert_array_equal(images[:, 1], arrays["image_index"])
    assert len(np.unique(arrays["image_index"])) == len(labels)  # each image used once
    assert np.bincount(labels[arrays["is_test"]]).tolist() == [1] * 10  # round(0.2 * 4) = 1
    again = build_arrays(fsdd_npz, mnist_csv_gz)
    for name in arrays:
        np.testing.assert_array_equal(arrays[name], again[name])


def test_build_needs_enough_images(fsdd_npz):
    table = np.zeros((10, 785), dtype=int)
    table[:, -1] = np.arange(10)
    text = "\n".join(",".join(map(str, row)) for row in table)
    with pytest.raises(ValueError, match="clips but only"):
        build_arrays(fsdd_npz, gzip.compress(text.encode()))


def test_pad_sequences_pads_and_truncates():
    frames = np.arange(12, dtype=np.float32).reshape(6, 2)
    out = pad_sequences(frames, np.array([1, 5]), num_frames=3, fill=-1)
    np.testing.assert_array_equal(out[0], [[0, 1], [-1, -1], [-1, -1]])
    np.testing.assert_array_equal(out[1], [[2, 3], [4, 5], [6, 7]])
