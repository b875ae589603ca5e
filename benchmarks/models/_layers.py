"""Shared building blocks: 3-D conv makers that know their stride, input checks, typing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = [
    "ActivationFactory",
    "Conv2Plus1D",
    "Conv3DChannelSeparated",
    "Conv3DInteractionPreserved",
    "Conv3DSimple",
    "ConvMaker",
    "NormFactory",
    "check_block",
    "check_input",
    "check_int",
    "r2plus1d_midplanes",
    "triple",
]

#: ``norm(num_channels) -> module``; e.g. ``nn.BatchNorm3d`` or ``lambda c: nn.GroupNorm(8, c)``.
NormFactory = Callable[[int], nn.Module]
#: ``activation() -> module``; e.g. ``nn.ReLU`` or ``lambda: nn.ReLU(inplace=True)``.
ActivationFactory = Callable[[], nn.Module]
#: ``conv_maker(in_planes, out_planes, stride=..., norm=..., activation=...) -> module``.
ConvMaker = Callable[..., nn.Module]

Size3 = tuple[int, int, int]


def triple(value: int | Sequence[int], name: str) -> Size3:
    """``value`` as a (time, height, width) triple of positive ints, with a clear error."""
    if isinstance(value, int) and not isinstance(value, bool):
        out = (value, value, value)
    elif isinstance(value, Sequence) and len(value) == 3:
        out = tuple(value)
    else:
        raise TypeError(
            f"Parameter `{name}` should be an int or a (time, height, width) triple. "
            f"Found {value!r}."
        )
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out):
        raise ValueError(f"Parameter `{name}` should hold positive ints. Found {value!r}.")
    return out  # type: ignore[return-value]


def r2plus1d_midplanes(in_planes: int, out_planes: int, kt: int = 3, ks: int = 3) -> int:
    """Width of the (2+1)-D factorization that matches a ``kt×ks×ks`` 3-D conv's parameters.

    Tran et al. 2018 (R(2+1)D, the paper's [44]), section 3.5:
    ``M = floor(t·d²·N_{i-1}·N_i / (d²·N_{i-1} + t·N_i))``.
    """
    return (in_planes * out_planes * kt * ks * ks) // (in_planes * ks * ks + kt * out_planes)


class Conv3DSimple(nn.Conv3d):
    """Full 3×3×3 convolution (R3D)."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        *,
        stride: Size3 = (1, 1, 1),
        norm: NormFactory | None = None,
        activation: ActivationFactory | None = None,
    ) -> None:
        del norm, activation  # no inner norm/activation in a single conv
        super().__init__(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class Conv2Plus1D(nn.Sequential):
    """(2+1)-D factorization: 1×3×3 spatial conv, norm, activation, 3×1×1 temporal conv.

    The middle width follows :func:`r2plus1d_midplanes`, so parameters match
    :class:`Conv3DSimple` of the same in/out widths (R(2+1)D, Tran et al. 2018).
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        *,
        stride: Size3 = (1, 1, 1),
        norm: NormFactory = nn.BatchNorm3d,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        mid = r2plus1d_midplanes(in_planes, out_planes)
        st, sh, sw = stride
        super().__init__(
            nn.Conv3d(in_planes, mid, (1, 3, 3), stride=(1, sh, sw), padding=(0, 1, 1), bias=False),
            norm(mid),
            activation(),
            nn.Conv3d(mid, out_planes, (3, 1, 1), stride=(st, 1, 1), padding=(1, 0, 0), bias=False),
        )


class Conv3DChannelSeparated(nn.Conv3d):
    """Depthwise 3×3×3 convolution (groups = channels): the ir-CSN conv (Tran et al. 2019)."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        *,
        stride: Size3 = (1, 1, 1),
        norm: NormFactory | None = None,
        activation: ActivationFactory | None = None,
    ) -> None:
        del norm, activation
        if in_planes != out_planes:
            raise ValueError(
                f"A channel-separated (depthwise) conv keeps its width: found in_planes="
                f"{in_planes}, out_planes={out_planes}. Use it only where they are equal "
                f"(the middle conv of a bottleneck block) or use the ip-CSN conv."
            )
        super().__init__(
            in_planes, out_planes, 3, stride=stride, padding=1, groups=in_planes, bias=False
        )


class Conv3DInteractionPreserved(nn.Sequential):
    """1×1×1 conv (channel interactions) then depthwise 3×3×3: the ip-CSN conv.

    Tran et al. 2019 (CSN, the paper's [43]), Fig. 2(b) and section 4.1: the 3×3×3 conv of a
    bottleneck is replaced by the pair, with no norm or activation in between.
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        *,
        stride: Size3 = (1, 1, 1),
        norm: NormFactory | None = None,
        activation: ActivationFactory | None = None,
    ) -> None:
        del norm, activation
        super().__init__(
            nn.Conv3d(in_planes, out_planes, 1, bias=False),
            Conv3DChannelSeparated(out_planes, out_planes, stride=stride),
        )


def check_input(
    x: object, *, rank: int, channels: int, layout: str, name: str = "x", owner: str = ""
) -> torch.Tensor:
    """Raise a clear ``TypeError``/``ValueError`` unless ``x`` is a tensor of the given rank
    and channel count (dimension 1)."""
    where = f" of {owner}" if owner else ""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"Input `{name}`{where} should be a torch.Tensor of shape {layout}. "
            f"Found {type(x).__name__}."
        )
    if x.dim() != rank:
        raise ValueError(
            f"Input `{name}`{where} should be a {rank}-D tensor {layout}. Found shape "
            f"{tuple(x.shape)} ({x.dim()}-D); add or remove dimensions (e.g. a batch "
            f"dimension with `x.unsqueeze(0)`)."
        )
    if x.shape[1] != channels:
        raise ValueError(
            f"Input `{name}`{where} should have {channels} channels in dimension 1 {layout}. "
            f"Found shape {tuple(x.shape)}; build the model with in_channels={x.shape[1]} "
            f"or fix the input's layout."
        )
    return x


def check_int(name: str, value: object, *, minimum: int) -> None:
    """``TypeError`` unless ``value`` is an int, ``ValueError`` if below ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"Parameter `{name}` should be an int. Found {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"Parameter `{name}` should be >= {minimum}. Found {value}.")


def check_block(block: object, name: str = "block") -> None:
    """Blocks are numbered 1-5 as in the paper's appendix F.2."""
    if not isinstance(block, int) or isinstance(block, bool) or not 1 <= block <= 5:
        raise ValueError(
            f"Parameter `{name}` should be an int in 1..5 (paper appendix F.2: block 1 is "
            f"the stem, blocks 2-5 the residual stages). Found {block!r}."
        )
