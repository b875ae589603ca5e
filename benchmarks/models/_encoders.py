"""Small encoders for the embedded datasets (feature vectors, MFCC sequences, 28×28 images).

Each maps its input to a ``(batch, output_dim)`` vector, so it plugs into
:class:`~benchmarks.models.MultiHeadModel` like a backbone built with ``num_classes=0``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from ._layers import ActivationFactory, check_input, check_int

__all__ = ["ConvSequenceEncoder", "MLPEncoder", "SmallCNNEncoder"]

Size = Literal["tiny", "paper"]


def _conv_norm_act_stack(
    conv: Callable[..., nn.Module],
    norm: Callable[[int], nn.Module],
    in_width: int,
    widths: Sequence[int],
    activation: ActivationFactory,
    *,
    pool: Callable[[], nn.Module] | None = None,
) -> tuple[list[nn.Module], int]:
    """[``conv`` 3 (padding 1), ``norm``, activation(, ``pool``)] for each of ``widths``; the
    layers and the last width."""
    layers: list[nn.Module] = []
    width = in_width
    for c in widths:
        layers += [conv(width, c, 3, padding=1), norm(c), activation()]
        if pool is not None:
            layers.append(pool())
        width = c
    return layers, width


class MLPEncoder(nn.Module):
    """FC-activation(-dropout) layers over ``(batch, in_features)`` vectors (e.g. one of the
    six UCI Multiple Features views: pix 240, fac 216, fou 76, kar 64, zer 47, mor 6)."""

    def __init__(
        self,
        in_features: int,
        *,
        hidden: Sequence[int] = (256,),
        output_dim: int = 128,
        dropout: float = 0.0,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("output_dim", output_dim, minimum=1)
        layers: list[nn.Module] = []
        width = in_features
        for i, h in enumerate((*hidden, output_dim)):
            check_int(f"hidden[{i}]", h, minimum=1)
            layers += [nn.Linear(width, h), activation()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_features)`` -> ``(B, output_dim)``."""
        check_input(
            x, rank=2, channels=self.in_features, layout="(batch, features)", owner="MLPEncoder"
        )
        return self.net(x)

    def example_input(
        self, size: Size = "tiny", *, batch_size: int = 2, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """A random ``(batch_size, in_features)`` input (the same at both sizes)."""
        del size
        return torch.randn(batch_size, self.in_features, device=device)


class ConvSequenceEncoder(nn.Module):
    """1-D convolutions over time for ``(batch, frames, features)`` sequences (e.g. 13 MFCCs
    per frame of the Free Spoken Digit Dataset), then a mean over time."""

    def __init__(
        self,
        in_features: int = 13,
        *,
        channels: Sequence[int] = (64, 128),
        output_dim: int = 128,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        check_int("in_features", in_features, minimum=1)
        check_int("output_dim", output_dim, minimum=1)
        layers, _ = _conv_norm_act_stack(
            nn.Conv1d, nn.BatchNorm1d, in_features, (*channels, output_dim), activation
        )
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, frames, in_features)`` -> ``(B, output_dim)``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                "Input `x` of ConvSequenceEncoder should be a torch.Tensor (batch, frames, "
                f"features). Found {type(x).__name__}."
            )
        if x.dim() != 3 or x.shape[2] != self.in_features:
            raise ValueError(
                f"Input `x` of ConvSequenceEncoder should be a 3-D tensor (batch, frames, "
                f"{self.in_features}). Found shape {tuple(x.shape)}; build the encoder with "
                f"the right `in_features` or transpose the input."
            )
        return self.net(x.transpose(1, 2)).mean(dim=2)

    def example_input(
        self, size: Size = "tiny", *, batch_size: int = 2, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """A random sequence: 40 frames at ``"paper"`` size, 8 at ``"tiny"``."""
        frames = 40 if size == "paper" else 8
        return torch.randn(batch_size, frames, self.in_features, device=device)


class SmallCNNEncoder(nn.Module):
    """Two-stage 2-D CNN for small images ``(batch, channels, 28, 28)`` (MNIST-like):
    [conv 3×3, norm, act, max-pool 2] × len(channels), global average pool, FC."""

    def __init__(
        self,
        in_channels: int = 1,
        *,
        channels: Sequence[int] = (32, 64),
        output_dim: int = 128,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        check_int("in_channels", in_channels, minimum=1)
        check_int("output_dim", output_dim, minimum=1)
        layers, width = _conv_norm_act_stack(
            nn.Conv2d,
            nn.BatchNorm2d,
            in_channels,
            channels,
            activation,
            pool=lambda: nn.MaxPool2d(2, ceil_mode=True),
        )
        layers += [
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(width, output_dim),
            activation(),
        ]
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, output_dim)``."""
        check_input(
            x,
            rank=4,
            channels=self.in_channels,
            layout="(batch, channels, height, width)",
            owner="SmallCNNEncoder",
        )
        return self.net(x)

    def example_input(
        self, size: Size = "tiny", *, batch_size: int = 2, device: str | torch.device = "cpu"
    ) -> torch.Tensor:
        """A random image: 28×28 at ``"paper"`` size, 8×8 at ``"tiny"``."""
        side = 28 if size == "paper" else 8
        return torch.randn(batch_size, self.in_channels, side, side, device=device)
