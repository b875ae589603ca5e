import pytest
import torch

from benchmarks.data.embedded import make_synthetic_av
from benchmarks.data.embedded.curves import train_curve


def nearest_centroid_accuracy(train, test, modality):
    x, y = train.tensors[modality], train.targets
    centroids = torch.stack([x[y == c].mean(0) for c in range(train.num_classes)])
    predicted = torch.cdist(test.tensors[modality], centroids).argmin(1)
    return (predicted == test.targets).float().mean().item()


def test_defaults_shapes_and_balance():
    train, test = make_synthetic_av("train"), make_synthetic_av("test")
    assert train.modalities == ("visual", "audio")
    assert train.input_shapes == {"visual": (16,), "audio": (2048,)}
    assert (len(train), len(test), train.num_classes) == (1000, 2000, 10)
    assert train.class_counts().tolist() == [100] * 10
    assert all(t.dtype == torch.float32 for t in train.tensors.values())
    everything = make_synthetic_av("all")
    assert torch.equal(everything.tensors["audio"][:1000], train.tensors["audio"])
    assert torch.equal(everything.targets[1000:], test.targets)


def test_seeded_determinism():
    a = make_synthetic_av("test", seed=7, n_test=50)
    b = make_synthetic_av("test", seed=7, n_test=50)
    c = make_synthetic_av("test", seed=8, n_test=50)
    assert all(torch.equal(a.tensors[m], b.tensors[m]) for m in a.modalities)
    assert torch.equal(a.targets, b.targets)
    assert not torch.equal(a.tensors["visual"], c.tensors["visual"])


def accuracy_for(**kwargs):
    common = {"dims": {"x": 8}, "n_train": 400, "n_test": 400, "clusters_per_class": 1, "seed": 1}
    common.update(kwargs)
    return nearest_centroid_accuracy(
        make_synthetic_av("train", **common), make_synthetic_av("test", **common), "x"
    )


def test_signal_and_noise_knobs_move_separability():
    weak, strong = accuracy_for(signal=0.5), accuracy_for(signal=3.0)
    assert 0.1 < weak < strong
    assert accuracy_for(signal=2.0, noise=2.0) < accuracy_for(signal=2.0, noise=0.5)
    assert accuracy_for(signal=0.0) < 0.2  # no signal: about chance (0.1)


def test_train_and_test_share_centres():
    # trained on train, the centroid classifier works on test of the same seed only
    train = make_synthetic_av("train", seed=0, dims={"x": 8}, signal=3.0)
    same = make_synthetic_av("test", seed=0, dims={"x": 8}, signal=3.0)
    other = make_synthetic_av("test", seed=1, dims={"x": 8}, signal=3.0)
    assert nearest_centroid_accuracy(train, same, "x") > 0.6
    assert nearest_centroid_accuracy(train, other, "x") < 0.3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dims": {}}, ValueError, "dims"),
        ({"dims": {"a": 0}}, ValueError, "dims"),
        ({"signal": {"visual": 1.0}}, ValueError, "signal"),
        ({"noise": -1.0}, ValueError, "noise"),
        ({"noise": "1"}, TypeError, "noise"),
        ({"clusters_per_class": 1.5}, ValueError, "clusters_per_class"),
        ({"num_classes": 1}, ValueError, "num_classes"),
        ({"split": "dev"}, ValueError, "split"),
        ({"seed": 0.5}, TypeError, "seed"),
    ],
)
def test_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_synthetic_av(**kwargs)


@pytest.mark.slow
def test_default_regime_seed0():
    """Seed 0, as in docs/embedded_datasets.md: audio overfits first; naive fusion < visual."""
    train, test = make_synthetic_av("train", seed=0), make_synthetic_av("test", seed=0)
    fit, holdout = train.split_holdout(0.2, seed=0)
    curves = {
        group: train_curve(group, fit, holdout, test, epochs=60, seed=0)[0]
        for group in [("visual",), ("audio",), ("visual", "audio")]
    }
    visual, audio, fused = (curves[g].summary() for g in curves)
    assert audio["final_train"] == 1.0
    assert audio["gap_epoch"] < visual["gap_epoch"]
    assert visual["test_at_best"] > audio["test_at_best"]
    assert fused["test_at_best"] < visual["test_at_best"]
