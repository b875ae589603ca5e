"""Video ResNets: parameter matching, structure, stage API and input errors."""

import pytest
import torch
from torch import nn

from benchmarks.models import Bottleneck3D, VideoResNet, count_parameters, create, video_resnet

DEPTHS = [10, 18, 26, 34, 50, 101, 152]


def meta(name, **kwargs):
    with torch.device("meta"):
        return create(name, **kwargs)


@pytest.mark.parametrize("depth", DEPTHS)
def test_r2plus1d_parameters_match_r3d(model_rows, depth):
    r3d = model_rows[f"r3d_{depth}"][0]
    r21d = model_rows[f"r2plus1d_{depth}"][0]
    assert abs(r21d - r3d) / r3d < 0.02


def test_r3d_18_parameter_count():
    # 33.4M, the R3D-18 figure of Tran et al. 2018 / torchvision (400 classes).
    assert count_parameters(meta("r3d_18")) == pytest.approx(33.37e6, rel=1e-3)


@pytest.mark.parametrize(("depth", "blocks"), [(18, 8), (26, 12), (50, 16), (152, 50)])
def test_depth_to_blocks(depth, blocks):
    model = meta(f"r3d_{depth}")
    assert sum(len(s) for s in model.stages) == blocks
    assert model.output_dim == (2048 if depth >= 50 else 512)


def test_flow_input_channels():
    model = create("r2plus1d_10", in_channels=2, num_classes=5)
    assert model.stem[0].in_channels == 2
    assert model(torch.randn(2, 2, 2, 48, 48)).shape == (2, 5)


def test_zero_init_residual_zeroes_last_norm_of_bottleneck():
    model = video_resnet("ir_csn", 50, zero_init_residual=True)
    blocks = [m for m in model.modules() if isinstance(m, Bottleneck3D)]
    assert blocks
    for block in blocks:
        assert torch.all(block.bn3.weight == 0)
        assert torch.all(block.bn2.weight == 1)


def test_norm_and_activation_callables():
    model = video_resnet(
        "r3d", 10, norm=lambda c: nn.GroupNorm(1, c), activation=nn.SiLU, num_classes=3
    )
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert any(isinstance(m, nn.SiLU) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm3d) for m in model.modules())
    assert model(torch.randn(1, 3, 2, 32, 32)).shape == (1, 3)


def test_feature_extractor_and_head_split():
    model = create("r3d_10", num_classes=0)
    x = torch.randn(2, 3, 2, 48, 48)
    feats = model.forward_features(x)
    assert feats.shape == (2, 512, 1, 2, 2)
    assert model(x).shape == (2, model.output_dim)
    classifier = create("r3d_10", num_classes=4).eval()
    f = classifier.forward_features(x)
    assert classifier.forward_head(f, pre_logits=True).shape == (2, 512)
    assert classifier.forward_head(f).shape == (2, 4)


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5])
def test_forward_until_and_from_compose(block):
    model = create("r3d_10", num_classes=0).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    h = model.forward_until(x, block)
    assert h.shape[1] == model.block_channels[block - 1]
    assert h.shape[2] == model.output_frames(block, 8)
    torch.testing.assert_close(model.forward_from(h, block), model.forward_features(x))


def test_csn_structure():
    ip, ir = meta("ip_csn_152"), meta("ir_csn_152")
    assert ip.stages[0][0].conv2[1].groups == 64
    assert ir.stages[3][0].conv2.groups == 512
    assert isinstance(ip, VideoResNet)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variant": "x3d", "depth": 50}, "`variant`"),
        ({"variant": "r3d", "depth": 42}, "`depth`"),
        ({"variant": "ip_csn", "depth": 18}, "bottleneck"),
        ({"variant": "r3d", "depth": 18, "in_channels": 0}, "`in_channels`"),
        ({"variant": "r3d", "depth": 18, "temporal_strides": (1, 2)}, "`temporal_strides`"),
    ],
)
def test_builder_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        video_resnet(**kwargs)


def test_input_errors():
    model = create("r3d_10", num_classes=2)
    with pytest.raises(ValueError, match=r"5-D tensor .*Found shape \(3, 4, 32, 32\)"):
        model(torch.randn(3, 4, 32, 32))
    with pytest.raises(ValueError, match=r"3 channels .*in_channels=2"):
        model(torch.randn(1, 2, 4, 32, 32))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        model([1, 2, 3])
    with pytest.raises(ValueError, match="`block`"):
        model.forward_until(torch.randn(1, 3, 4, 32, 32), 6)
