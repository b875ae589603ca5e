"""Multi-head models: dict of logits per head, encoders for every modality, mid fusion."""

import pytest
import torch
import torch.nn.functional as F

from benchmarks.models import (
    LateConcat,
    MidConcat,
    MidFusionModel,
    MLPEncoder,
    MultiHeadModel,
    SEGate,
    create,
)


def test_three_modalities_rgb_flow_audio():
    model = MultiHeadModel(
        {
            "rgb": create("r3d_10", num_classes=0),
            "flow": create("r2plus1d_10", num_classes=0, in_channels=2),
            "audio": create("audio_resnet_18", num_classes=0),
        },
        num_classes=6,
        fused_head="joint",
    )
    inputs = model.example_input()
    assert inputs["flow"].shape[1] == 2
    out = model(inputs)
    assert list(out) == model.head_names == ["rgb", "flow", "audio", "joint"]
    assert all(v.shape == (2, 6) for v in out.values())
    # the paper's fused head: concat 3 × 512 -> 512 -> 512 -> classes
    assert model.fused_classifier.in_features == 512
    assert model.fusion.mlp[0].in_features == 3 * 512


def test_multi_label_losses_per_head():
    model = create("mfeat_late_concat", num_classes=5)
    out = model(model.example_input(batch_size=4))
    targets = torch.randint(0, 2, (4, 5)).float()
    losses = {k: F.binary_cross_entropy_with_logits(v, targets) for k, v in out.items()}
    sum(losses.values()).backward()
    assert set(losses) == {"pix", "fac", "fou", "kar", "zer", "mor", "fused"}


def test_custom_fusion_module_and_lmf():
    encoders = {"a": MLPEncoder(4, output_dim=8), "b": MLPEncoder(3, output_dim=8)}
    model = MultiHeadModel(encoders, 2, fusion=LateConcat({"a": 8, "b": 8}, num_fc=0))
    assert model.fused_classifier.in_features == 16
    lmf = MultiHeadModel(encoders, 2, fusion="lmf", fusion_kwargs={"output_dim": 5})
    assert lmf.fused_classifier.in_features == 5


def test_multihead_errors():
    enc = {"a": MLPEncoder(4, output_dim=8)}
    with pytest.raises(ValueError, match="`fused_head`"):
        MultiHeadModel(enc, 2, fused_head="a")
    with pytest.raises(ValueError, match="num_classes=0"):
        MultiHeadModel({"a": create("r3d_10")}, 2)
    with pytest.raises(TypeError, match="`encoders`"):
        MultiHeadModel({}, 2)
    with pytest.raises(TypeError, match="output_dim"):
        MultiHeadModel({"a": torch.nn.Linear(2, 2)}, 2)
    with pytest.raises(ValueError, match="`fusion`"):
        MultiHeadModel(enc, 2, fusion="sum")
    model = MultiHeadModel(enc, 2)
    with pytest.raises(ValueError, match=r"Missing \['a'\], extra \['b'\]"):
        model({"b": torch.randn(2, 4)})
    with pytest.raises(TypeError, match="mapping"):
        model(torch.randn(2, 4))
    with pytest.raises(ValueError, match="2-D tensor"):
        model({"a": torch.randn(2, 4, 1)})


@pytest.mark.parametrize(("mode", "block"), [("1d", 2), ("2d", 3), ("3d", 3), ("3d", 4)])
def test_mid_concat_model(mode, block):
    model = create(
        "av_mid_concat", visual="r3d_10", audio="audio_resnet_18", mode=mode, after_block=block
    )
    out = model(model.example_input())
    assert all(v.shape == (2, 400) for v in out.values())
    host = {"1d": None, "2d": model.audio_trunk, "3d": model.visual_trunk}[mode]
    if host is not None:
        assert len(host) == 5 - block


def test_mid_concat_audio_downsample_matches_time_axes():
    model = create("av_mid_concat", visual="r3d_10", audio="audio_resnet_18", mode="2d")
    # after block 3 at paper sizes: visual 16 -> 8 frames, audio 100 -> 13 -> one conv -> 7
    assert len(model.fusion.audio_time) == 3  # one conv, norm, ReLU


def test_mid_fusion_model_errors():
    v, a = create("r3d_10", num_classes=0), create("audio_resnet_18", num_classes=0)
    with pytest.raises(ValueError, match="visual_channels=128, audio_channels=128"):
        MidFusionModel(v, a, SEGate(64, 64), after_block=3, num_classes=2)
    with pytest.raises(ValueError, match="out_channels=128"):
        MidFusionModel(v, a, MidConcat(128, 128, mode="3d"), after_block=3, num_classes=2)
    with pytest.raises(ValueError, match="`after_block`"):
        MidFusionModel(v, a, SEGate(64, 64), after_block=0, num_classes=2)
    with pytest.raises(TypeError, match="`fusion`"):
        MidFusionModel(v, a, LateConcat({"x": 2}), after_block=2, num_classes=2)
