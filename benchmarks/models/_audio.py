"""2-D audio ResNets on log-mel spectrograms (paper section 3.1: 100 frames × 40 mel bins).

The paper's audio network is "ResNet [24]" (He et al. 2016) at the same depth as the visual
one (50 in the ablations, 152 for Kinetics in Table 6, 101 for AudioSet in Table 7). We keep
He et al.'s stem (7×7 conv stride 2, 3×3 max-pool stride 2) with one input channel: on a
1×100×40 log-mel input it gives 25×10 maps in the first stage and 4×2 in the last, and with it
the audio-visual model of Table 6 comes to the published 110.1 GFLOPs (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ._layers import ActivationFactory, NormFactory, check_block, check_input, check_int

__all__ = ["AUDIO_BLOCKS_PER_DEPTH", "AudioResNet", "BasicBlock2D", "Bottleneck2D", "audio_resnet"]

#: He et al. 2016, Table 1.
AUDIO_BLOCKS_PER_DEPTH: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

#: (channels, time frames, mel bins) of one log-mel input (section 3.1).
PAPER_AUDIO_INPUT = (1, 100, 40)


def _shortcut2d(
    in_planes: int, out_planes: int, stride: int, norm: NormFactory
) -> nn.Module | None:
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), norm(out_planes)
    )


class BasicBlock2D(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        norm: NormFactory = nn.BatchNorm2d,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.act1 = activation()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm(planes)
        self.shortcut = _shortcut2d(in_planes, planes, stride, norm)
        self.act2 = activation()

    @property
    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        return self.act2(self.bn2(self.conv2(out)) + identity)


class Bottleneck2D(nn.Module):
    """1×1 reduce, 3×3 (carries the stride), 1×1 expand ×4 (ResNet-50/101/152)."""

    expansion = 4

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        stride: int = 1,
        norm: NormFactory = nn.BatchNorm2d,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.act1 = activation()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm(planes)
        self.act2 = activation()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = norm(out_planes)
        self.shortcut = _shortcut2d(in_planes, out_planes, stride, norm)
        self.act3 = activation()

    @property
    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        return self.act3(self.bn3(self.conv3(out)) + identity)


class AudioResNet(nn.Module):
    """2-D ResNet over ``(batch, 1, time frames, mel bins)`` log-mel spectrograms.

    Same interface as :class:`~benchmarks.models.VideoResNet`: ``forward_features``,
    ``forward_head``, ``forward_until(x, block)`` / ``forward_from(x, block)`` with the paper's
    five blocks (F.2), ``output_dim``, ``block_channels`` and ``example_input``. Any positive
    input size passes through (padded downsampling); the time axis is dimension 2.
    """

    def __init__(
        self,
        *,
        block: type[BasicBlock2D] | type[Bottleneck2D],
        layers: Sequence[int],
        in_channels: int = 1,
        num_classes: int = 400,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_channels: int = 64,
        dropout: float = 0.0,
        norm: NormFactory = nn.BatchNorm2d,
        activation: ActivationFactory = nn.ReLU,
        zero_init_residual: bool = False,
        default_input_size: tuple[int, int] = PAPER_AUDIO_INPUT[1:],
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=0)
        check_int("in_channels", in_channels, minimum=1)
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(
                f"Parameters `layers` and `widths` should have 4 entries each. Found "
                f"{len(layers)} and {len(widths)}."
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        #: (frames, mel bins) of ``example_input("paper")`` and ``example_input("tiny")``.
        self.default_input_size = default_input_size
        self.tiny_input_size = (64, 32)
        # He et al. 2016 stem (see the module docstring for the choice on 100×40 inputs).
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 7, 2, 3, bias=False),
            norm(stem_channels),
            activation(),
            nn.MaxPool2d(3, 2, 1),
        )
        stages = []
        in_planes = stem_channels
        for i, (n, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(
                    block(in_planes, width, stride=stride, norm=norm, activation=activation)
                )
                in_planes = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.output_dim = in_planes
        self.block_channels = (stem_channels, *(w * block.expansion for w in widths))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_planes, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock2D | Bottleneck2D):
                    nn.init.zeros_(m.last_norm.weight)

    def _check(self, x: object) -> torch.Tensor:
        return check_input(
            x,
            rank=4,
            channels=self.in_channels,
            layout="(batch, channels, time frames, mel bins)",
            owner=type(self).__name__,
        )

    def forward_until(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """Feature map after ``block`` (1 = stem, 2-5 = stages; paper appendix F.2)."""
        check_block(block)
        x = self.stem(self._check(x))
        for stage in self.stages[: block - 1]:
            x = stage(x)
        return x

    def forward_from(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """Run blocks ``block + 1`` to 5 on a feature map from :meth:`forward_until`."""
        check_block(block)
        for stage in self.stages[block - 1 :]:
            x = stage(x)
        return x

    def output_frames(self, block: int, frames: int) -> int:
        """Length of the time axis after ``block`` for an input of ``frames`` frames (the
        stem conv and pool halve it, and so does each of stages 3-5)."""
        check_block(block)
        for _ in range(2 + max(0, block - 2)):
            frames = -(-frames // 2)
        return frames

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled feature map ``(B, output_dim, T', F')``."""
        return self.forward_from(self.forward_until(x, 1), 1)

    def forward_head(self, features: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout and the classifier (skipped with ``pre_logits``)."""
        x = self.dropout(self.pool(features).flatten(1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, or pooled ``(B, output_dim)`` features when ``num_classes == 0``."""
        return self.forward_head(self.forward_features(x))

    def example_input(
        self,
        size: Literal["tiny", "paper"] = "tiny",
        *,
        batch_size: int = 2,
        device: str | torch.device = "cpu",
    ) -> torch.Tensor:
        """A random log-mel input: ``"paper"`` is 100×40, ``"tiny"`` 64×32 (2×1 positions
        after the last stage, see :meth:`VideoResNet.example_input`)."""
        t, f = self.default_input_size if size == "paper" else self.tiny_input_size
        return torch.randn(batch_size, self.in_channels, t, f, device=device)


def audio_resnet(
    depth: int,
    *,
    in_channels: int = 1,
    num_classes: int = 400,
    dropout: float = 0.0,
    norm: NormFactory = nn.BatchNorm2d,
    activation: ActivationFactory = nn.ReLU,
    zero_init_residual: bool = False,
) -> AudioResNet:
    """Audio ResNet of ``depth`` 18, 34 (basic blocks), 50, 101 or 152 (bottlenecks)."""
    if depth not in AUDIO_BLOCKS_PER_DEPTH:
        raise ValueError(
            f"Parameter `depth` should be one of {sorted(AUDIO_BLOCKS_PER_DEPTH)}. Found {depth!r}."
        )
    return AudioResNet(
        block=Bottleneck2D if depth >= 50 else BasicBlock2D,
        layers=AUDIO_BLOCKS_PER_DEPTH[depth],
        in_channels=in_channels,
        num_classes=num_classes,
        dropout=dropout,
        norm=norm,
        activation=activation,
        zero_init_residual=zero_init_residual,
    )
