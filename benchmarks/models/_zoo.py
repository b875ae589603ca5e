"""Registered, keyword-only named builders (``benchmarks.models.create(name, **kwargs)``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from torch import nn

from ._audio import AUDIO_BLOCKS_PER_DEPTH, AudioResNet, audio_resnet
from ._encoders import ConvSequenceEncoder, MLPEncoder, SmallCNNEncoder
from ._fusion import MidConcat, NLGate, SEGate
from ._multihead import MidFusionModel, MultiHeadModel
from ._registry import create, register_model
from ._video import BLOCKS_PER_DEPTH, VideoResNet, video_resnet

__all__: list[str] = []

_VARIANT_TEXT = {
    "r3d": "R3D (full 3×3×3 convolutions; Tran et al. 2018)",
    "r2plus1d": "R(2+1)D (1×3×3 then 3×1×1, parameter-matched; Tran et al. 2018)",
    "ip_csn": "ip-CSN (1×1×1 + depthwise 3×3×3; Tran et al. 2019)",
    "ir_csn": "ir-CSN (depthwise 3×3×3; Tran et al. 2019)",
}


def _video_builder(variant: Any, depth: int) -> Callable[..., VideoResNet]:
    def builder(*, in_channels: int = 3, num_classes: int = 400, **kwargs: Any) -> VideoResNet:
        return video_resnet(
            variant, depth, in_channels=in_channels, num_classes=num_classes, **kwargs
        )

    builder.__name__ = builder.__qualname__ = f"{variant}_{depth}"
    builder.__doc__ = (
        f"{_VARIANT_TEXT[variant]}, depth {depth}. Keyword arguments: see "
        f"``video_resnet`` (in_channels 3 for RGB, 2 for flow; num_classes; norm; ...)."
    )
    return builder


for _variant in ("r3d", "r2plus1d", "ip_csn", "ir_csn"):
    for _depth in BLOCKS_PER_DEPTH:
        if _variant.endswith("csn") and _depth < 50:
            continue  # channel-separated networks are defined on bottlenecks (see video_resnet)
        register_model(f"{_variant}_{_depth}")(_video_builder(_variant, _depth))


def _audio_builder(depth: int) -> Callable[..., AudioResNet]:
    def builder(*, num_classes: int = 400, **kwargs: Any) -> AudioResNet:
        return audio_resnet(depth, num_classes=num_classes, **kwargs)

    builder.__name__ = builder.__qualname__ = f"audio_resnet_{depth}"
    builder.__doc__ = f"2-D audio ResNet-{depth} on 1×100×40 log-mel input (see ``audio_resnet``)."
    return builder


for _depth in AUDIO_BLOCKS_PER_DEPTH:
    register_model(f"audio_resnet_{_depth}")(_audio_builder(_depth))


@register_model()
def mlp_encoder(*, in_features: int = 240, **kwargs: Any) -> MLPEncoder:
    """MLP encoder for feature vectors (default: the 240-feature UCI ``pix`` view)."""
    return MLPEncoder(in_features, **kwargs)


@register_model()
def sequence_encoder(*, in_features: int = 13, **kwargs: Any) -> ConvSequenceEncoder:
    """1-D conv encoder for ``(batch, frames, 13)`` MFCC sequences."""
    return ConvSequenceEncoder(in_features, **kwargs)


@register_model()
def small_cnn_encoder(*, in_channels: int = 1, **kwargs: Any) -> SmallCNNEncoder:
    """Small 2-D CNN encoder for 28×28 images."""
    return SmallCNNEncoder(in_channels, **kwargs)


def _backbones(
    visual: str,
    audio: str,
    visual_kwargs: Mapping[str, Any] | None,
    audio_kwargs: Mapping[str, Any] | None,
) -> tuple[nn.Module, nn.Module]:
    for pname, value in (("visual", visual), ("audio", audio)):
        if not isinstance(value, str):
            raise TypeError(
                f"Parameter `{pname}` should be a registered model name (str). Found "
                f"{type(value).__name__}; pass a MultiHeadModel directly to use your own module."
            )
    v = create(visual, **{**dict(visual_kwargs or {}), "num_classes": 0})
    a = create(audio, **{**dict(audio_kwargs or {}), "num_classes": 0})
    return v, a


@register_model()
def av_late_concat(
    *,
    visual: str = "r3d_50",
    audio: str = "audio_resnet_50",
    num_classes: int = 400,
    num_fc: int = 2,
    hidden_dim: int | None = None,
    dropout: float = 0.0,
    visual_kwargs: Mapping[str, Any] | None = None,
    audio_kwargs: Mapping[str, Any] | None = None,
    visual_name: str = "rgb",
    audio_name: str = "audio",
    fused_head: str = "fused",
) -> MultiHeadModel:
    """Audio-visual late fusion (section 3.1 and appendix F.1): visual and audio backbones by
    registered name (default ResNet3D-50 + audio ResNet-50, the paper's ablation setting), a
    head per modality and the concat + ``num_fc`` FC fused head."""
    v, a = _backbones(visual, audio, visual_kwargs, audio_kwargs)
    return MultiHeadModel(
        {visual_name: v, audio_name: a},
        num_classes,
        fusion="late_concat",
        fusion_kwargs={"num_fc": num_fc, "hidden_dim": hidden_dim, "dropout": dropout},
        fused_head=fused_head,
    )


@register_model()
def av_lmf(
    *,
    visual: str = "r3d_50",
    audio: str = "audio_resnet_50",
    num_classes: int = 400,
    rank: int = 4,
    output_dim: int = 512,
    visual_kwargs: Mapping[str, Any] | None = None,
    audio_kwargs: Mapping[str, Any] | None = None,
) -> MultiHeadModel:
    """Audio-visual model with a low-rank multimodal fusion (LMF) head."""
    v, a = _backbones(visual, audio, visual_kwargs, audio_kwargs)
    return MultiHeadModel(
        {"rgb": v, "audio": a},
        num_classes,
        fusion="lmf",
        fusion_kwargs={"rank": rank, "output_dim": output_dim},
    )


@register_model()
def av_ip_csn_152(*, num_classes: int = 400, **kwargs: Any) -> MultiHeadModel:
    """The Kinetics G-Blend model of Table 6: ip-CSN-152 (32 frames) + audio ResNet-152 with
    the late-concat two-FC head of appendix F.1."""
    return av_late_concat(
        visual="ip_csn_152", audio="audio_resnet_152", num_classes=num_classes, **kwargs
    )


@register_model()
def av_r2plus1d_101(*, num_classes: int = 527, **kwargs: Any) -> MultiHeadModel:
    """The AudioSet G-Blend model of Table 7: R(2+1)D-101 (16 frames) + audio ResNet-101,
    late-concat head; 527 classes (multi-label: train with a binary cross-entropy loss)."""
    return av_late_concat(
        visual="r2plus1d_101", audio="audio_resnet_101", num_classes=num_classes, **kwargs
    )


def _paper_frames(net: nn.Module, default: int) -> int:
    size = getattr(net, "default_input_size", None)
    return size[0] if size else default


def _auto_downsample(v: nn.Module, a: nn.Module, block: int) -> int:
    """Stride-2 audio convs bringing the audio time axis closest to the visual one (F.2) at
    the paper's input sizes."""
    tv = v.output_frames(block, _paper_frames(v, 16))
    ta = a.output_frames(block, _paper_frames(a, 100))
    count = 0
    while ta > tv and abs(-(-ta // 2) - tv) < abs(ta - tv):
        ta, count = -(-ta // 2), count + 1
    return count


@register_model()
def av_mid_concat(
    *,
    visual: str = "r3d_50",
    audio: str = "audio_resnet_50",
    mode: Literal["1d", "2d", "3d"] = "3d",
    after_block: int = 3,
    audio_downsample: int | None = None,
    num_classes: int = 400,
    visual_kwargs: Mapping[str, Any] | None = None,
    audio_kwargs: Mapping[str, Any] | None = None,
) -> MidFusionModel:
    """Mid-level concatenation after ``after_block`` (appendix F.2; 3-D after block 3 was
    the paper's best on Kinetics, 2-D on AudioSet). ``audio_downsample`` (2-D only) defaults
    to the number of stride-2 convs that best matches the time axes at the paper's sizes."""
    v, a = _backbones(visual, audio, visual_kwargs, audio_kwargs)
    cv, ca = v.block_channels[after_block - 1], a.block_channels[after_block - 1]
    if audio_downsample is None:
        audio_downsample = _auto_downsample(v, a, after_block) if mode == "2d" else 0
    out = {"3d": cv, "2d": ca, "1d": None}.get(mode)
    fusion = MidConcat(cv, ca, mode=mode, audio_downsample=audio_downsample, out_channels=out)
    return MidFusionModel(v, a, fusion, after_block=after_block, num_classes=num_classes)


@register_model()
def av_se_gate(
    *,
    visual: str = "r3d_50",
    audio: str = "audio_resnet_50",
    after_block: int = 3,
    direction: Literal["audio_to_visual", "visual_to_audio", "both"] = "both",
    residual: Literal["skip", "replace"] = "skip",
    num_classes: int = 400,
    visual_kwargs: Mapping[str, Any] | None = None,
    audio_kwargs: Mapping[str, Any] | None = None,
) -> MidFusionModel:
    """SE gate after ``after_block`` (appendix F.3; both directions after block 3 was the
    paper's best on Kinetics)."""
    v, a = _backbones(visual, audio, visual_kwargs, audio_kwargs)
    cv, ca = v.block_channels[after_block - 1], a.block_channels[after_block - 1]
    fusion = SEGate(cv, ca, direction=direction, residual=residual)
    return MidFusionModel(v, a, fusion, after_block=after_block, num_classes=num_classes)


@register_model()
def av_nl_gate(
    *,
    visual: str = "r3d_50",
    audio: str = "audio_resnet_50",
    after_block: int = 4,
    audio_downsample: int | None = None,
    num_classes: int = 400,
    visual_kwargs: Mapping[str, Any] | None = None,
    audio_kwargs: Mapping[str, Any] | None = None,
) -> MidFusionModel:
    """NL gate after ``after_block`` (appendix F.4; after block 4, visual query, 2-D
    audio-visual concat as key and value, was the paper's best)."""
    v, a = _backbones(visual, audio, visual_kwargs, audio_kwargs)
    cv, ca = v.block_channels[after_block - 1], a.block_channels[after_block - 1]
    if audio_downsample is None:
        audio_downsample = _auto_downsample(v, a, after_block)
    fusion = NLGate(cv, ca, audio_downsample=audio_downsample)
    return MidFusionModel(v, a, fusion, after_block=after_block, num_classes=num_classes)


@register_model()
def mfeat_late_concat(
    *, num_classes: int = 10, num_fc: int = 2, output_dim: int = 64
) -> MultiHeadModel:
    """UCI Multiple Features (six views of 2000 handwritten digits): an MLP encoder per
    view, a head per view and the late-concat fused head."""
    views = {"pix": 240, "fac": 216, "fou": 76, "kar": 64, "zer": 47, "mor": 6}
    encoders = {k: MLPEncoder(d, hidden=(128,), output_dim=output_dim) for k, d in views.items()}
    return MultiHeadModel(encoders, num_classes, fusion_kwargs={"num_fc": num_fc})


@register_model()
def digits_av_late_concat(
    *, num_classes: int = 10, num_fc: int = 2, output_dim: int = 128
) -> MultiHeadModel:
    """Spoken + written digits (FSDD MFCC sequences paired with MNIST images, AV-MNIST
    style): a 1-D conv encoder for audio, a small CNN for images, late-concat fusion."""
    encoders = {
        "audio": ConvSequenceEncoder(13, output_dim=output_dim),
        "image": SmallCNNEncoder(1, output_dim=output_dim),
    }
    return MultiHeadModel(encoders, num_classes, fusion_kwargs={"num_fc": num_fc})
