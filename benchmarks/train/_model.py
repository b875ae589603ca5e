"""The model of a config, and the one place that maps a method name to a blender setup."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

import blendopt
from benchmarks.models import MultiHeadModel, create
from benchmarks.train._config import ConfigError, TrainConfig

__all__ = ["FUSED", "BlendSetup", "TinyEncoder", "blend_setup", "build_model"]

FUSED = "fused"


class TinyEncoder(nn.Module):
    """A one-conv encoder for ``--smoke`` runs (3-D for video/flow, 2-D for log-mel audio).

    Args:
        dims: 3 for ``C × T × H × W`` clips, 2 for ``1 × frames × mels`` spectrograms.
        in_channels: input channels (3 RGB, 2 flow, 1 audio).
        width: output features.
    """

    def __init__(self, dims: int, in_channels: int, width: int = 8) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        pool = nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.net = nn.Sequential(
            conv(in_channels, width, 3, stride=2, padding=1, bias=False),
            norm(width),
            nn.ReLU(inplace=True),
            pool,
            nn.Flatten(),
        )
        self.output_dim = width
        self.num_classes = 0
        self.dims, self.in_channels = dims, in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def __repr__(self) -> str:
        return (
            f"TinyEncoder(dims={self.dims}, in_channels={self.in_channels}, "
            f"width={self.output_dim})"
        )


def _encoder(modality: str, name: str) -> nn.Module:
    channels = {"rgb": 3, "flow": 2, "audio": 1}[modality]
    if name == "tiny":
        return TinyEncoder(2 if modality == "audio" else 3, channels)
    kwargs: dict[str, Any] = {"num_classes": 0}
    if modality == "flow":
        kwargs["in_channels"] = 2
    try:
        return create(name, **kwargs)
    except ValueError as exc:
        key = "audio" if modality == "audio" else ("flow" if modality == "flow" else "visual")
        raise ConfigError(f"Config key `model.{key}`: {exc}") from None


def build_model(
    cfg: TrainConfig, num_classes: int, *, fusion_dropout: float = 0.0
) -> MultiHeadModel:
    """The late-fusion multi-head model of ``cfg`` (§3.1: concat + ``num_fc`` FC layers).

    Args:
        cfg: the config (``model.*``, ``data.modalities``).
        num_classes: classes of every head.
        fusion_dropout: dropout at the concatenation (the ``dropout`` baseline).
    """
    names = {"rgb": cfg.model.visual, "audio": cfg.model.audio, "flow": cfg.model.flow}
    encoders = {m: _encoder(m, names[m]) for m in cfg.data.modalities}
    return MultiHeadModel(
        encoders,
        num_classes,
        fusion="late_concat",
        fusion_kwargs={"num_fc": cfg.model.num_fc, "dropout": fusion_dropout},
        fused_head=FUSED,
    )


@dataclass(frozen=True)
class BlendSetup:
    """How a method trains the heads.

    Attributes:
        weights: fixed weights per head, or ``None`` (estimated by G-Blend).
        schedule: ``"offline"`` (Algorithm 2) / ``"online"`` (Algorithm 3) for estimates.
        fusion_dropout: dropout at the concatenation.
        evaluated_head: the head whose accuracy is the method's result.
        is_blend: several heads trained (the ensemble of heads is meaningful).
    """

    weights: dict[str, float] | None
    schedule: str | None
    fusion_dropout: float
    evaluated_head: str
    is_blend: bool


def _weights_from(path: str, heads: list[str]) -> dict[str, float]:
    try:
        with open(path) as f:
            report = json.load(f)
        weights = {h: float(report["final_weights"][h]) for h in heads}
    except FileNotFoundError:
        raise ConfigError(
            f"Config key `method.weights_from`: {path!r} not found; point it at the report.json "
            "of a finished run (e.g. the mini-AudioSet run, Table 7)."
        ) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"Config key `method.weights_from`: {path!r} has no final weights for the heads "
            f"{heads} ({type(exc).__name__}: {exc})."
        ) from None
    return weights


def blend_setup(cfg: TrainConfig, heads: list[str]) -> BlendSetup:
    """Map ``method.name`` to a blender setup (the names of ``benchmarks.runner``'s methods).

    ``single:<m>`` trains head ``m`` alone, ``naive`` the fused head alone, ``dropout`` the
    fused head with dropout 0.5 at the concatenation, ``auxiliary`` every head with equal
    weights, ``gblend_offline`` / ``gblend_online`` G-Blend (Algorithms 2 / 3),
    ``gblend_rolling`` G-Blend with ``blendopt.RollingEstimator`` (no model copies), or fixed
    weights from ``method.weights`` / ``method.weights_from`` (Table 7: weights estimated on
    mini-AudioSet).
    """
    name = cfg.method.name
    if name.startswith("single:"):
        m = name.split(":", 1)[1]
        return BlendSetup({h: float(h == m) for h in heads}, None, 0.0, m, False)
    if name in ("naive", "dropout"):
        drop = 0.5 if name == "dropout" else 0.0
        return BlendSetup({h: float(h == FUSED) for h in heads}, None, drop, FUSED, False)
    if name == "auxiliary":
        return BlendSetup(blendopt.functional.uniform_weights(heads), None, 0.0, FUSED, True)
    fixed: Mapping[str, float] | None = None
    if cfg.method.weights:
        fixed = {h: float(cfg.method.weights[h]) for h in heads}
    elif cfg.method.weights_from:
        fixed = _weights_from(os.path.expanduser(cfg.method.weights_from), heads)
    if fixed is not None:
        total = sum(fixed.values())
        if total <= 0:
            raise ConfigError(f"Config key `method.weights`: weights sum to {total}; need > 0.")
        return BlendSetup({h: w / total for h, w in fixed.items()}, None, 0.0, FUSED, True)
    schedule = {"gblend_offline": "offline", "gblend_rolling": "rolling"}.get(name, "online")
    return BlendSetup(None, schedule, 0.0, FUSED, True)
