"""2-D audio ResNets on log-mel spectrograms (paper section 3.1: 100 frames × 40 mel bins).

The paper's audio network is "ResNet [24]" (He et al. 2016) at the same depth as the visual
one (50 in the ablations, 152 for Kinetics in Table 6, 101 for AudioSet in Table 7). We keep
He et al.'s stem (7×7 conv stride 2, 3×3 max-pool stride 2) with one input channel: on a
1×100×40 log-mel input it gives 25×10 maps in the first stage and 4×2 in the last, and with it
the audio-visual model of Table 6 comes to the published 110.1 GFLOPs (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ._layers import ActivationFactory, NormFactory
from ._resnet import BasicResidual, BottleneckResidual, StagedResNet, residual_shortcut

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


class BasicBlock2D(BasicResidual):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

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
        self.shortcut = residual_shortcut(nn.Conv2d, in_planes, planes, stride, norm, unit_stride=1)
        self.act2 = activation()


class Bottleneck2D(BottleneckResidual):
    """1×1 reduce, 3×3 (carries the stride), 1×1 expand ×4 (ResNet-50/101/152)."""

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
        self.shortcut = residual_shortcut(
            nn.Conv2d, in_planes, out_planes, stride, norm, unit_stride=1
        )
        self.act3 = activation()


class AudioResNet(StagedResNet):
    """2-D ResNet over ``(batch, 1, time frames, mel bins)`` log-mel spectrograms.

    Same interface as :class:`~benchmarks.models.VideoResNet`: ``forward_features``,
    ``forward_head``, ``forward_until(x, block)`` / ``forward_from(x, block)`` with the paper's
    five blocks (F.2), ``output_dim``, ``block_channels`` and ``example_input`` (``"paper"``
    is 100×40, ``"tiny"`` 64×32: 2×1 positions after the last stage). Any positive input size
    passes through (padded downsampling); the time axis is dimension 2.
    """

    _conv_type = nn.Conv2d
    _norm_types = (nn.BatchNorm2d, nn.GroupNorm)
    _block_types = (BasicBlock2D, Bottleneck2D)
    _input_rank = 4
    _input_layout = "(batch, channels, time frames, mel bins)"
    # Time stride of blocks 1-5: the stem conv and pool halve time, and so does each of
    # stages 3-5.
    _frame_strides = (2 * 2, 1, 2, 2, 2)

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
        super().__init__(in_channels=in_channels, num_classes=num_classes)
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError(
                f"Parameters `layers` and `widths` should have 4 entries each. Found "
                f"{len(layers)} and {len(widths)}."
            )
        #: (frames, mel bins) of ``example_input("paper")`` and ``example_input("tiny")``.
        self.default_input_size = default_input_size
        self.tiny_input_size = (64, 32)
        # He et al. 2016 stem (see the module docstring for the choice on 100×40 inputs).
        stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 7, 2, 3, bias=False),
            norm(stem_channels),
            activation(),
            nn.MaxPool2d(3, 2, 1),
        )
        self._build(
            stem=stem,
            stem_channels=stem_channels,
            block=block,
            layers=layers,
            widths=widths,
            first_strides=(1, 2, 2, 2),
            unit_stride=1,
            block_kwargs={"norm": norm, "activation": activation},
            pool=nn.AdaptiveAvgPool2d(1),
            dropout=dropout,
            zero_init_residual=zero_init_residual,
        )


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
