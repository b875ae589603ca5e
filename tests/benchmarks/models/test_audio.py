"""Audio ResNets on log-mel input."""

import pytest
import torch

from benchmarks.models import audio_resnet, create


@pytest.mark.parametrize(("depth", "dim"), [(18, 512), (34, 512), (50, 2048)])
def test_output_dim_and_shapes(depth, dim):
    model = create(f"audio_resnet_{depth}", num_classes=0)
    assert model.output_dim == dim
    assert model(model.example_input()).shape == (2, dim)


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5])
def test_stage_api_at_paper_size(block):
    model = create("audio_resnet_18", num_classes=0).eval()
    x = torch.randn(1, 1, 100, 40)
    h = model.forward_until(x, block)
    assert h.shape[1] == model.block_channels[block - 1]
    assert h.shape[2] == model.output_frames(block, 100)
    torch.testing.assert_close(model.forward_from(h, block), model.forward_features(x))


def test_paper_input_feature_map():
    # 100×40 -> stem 50×20 -> pool 25×10 -> 25×10, 13×5, 7×3, 4×2.
    model = create("audio_resnet_18", num_classes=0).eval()
    assert model.forward_features(torch.randn(1, 1, 100, 40)).shape == (1, 512, 4, 2)


def test_errors():
    model = create("audio_resnet_18")
    with pytest.raises(ValueError, match="4-D tensor"):
        model(torch.randn(2, 100, 40))
    with pytest.raises(ValueError, match="1 channels"):
        model(torch.randn(2, 3, 100, 40))
    with pytest.raises(ValueError, match="`depth`"):
        audio_resnet(20)
