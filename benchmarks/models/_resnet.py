"""What the 2-D audio and 3-D video ResNets share: residual blocks' shortcut and forward, and
the staged network (stem, four stages, pool, dropout, classifier) with the paper's five-block
split (appendix F.2) used by mid-level fusion."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ._layers import NormFactory, check_block, check_input, check_int

__all__ = [
    "BasicResidual",
    "BottleneckResidual",
    "ResidualBlock",
    "StagedResNet",
    "residual_shortcut",
]


def residual_shortcut(
    conv: type[nn.Module],
    in_planes: int,
    out_planes: int,
    stride: Any,
    norm: NormFactory,
    *,
    unit_stride: Any,
) -> nn.Module | None:
    """``None`` (identity) when the block keeps its size and width, else a strided 1×1 ``conv``
    (``nn.Conv2d`` or ``nn.Conv3d``) and a norm."""
    if stride == unit_stride and in_planes == out_planes:
        return None
    return nn.Sequential(
        conv(in_planes, out_planes, 1, stride=stride, bias=False), norm(out_planes)
    )


class ResidualBlock(nn.Module):
    """A residual block, 2-D or 3-D: ``shortcut`` (``None`` for the identity) added to the
    residual branch before the block's last activation."""

    expansion: ClassVar[int]

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch up to ``last_norm``."""
        raise NotImplementedError

    @property
    def last_norm(self) -> nn.Module:
        """The norm before the residual sum (zero-initialized by ``zero_init_residual``)."""
        raise NotImplementedError

    @property
    def _last_act(self) -> nn.Module:
        """The activation after the residual sum."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self._last_act(self._residual(x) + identity)


class BasicResidual(ResidualBlock):
    """Basic block (ResNet-10-34): ``conv1``-``bn1``-``act1``, ``conv2``-``bn2``, plus the
    shortcut, then ``act2``."""

    expansion = 1

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    @property
    def last_norm(self) -> nn.Module:
        return self.bn2

    @property
    def _last_act(self) -> nn.Module:
        return self.act2


class BottleneckResidual(ResidualBlock):
    """Bottleneck block (ResNet-50-152): 1×1 reduce (``conv1``-``bn1``-``act1``), the strided
    conv (``conv2``-``bn2``-``act2``), 1×1 expand ×4 (``conv3``-``bn3``), plus the shortcut,
    then ``act3``."""

    expansion = 4

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    @property
    def last_norm(self) -> nn.Module:
        """``bn3``: the norm before the residual sum (torchvision zero-inits ``bn2`` here)."""
        return self.bn3

    @property
    def _last_act(self) -> nn.Module:
        return self.act3


class StagedResNet(nn.Module):
    """Stem, four residual stages, global average pool, dropout and an optional classifier.

    The paper counts five "blocks" (appendix F.2): block 1 is the stem, blocks 2-5 the four
    residual stages. :meth:`forward_until` / :meth:`forward_from` split the network after a
    block, which mid-level fusion (F.2-F.4) uses.

    A subclass sets what differs between the 2-D and 3-D networks: the conv, norm and block
    types that the weight init touches, the input's rank and layout (for the input check) and
    ``_frame_strides``, the time stride of each block 1-5 (for :meth:`output_frames`). Its
    ``__init__`` calls ``super().__init__`` (checks and stores ``in_channels`` and
    ``num_classes``), checks its own arguments, sets ``default_input_size`` and
    ``tiny_input_size``, builds its stem and calls :meth:`_build`.
    """

    _conv_type: ClassVar[type[nn.Module]]
    _norm_types: ClassVar[tuple[type[nn.Module], ...]]
    _block_types: ClassVar[tuple[type[nn.Module], ...]]
    _input_rank: ClassVar[int]
    _input_layout: ClassVar[str]
    _frame_strides: tuple[int, ...]

    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=0)
        check_int("in_channels", in_channels, minimum=1)
        self.in_channels = in_channels
        self.num_classes = num_classes

    def _build(
        self,
        *,
        stem: nn.Module,
        stem_channels: int,
        block: Any,
        layers: Sequence[int],
        widths: Sequence[int],
        first_strides: Iterable[Any],
        unit_stride: Any,
        block_kwargs: Mapping[str, Any],
        pool: nn.Module,
        dropout: float,
        zero_init_residual: bool,
    ) -> None:
        """Stem, stages (the first block of stage ``i`` has stride ``first_strides[i]``, the
        others ``unit_stride``), head and weight init. ``first_strides`` is read one stage at
        a time, so a generator may check each stride as its stage is built."""
        self.stem = stem
        stages = []
        in_planes = stem_channels
        for n, width, stride in zip(layers, widths, first_strides, strict=True):
            blocks = []
            for j in range(n):
                blocks.append(
                    block(
                        in_planes, width, stride=stride if j == 0 else unit_stride, **block_kwargs
                    )
                )
                in_planes = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        #: Channels of the pooled feature vector (``forward_features`` then pool).
        self.output_dim = in_planes
        #: Channels after each block 1-5 (paper's numbering, F.2).
        self.block_channels = (stem_channels, *(w * block.expansion for w in widths))
        self.pool = pool
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(in_planes, self.num_classes) if self.num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, self._conv_type):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, self._norm_types):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Zero the LAST norm of every block (bn3 of a bottleneck), so each residual block
            # starts as the identity (Goyal et al. 2017).
            for m in self.modules():
                if isinstance(m, self._block_types):
                    nn.init.zeros_(m.last_norm.weight)

    def _check(self, x: object) -> torch.Tensor:
        return check_input(
            x,
            rank=self._input_rank,
            channels=self.in_channels,
            layout=self._input_layout,
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
        """Length of the time axis after ``block`` for an input of ``frames`` frames (each
        block divides it by its time stride, rounding up)."""
        check_block(block)
        for stride in self._frame_strides[:block]:
            frames = -(-frames // stride)
        return frames

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled feature map after the last stage, ``(B, output_dim, T', ...)``."""
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
        """A random input of ``default_input_size`` (``"paper"``) or ``tiny_input_size``
        (``"tiny"``).

        The tiny sizes keep at least 2×1 positions after the last stage: with a batch of 2, a
        training-mode batch norm over only 2 values per channel outputs ±1 whatever its
        input, which stops gradients (docs/models.md, "Minimum input sizes")."""
        dims = self.default_input_size if size == "paper" else self.tiny_input_size
        return torch.randn(batch_size, self.in_channels, *dims, device=device)
