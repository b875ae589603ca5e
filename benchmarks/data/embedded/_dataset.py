"""A tensor-backed multi-modal dataset shared by every embedded dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

Split = Literal["train", "test", "all"]
_SPLITS = ("train", "test", "all")


def check_split(split: object) -> None:
    """Raise a clear error unless ``split`` is one of ``"train"``, ``"test"``, ``"all"``."""
    if not isinstance(split, str):
        raise TypeError(
            f"Parameter `split` should be a str, one of {_SPLITS}; found {type(split).__name__}."
        )
    if split not in _SPLITS:
        raise ValueError(f"Parameter `split` should be one of {_SPLITS}; found {split!r}.")


def split_mask(is_test: np.ndarray, split: Split) -> np.ndarray:
    """Boolean row mask of ``split`` given the stored per-row ``is_test`` flags."""
    check_split(split)
    if split == "all":
        return np.ones(len(is_test), dtype=bool)
    return is_test if split == "test" else ~is_test


def stratified_holdout(
    targets: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of row indices into ``(keep, holdout)``.

    Each class gives ``round(fraction * class_count)`` rows (at least one when the class has two
    or more rows) to the holdout. Both index arrays are sorted.
    """
    if not isinstance(fraction, float | int) or not 0.0 < fraction < 1.0:
        raise ValueError(
            f"Parameter `fraction` should be a number strictly between 0 and 1; found "
            f"{fraction!r}. Use e.g. 0.2 for a 20% holdout."
        )
    rng = np.random.default_rng(seed)
    holdout: list[np.ndarray] = []
    for label in np.unique(targets):
        rows = np.flatnonzero(targets == label)
        count = round(fraction * len(rows))
        count = min(max(count, 1), len(rows) - 1) if len(rows) >= 2 else 0
        holdout.append(rng.permutation(rows)[:count])
    held = np.sort(np.concatenate(holdout)) if holdout else np.zeros(0, dtype=np.int64)
    keep = np.setdiff1d(np.arange(len(targets)), held)
    return keep, held


class MultiModalTensorDataset(Dataset):
    """In-memory multi-modal classification data: item ``i`` is ``({name: x_i}, y_i)``.

    Args:
        tensors: Modality name → tensor with the samples along the first axis; every tensor
            has the same length.
        targets: Class index per sample (converted to a ``LongTensor``).
        num_classes: Number of classes; every target is in ``[0, num_classes)``.
        name: Short name shown in ``repr``.
        extras: Further per-sample tensors that are not model inputs (e.g. sequence lengths);
            they are sliced along with the data by :meth:`subset`.

    Attributes:
        modalities: Modality names, in the order given.
        input_shapes: Modality name → shape of one sample.
        num_classes: Number of classes.
        targets: ``LongTensor`` of every label.
        tensors: Modality name → the whole tensor, for full-batch training or fast slicing.
        extras: Name → per-sample tensor that is not a model input.
    """

    def __init__(
        self,
        tensors: Mapping[str, Tensor],
        targets: Tensor | np.ndarray | Sequence[int],
        num_classes: int,
        *,
        name: str = "multimodal",
        extras: Mapping[str, Tensor] | None = None,
    ) -> None:
        if not isinstance(tensors, Mapping) or not tensors:
            raise TypeError(
                "Parameter `tensors` should be a non-empty mapping of modality name to tensor; "
                f"found {type(tensors).__name__}."
            )
        targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        if targets.ndim != 1:
            raise ValueError(
                f"Parameter `targets` should be 1-D; found shape {tuple(targets.shape)}."
            )
        for key, tensor in {**tensors, **(extras or {})}.items():
            if not isinstance(tensor, Tensor):
                raise TypeError(
                    f"Entry `{key}` should be a torch.Tensor; found {type(tensor).__name__}."
                )
            if tensor.shape[0] != len(targets):
                raise ValueError(
                    f"Entry `{key}` has {tensor.shape[0]} samples but `targets` has "
                    f"{len(targets)}; give every tensor the same first dimension."
                )
        if len(targets) and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
            raise ValueError(
                f"Parameter `targets` should lie in [0, {num_classes}); found values from "
                f"{int(targets.min())} to {int(targets.max())}. Fix `num_classes` or the labels."
            )
        self.tensors: dict[str, Tensor] = dict(tensors)
        self.targets: Tensor = targets
        self.num_classes = int(num_classes)
        self.name = name
        self.extras: dict[str, Tensor] = dict(extras or {})
        self.modalities: tuple[str, ...] = tuple(self.tensors)
        self.input_shapes: dict[str, tuple[int, ...]] = {
            key: tuple(tensor.shape[1:]) for key, tensor in self.tensors.items()
        }

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[dict[str, Tensor], int]:
        return {key: tensor[index] for key, tensor in self.tensors.items()}, int(
            self.targets[index]
        )

    def class_counts(self) -> Tensor:
        """Number of samples per class, length ``num_classes``."""
        return torch.bincount(self.targets, minlength=self.num_classes)

    def subset(self, indices: Tensor | np.ndarray | Sequence[int]) -> MultiModalTensorDataset:
        """A new dataset holding the given rows (tensors are indexed, i.e. copied)."""
        rows = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return MultiModalTensorDataset(
            {key: tensor[rows] for key, tensor in self.tensors.items()},
            self.targets[rows],
            self.num_classes,
            name=self.name,
            extras={key: tensor[rows] for key, tensor in self.extras.items()},
        )

    def split_holdout(
        self, fraction: float = 0.2, *, seed: int = 0
    ) -> tuple[MultiModalTensorDataset, MultiModalTensorDataset]:
        """Seeded, class-stratified ``(train, holdout)`` split, e.g. G-Blend's holdout V.

        Args:
            fraction: Share of each class that goes to the holdout (strictly between 0 and 1).
            seed: Seed of the permutation; the same seed gives the same split.
        """
        keep, held = stratified_holdout(self.targets.numpy(), fraction, seed)
        return self.subset(keep), self.subset(held)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{key}={list(shape)}" for key, shape in self.input_shapes.items())
        return (
            f"{type(self).__name__}(name={self.name!r}, samples={len(self)}, "
            f"num_classes={self.num_classes}, inputs: {shapes})"
        )


def describe(dataset: MultiModalTensorDataset) -> dict[str, Any]:
    """Plain summary of a dataset (for reports and docs)."""
    return {
        "name": dataset.name,
        "samples": len(dataset),
        "num_classes": dataset.num_classes,
        "input_shapes": {key: list(shape) for key, shape in dataset.input_shapes.items()},
        "class_counts": dataset.class_counts().tolist(),
    }
