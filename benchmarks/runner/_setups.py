"""The embedded datasets of the main job and the small multi-head model built for each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from benchmarks.data.embedded import (
    MultiModalTensorDataset,
    load_mfeat,
    load_spoken_written_digits,
    make_synthetic_av,
)
from benchmarks.models import ConvSequenceEncoder, MLPEncoder, MultiHeadModel


@dataclass(frozen=True)
class DatasetSetup:
    """How to load one embedded dataset and build its model.

    Attributes:
        name: the dataset's name in reports.
        load: ``load(split, seed) -> MultiModalTensorDataset`` for ``"train"`` and ``"test"``.
        encoder: ``encoder(modality, input_shape) -> nn.Module`` exposing ``output_dim``.
        epochs: training epochs of the main job.
        lr: SGD learning rate (Adam and AdaGrad use their own defaults, see ``_methods``).
        description: one line for the report.
    """

    name: str
    load: Callable[[str, int], MultiModalTensorDataset]
    encoder: Callable[[str, tuple[int, ...]], nn.Module]
    epochs: int
    lr: float
    description: str

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
        load=lambda split, seed: make_synthetic_av(split, seed=seed),
        encoder=_mlp,
        epochs=30,
        lr=0.05,
        description="seeded synthetic audio-visual data: 'visual' 16-d generalizes, 'audio' "
        "2048-d is memorized (1000 train / 2000 test, 10 classes)",
    ),
    "mfeat": DatasetSetup(
        name="mfeat",
        load=lambda split, seed: load_mfeat(split),
        encoder=_mlp,
        epochs=30,
        lr=0.05,
        description="UCI Multiple Features: 6 views of 2000 handwritten digits (1600 / 400)",
    ),
    "digits": DatasetSetup(
        name="digits",
        load=lambda split, seed: load_spoken_written_digits(split, image_shape=(784,)),
        encoder=_digits_encoder,
        epochs=20,
        lr=0.05,
        description="FSDD spoken-digit MFCCs paired by class with MNIST images (2400 / 600)",
    ),
}
