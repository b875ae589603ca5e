"""The model of a config: one encoder per modality, flow encoders with two input channels."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.train import TinyEncoder, build_model, load_config

from .conftest import CONFIGS


def _first_conv(module: nn.Module) -> nn.Module:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Conv3d))


def test_smoke_flow_model_has_a_two_channel_tiny_encoder() -> None:
    cfg = load_config(CONFIGS / "kinetics_rgb_flow_audio.toml", smoke=True)
    model = build_model(cfg, num_classes=5)
    assert list(model.encoders) == ["rgb", "flow", "audio"]
    flow = model.encoders["flow"]
    assert isinstance(flow, TinyEncoder)
    assert (flow.dims, flow.in_channels) == (3, 2)
    assert _first_conv(flow).in_channels == 2
    assert _first_conv(model.encoders["rgb"]).in_channels == 3
    model.eval()
    inputs = {
        "rgb": torch.randn(2, 3, 4, 32, 32),
        "flow": torch.randn(2, 2, 4, 32, 32),
        "audio": torch.randn(2, 1, 100, 40),
    }
    logits = model(inputs)
    assert set(logits) == {"rgb", "flow", "audio", "fused"}
    assert all(z.shape == (2, 5) for z in logits.values())


def test_paper_flow_model_is_a_video_resnet_on_two_channels() -> None:
    # The configs name r3d_50 (Table 4); r3d_10 is the same builder at a test-friendly depth.
    cfg = load_config(CONFIGS / "kinetics_rgb_flow.toml", ["model.flow='r3d_10'"], smoke=True)
    model = build_model(cfg, num_classes=3)
    stem = _first_conv(model.encoders["flow"])
    assert isinstance(stem, nn.Conv3d)
    assert stem.in_channels == 2
    model.eval()
    logits = model({"rgb": torch.randn(1, 3, 4, 32, 32), "flow": torch.randn(1, 2, 4, 32, 32)})
    assert logits["flow"].shape == (1, 3)
