"""The embedded datasets of the main job and the small multi-head model built for each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from benchmarks.data.embedded import MultiModalTensorDataset, load_embedded
from benchmarks.models import ConvSequenceEncoder, MLPEncoder, MultiHeadModel


@dataclass(frozen=True)
class DatasetSetup:
    """How to load one embedded dataset and build its model.

    Attributes:
        name: the dataset's name (one of ``benchmarks.data.embedded.EMBEDDED_DATASETS``).
        encoder: ``encoder(modality, input_shape) -> nn.Module`` exposing ``output_dim``.
        epochs: training epochs of the main job.
        lr: SGD learning rate (Adam and AdaGrad use their own defaults, see ``_methods``).
        description: one line for the report.
        holdout: share of the training split held out as V (the paper: 8%).
        seeds: seeds of the main job (0..seeds-1; ``--seeds`` overrides): 10 on the cheap
            regimes where the methods differ by a point or more, so that a paired difference
            of about a point is resolved; 3 where every method is near 99%.
    """

    name: str
    encoder: Callable[[str, tuple[int, ...]], nn.Module]
    epochs: int
    lr: float
    description: str
    holdout: float = 0.10
    seeds: int = 3

    def load_pair(self, seed: int) -> tuple[MultiModalTensorDataset, MultiModalTensorDataset]:
        """The official ``(train, test)`` splits for ``seed``."""
        return load_embedded(self.name, seed)

    def load(self, split: str, seed: int) -> MultiModalTensorDataset:
        """One split, ``"train"`` or ``"test"``."""
        if split not in ("train", "test"):
            raise ValueError(f"Parameter `split` should be 'train' or 'test'. Found {split!r}.")
        return self.load_pair(seed)[split == "test"]

    def build_model(
        self, dataset: MultiModalTensorDataset, *, fusion_dropout: float = 0.0
    ) -> MultiHeadModel:
        """The late-fusion multi-head model: an encoder and a head per modality, a fused head.

        Fusion is the paper's late concatenation with two FC layers (appendix F.1).
        """
        encoders = {m: self.encoder(m, dataset.input_shapes[m]) for m in dataset.modalities}
        return MultiHeadModel(
            encoders,
            dataset.num_classes,
            fusion="late_concat",
            fusion_kwargs={"num_fc": 2, "dropout": fusion_dropout},
        )


def _mlp(modality: str, shape: tuple[int, ...]) -> nn.Module:
    return MLPEncoder(shape[0], hidden=(128,), output_dim=64)


def _digits_encoder(modality: str, shape: tuple[int, ...]) -> nn.Module:
    if modality == "audio":  # (frames, 13) MFCCs
        return ConvSequenceEncoder(shape[1], channels=(32,), output_dim=64)
    return MLPEncoder(shape[0], hidden=(128,), output_dim=64)  # flattened 28×28 image


SETUPS: dict[str, DatasetSetup] = {
    "synthetic_av": DatasetSetup(
        name="synthetic_av",
        encoder=_mlp,
        epochs=30,
        lr=0.05,
        seeds=10,
        description="seeded synthetic audio-visual data: 'visual' 16-d generalizes, 'audio' "
        "2048-d is memorized (1000 train / 2000 test, 10 classes)",
    ),
    "mfeat": DatasetSetup(
        name="mfeat",
        encoder=_mlp,
        epochs=30,
        lr=0.05,
        description="UCI Multiple Features: 6 views of 2000 handwritten digits (1600 / 400)",
    ),
    "digits": DatasetSetup(
        name="digits",
        encoder=_digits_encoder,
        epochs=20,
        lr=0.05,
        description="FSDD spoken-digit MFCCs paired by class with MNIST images (2400 / 600)",
    ),
    "digits_small": DatasetSetup(
        name="digits_small",
        encoder=_digits_encoder,
        epochs=30,
        lr=0.05,
        seeds=10,
        holdout=0.20,
        description="digits with a seeded, stratified 10% of the training pairs (240 / 600): "
        "real data where naive fusion falls below the best modality; V is 20% (48 pairs)",
    ),
    "mfeat_small": DatasetSetup(
        name="mfeat_small",
        encoder=_mlp,
        epochs=30,
        lr=0.05,
        seeds=10,
        description="UCI mfeat pix (240-d) + zer (47-d) views, 20 training digits per class "
        "(200 / 400): real data where naive fusion falls below pix alone",
    ),
}
