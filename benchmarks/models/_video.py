"""Video ResNets in one family: R3D, R(2+1)D, ip-CSN and ir-CSN.

The paper (G-Blend, section 3.1) uses ResNet3D-50 ([44]) for RGB and optical flow in the
ablations, ip-CSN-152 ([43]) with 32-frame input for Kinetics (section 4, Table 6) and
R(2+1)D-101 for AudioSet (Table 7). One generic :class:`VideoResNet` takes a stem, a block
class and a conv maker; :func:`video_resnet` assembles a family member, and the registered
named builders (``_zoo.py``) are thin keyword-only wrappers around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

from ._layers import (
    ActivationFactory,
    Conv2Plus1D,
    Conv3DChannelSeparated,
    Conv3DInteractionPreserved,
    Conv3DSimple,
    ConvMaker,
    NormFactory,
    check_int,
    r2plus1d_midplanes,
    triple,
)
from ._resnet import BasicResidual, BottleneckResidual, StagedResNet, residual_shortcut

__all__ = [
    "BLOCKS_PER_DEPTH",
    "BasicBlock3D",
    "Bottleneck3D",
    "VideoResNet",
    "VideoStem",
    "video_resnet",
]

#: Blocks per stage for each depth. 10-34 use basic blocks, 50-152 bottlenecks (the R(2+1)D
#: paper's Table 1 and its released VMZ configurations; 26 is [2, 3, 4, 3]).
BLOCKS_PER_DEPTH: dict[int, tuple[int, int, int, int]] = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    26: (2, 3, 4, 3),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

Variant = Literal["r3d", "r2plus1d", "ip_csn", "ir_csn"]

_CONV_MAKERS: dict[str, ConvMaker] = {
    "r3d": Conv3DSimple,
    "r2plus1d": Conv2Plus1D,
    "ip_csn": Conv3DInteractionPreserved,
    "ir_csn": Conv3DChannelSeparated,
}

#: Input (frames, height, width) the paper uses, per variant: section 3.1, 16×224² clips for
#: the R3D/R(2+1)D ablations (and R(2+1)D-101 on AudioSet, section 4); Table 6, one view of
#: the 30-view Kinetics test for ip-CSN-152, 32 frames × 256² (the crop size that reproduces
#: its 108.8 GFLOPs, see docs/models.md).
PAPER_INPUT: dict[str, tuple[int, int, int]] = {
    "r3d": (16, 224, 224),
    "r2plus1d": (16, 224, 224),
    "ip_csn": (32, 256, 256),
    "ir_csn": (32, 256, 256),
}


class VideoStem(nn.Sequential):
    """Stem: 3×7×7 conv, stride (1, 2, 2), norm, activation, optional 1×3×3 max-pool stride
    (1, 2, 2). For R(2+1)D the conv is factorized 1×7×7 then 3×1×1 with a parameter-matched
    middle width. ``in_channels`` is free (3 for RGB, 2 for optical flow)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 64,
        *,
        factorized: bool = False,
        pool: bool = True,
        norm: NormFactory = nn.BatchNorm3d,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        layers: list[nn.Module]
        if factorized:
            mid = r2plus1d_midplanes(in_channels, out_channels, kt=3, ks=7)
            layers = [
                nn.Conv3d(in_channels, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
                norm(mid),
                activation(),
                nn.Conv3d(mid, out_channels, (3, 1, 1), 1, (1, 0, 0), bias=False),
            ]
        else:
            layers = [
                nn.Conv3d(in_channels, out_channels, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False)
            ]
        layers += [norm(out_channels), activation()]
        if pool:
            layers.append(nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
        super().__init__(*layers)
        self.out_channels = out_channels


class BasicBlock3D(BasicResidual):
    """Two 3×3×3-like convs (made by ``conv_maker``) with a residual connection."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        conv_maker: ConvMaker,
        stride: tuple[int, int, int] = (1, 1, 1),
        norm: NormFactory = nn.BatchNorm3d,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        kw = {"norm": norm, "activation": activation}
        self.conv1 = conv_maker(in_planes, planes, stride=stride, **kw)
        self.bn1 = norm(planes)
        self.act1 = activation()
        self.conv2 = conv_maker(planes, planes, **kw)
        self.bn2 = norm(planes)
        self.shortcut = residual_shortcut(
            nn.Conv3d, in_planes, planes, stride, norm, unit_stride=(1, 1, 1)
        )
        self.act2 = activation()


class Bottleneck3D(BottleneckResidual):
    """1×1×1 reduce, 3×3×3-like conv (``conv_maker``, carries the stride), 1×1×1 expand ×4.

    With ``Conv3DChannelSeparated`` this is the ir-CSN block, with
    ``Conv3DInteractionPreserved`` the ip-CSN block (Tran et al. 2019, Fig. 3).
    """

    def __init__(
        self,
        in_planes: int,
        planes: int,
        *,
        conv_maker: ConvMaker,
        stride: tuple[int, int, int] = (1, 1, 1),
        norm: NormFactory = nn.BatchNorm3d,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv3d(in_planes, planes, 1, bias=False)
        self.bn1 = norm(planes)
        self.act1 = activation()
        self.conv2 = conv_maker(planes, planes, stride=stride, norm=norm, activation=activation)
        self.bn2 = norm(planes)
        self.act2 = activation()
        self.conv3 = nn.Conv3d(planes, out_planes, 1, bias=False)
        self.bn3 = norm(out_planes)
        self.shortcut = residual_shortcut(
            nn.Conv3d, in_planes, out_planes, stride, norm, unit_stride=(1, 1, 1)
        )
        self.act3 = activation()


class VideoResNet(StagedResNet):
    """Generic video ResNet: stem, four stages, global average pool, optional classifier.

    The paper counts five "blocks" (appendix F.2): block 1 is the stem, blocks 2-5 the four
    residual stages. :meth:`forward_until` / :meth:`forward_from` split the network after a
    block, which mid-level fusion (F.2-F.4) uses.

    Input: ``(batch, in_channels, frames, height, width)``. Every positive size passes through
    (all downsampling convs are padded); each of stages 3-5 halves time and space (rounding
    up), the stem halves space and the stem pool halves it again. ``example_input("tiny")``
    is 2×48×48, which keeps 2×2 positions after the last stage.
    """

    _conv_type = nn.Conv3d
    _norm_types = (nn.BatchNorm3d, nn.GroupNorm)
    _block_types = (BasicBlock3D, Bottleneck3D)
    _input_rank = 5
    _input_layout = "(batch, channels, frames, height, width)"

    def __init__(
        self,
        *,
        block: type[BasicBlock3D] | type[Bottleneck3D],
        conv_maker: ConvMaker,
        layers: Sequence[int],
        stem: nn.Module,
        stem_channels: int = 64,
        in_channels: int = 3,
        num_classes: int = 400,
        widths: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2),
        dropout: float = 0.0,
        norm: NormFactory = nn.BatchNorm3d,
        activation: ActivationFactory = nn.ReLU,
        zero_init_residual: bool = False,
        default_input_size: tuple[int, int, int] = (16, 224, 224),
    ) -> None:
        super().__init__(in_channels=in_channels, num_classes=num_classes)
        if len(layers) != 4 or len(widths) != 4 or len(strides) != 4:
            raise ValueError(
                f"Parameters `layers`, `widths` and `strides` should each have 4 entries (one "
                f"per stage). Found {len(layers)}, {len(widths)} and {len(strides)}."
            )
        #: (frames, height, width) of ``example_input("paper")`` and ``example_input("tiny")``.
        self.default_input_size = default_input_size
        self.tiny_input_size = (2, 48, 48)
        self._build(
            stem=stem,
            stem_channels=stem_channels,
            block=block,
            layers=layers,
            widths=widths,
            # Checked one stage at a time, as that stage is built.
            first_strides=(triple(s, f"strides[{i}]") for i, s in enumerate(strides)),
            unit_stride=(1, 1, 1),
            block_kwargs={"conv_maker": conv_maker, "norm": norm, "activation": activation},
            pool=nn.AdaptiveAvgPool3d(1),
            dropout=dropout,
            zero_init_residual=zero_init_residual,
        )
        self.temporal_strides = tuple(triple(s, "strides")[0] for s in strides)

    @property
    def _frame_strides(self) -> tuple[int, ...]:
        # Time stride of blocks 1-5: the stem keeps time, the stages follow `strides`.
        return (1, *self.temporal_strides)


def video_resnet(
    variant: Variant,
    depth: int,
    *,
    in_channels: int = 3,
    num_classes: int = 400,
    stem_pool: bool = True,
    dropout: float = 0.0,
    norm: NormFactory = nn.BatchNorm3d,
    activation: ActivationFactory = nn.ReLU,
    zero_init_residual: bool = False,
    temporal_strides: Sequence[int] = (1, 2, 2, 2),
) -> VideoResNet:
    """Build one member of the family.

    Args:
        variant: ``"r3d"`` (3×3×3), ``"r2plus1d"`` (factorized, parameter-matched),
            ``"ip_csn"`` (1×1×1 + depthwise 3×3×3) or ``"ir_csn"`` (depthwise 3×3×3).
        depth: 10, 18, 26, 34 (basic blocks) or 50, 101, 152 (bottlenecks). The CSN variants
            are defined on bottlenecks only (their depthwise conv cannot change width).
        in_channels: 3 for RGB, 2 for optical flow.
        num_classes: classifier width; 0 gives a feature extractor (``forward`` returns the
            pooled ``output_dim`` vector).
        stem_pool: 1×3×3 max-pool after the stem (the VMZ / CSN reference at 224² input).
        temporal_strides: time stride of each of the four stages (space is 1, 2, 2, 2).
    """
    if variant not in _CONV_MAKERS:
        raise ValueError(
            f"Parameter `variant` should be one of {sorted(_CONV_MAKERS)}. Found {variant!r}."
        )
    if depth not in BLOCKS_PER_DEPTH:
        raise ValueError(
            f"Parameter `depth` should be one of {sorted(BLOCKS_PER_DEPTH)}. Found {depth!r}."
        )
    block: type[BasicBlock3D] | type[Bottleneck3D] = Bottleneck3D if depth >= 50 else BasicBlock3D
    if variant in ("ip_csn", "ir_csn") and block is BasicBlock3D:
        raise ValueError(
            f"Channel-separated networks are built on bottleneck blocks: parameter `depth` "
            f"should be 50, 101 or 152 for variant {variant!r}. Found {depth}."
        )
    if len(temporal_strides) != 4:
        raise ValueError(
            f"Parameter `temporal_strides` should have 4 entries. Found {temporal_strides!r}."
        )
    check_int("in_channels", in_channels, minimum=1)
    stem = VideoStem(
        in_channels,
        64,
        factorized=variant == "r2plus1d",
        pool=stem_pool,
        norm=norm,
        activation=activation,
    )
    strides = [(t, s, s) for t, s in zip(temporal_strides, (1, 2, 2, 2), strict=True)]
    return VideoResNet(
        block=block,
        conv_maker=_CONV_MAKERS[variant],
        layers=BLOCKS_PER_DEPTH[depth],
        stem=stem,
        in_channels=in_channels,
        num_classes=num_classes,
        strides=strides,
        dropout=dropout,
        norm=norm,
        activation=activation,
        zero_init_residual=zero_init_residual,
        default_input_size=PAPER_INPUT[variant],
    )
