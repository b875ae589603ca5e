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

import torch
from torch import nn

from ._layers import (
    ActivationFactory,
    Conv2Plus1D,
    Conv3DChannelSeparated,
    Conv3DInteractionPreserved,
    Conv3DSimple,
    ConvMaker,
    NormFactory,
    check_block,
    check_input,
    check_int,
    r2plus1d_midplanes,
    triple,
)

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


def _shortcut(
    in_planes: int, out_planes: int, stride: tuple[int, int, int], norm: NormFactory
) -> nn.Module | None:
    if stride == (1, 1, 1) and in_planes == out_planes:
        return None
    return nn.Sequential(
        nn.Conv3d(in_planes, out_planes, 1, stride=stride, bias=False), norm(out_planes)
    )


class BasicBlock3D(nn.Module):
    """Two 3×3×3-like convs (made by ``conv_maker``) with a residual connection."""

    expansion = 1

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
        self.shortcut = _shortcut(in_planes, planes, stride, norm)
        self.act2 = activation()

    @property
    def last_norm(self) -> nn.Module:
        """The norm before the residual sum (zero-initialized by ``zero_init_residual``)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + identity)


class Bottleneck3D(nn.Module):
    """1×1×1 reduce, 3×3×3-like conv (``conv_maker``, carries the stride), 1×1×1 expand ×4.

    With ``Conv3DChannelSeparated`` this is the ir-CSN block, with
    ``Conv3DInteractionPreserved`` the ip-CSN block (Tran et al. 2019, Fig. 3).
    """

    expansion = 4

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
        self.shortcut = _shortcut(in_planes, out_planes, stride, norm)
        self.act3 = activation()

    @property
    def last_norm(self) -> nn.Module:
        """``bn3``: the norm before the residual sum (torchvision zero-inits ``bn2`` here)."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.act3(out + identity)


class VideoResNet(nn.Module):
    """Generic video ResNet: stem, four stages, global average pool, optional classifier.

    The paper counts five "blocks" (appendix F.2): block 1 is the stem, blocks 2-5 the four
    residual stages. :meth:`forward_until` / :meth:`forward_from` split the network after a
    block, which mid-level fusion (F.2-F.4) uses.

    Input: ``(batch, in_channels, frames, height, width)``. Every positive size passes through
    (all downsampling convs are padded); each of stages 3-5 halves time and space (rounding
    up), the stem halves space and the stem pool halves it again.
    """

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
        super().__init__()
        check_int("num_classes", num_classes, minimum=0)
        check_int("in_channels", in_channels, minimum=1)
        if len(layers) != 4 or len(widths) != 4 or len(strides) != 4:
            raise ValueError(
                f"Parameters `layers`, `widths` and `strides` should each have 4 entries (one "
                f"per stage). Found {len(layers)}, {len(widths)} and {len(strides)}."
            )
        self.in_channels = in_channels
        self.num_classes = num_classes
        #: (frames, height, width) of ``example_input("paper")`` and ``example_input("tiny")``.
        self.default_input_size = default_input_size
        self.tiny_input_size = (2, 48, 48)
        self.stem = stem
        stages = []
        in_planes = stem_channels
        for i, (n, width, stride) in enumerate(zip(layers, widths, strides, strict=True)):
            s = triple(stride, f"strides[{i}]")
            blocks = []
            for j in range(n):
                blocks.append(
                    block(
                        in_planes,
                        width,
                        conv_maker=conv_maker,
                        stride=s if j == 0 else (1, 1, 1),
                        norm=norm,
                        activation=activation,
                    )
                )
                in_planes = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.temporal_strides = tuple(triple(s, "strides")[0] for s in strides)
        #: Channels of the pooled feature vector (``forward_features`` then pool).
        self.output_dim = in_planes
        #: Channels after each block 1-5 (paper's numbering, F.2).
        self.block_channels = (stem_channels, *(w * block.expansion for w in widths))
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_planes, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d | nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Zero the LAST norm of every block (bn3 of a bottleneck), so each residual block
            # starts as the identity (Goyal et al. 2017).
            for m in self.modules():
                if isinstance(m, BasicBlock3D | Bottleneck3D):
                    nn.init.zeros_(m.last_norm.weight)

    def _check(self, x: object) -> torch.Tensor:
        return check_input(
            x,
            rank=5,
            channels=self.in_channels,
            layout="(batch, channels, frames, height, width)",
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
        """Length of the time axis after ``block`` for an input of ``frames`` frames."""
        check_block(block)
        for stride in self.temporal_strides[: block - 1]:
            frames = -(-frames // stride)
        return frames

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled feature map after the last stage, ``(B, output_dim, T', H', W')``."""
        return self.forward_from(self.forward_until(x, 1), 1)

    def forward_head(self, features: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Global average pool, dropout and the classifier (skipped with ``pre_logits``)."""
        x = self.dropout(self.pool(features).flatten(1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``, or pooled features ``(B, output_dim)`` when
        ``num_classes == 0``."""
        return self.forward_head(self.forward_features(x))

    def example_input(
        self,
        size: Literal["tiny", "paper"] = "tiny",
        *,
        batch_size: int = 2,
        device: str | torch.device = "cpu",
    ) -> torch.Tensor:
        """A random input: ``"paper"`` is the paper's clip size, ``"tiny"`` 2×48×48.

        The tiny size keeps 2×2 positions after the last stage: with a batch of 2, a
        training-mode batch norm over only 2 values per channel outputs ±1 whatever its
        input, which stops gradients (docs/models.md, "Minimum input sizes")."""
        t, h, w = self.default_input_size if size == "paper" else self.tiny_input_size
        return torch.randn(batch_size, self.in_channels, t, h, w, device=device)


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
