"""Conv makers: strides, the R(2+1)D midplanes rule, channel-separated convs."""

import pytest
import torch

from benchmarks.models import (
    Conv2Plus1D,
    Conv3DChannelSeparated,
    Conv3DInteractionPreserved,
    Conv3DSimple,
    r2plus1d_midplanes,
)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("cin", "cout"), [(64, 64), (64, 128), (256, 256), (3, 64)])
def test_midplanes_matches_3d_parameters(cin, cout):
    mid = r2plus1d_midplanes(cin, cout)
    assert mid == (cin * cout * 27) // (cin * 9 + 3 * cout)
    conv3d = cin * cout * 27
    factorized = cin * mid * 9 + mid * cout * 3
    # floor() leaves at most one middle channel's worth of parameters unmatched
    assert 0 <= conv3d - factorized < cin * 9 + cout * 3


@pytest.mark.parametrize(
    "maker", [Conv3DSimple, Conv2Plus1D, Conv3DChannelSeparated, Conv3DInteractionPreserved]
)
@pytest.mark.parametrize("stride", [(1, 1, 1), (2, 2, 2), (1, 2, 2)])
def test_conv_makers_apply_their_stride(maker, stride):
    conv = maker(8, 8, stride=stride)
    out = conv(torch.randn(1, 8, 4, 6, 6))
    expected = tuple(-(-n // s) for n, s in zip((4, 6, 6), stride, strict=True))
    assert out.shape == (1, 8, *expected)


def test_channel_separated_is_depthwise():
    conv = Conv3DChannelSeparated(16, 16)
    assert conv.groups == 16
    assert n_params(conv) == 16 * 27
    ip = Conv3DInteractionPreserved(8, 16)
    assert n_params(ip) == 8 * 16 + 16 * 27


def test_channel_separated_refuses_width_change():
    with pytest.raises(ValueError, match="in_planes=8, out_planes=16"):
        Conv3DChannelSeparated(8, 16)
