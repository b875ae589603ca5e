"""Multi-head models: one classifier per modality plus a fused head (paper section 3, Fig. 3).

``forward(inputs)`` takes ``{modality: tensor}`` and returns ``{head: logits}`` with one
entry per modality and one for the fused head, which is what
``GradientBlender.backward(losses)`` expects once a loss is computed per head. The logits
are unnormalized, so single-label (cross-entropy) and multi-label (binary cross-entropy,
e.g. AudioSet) training both work; the loss is the user's choice.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from ._fusion import MidConcat, NLGate, SEGate, create_fusion
from ._layers import check_block, check_int

__all__ = ["MidFusionModel", "MultiHeadModel"]


def _check_encoder(name: str, enc: object) -> None:
    if not isinstance(enc, nn.Module):
        raise TypeError(f"Parameter `{name}` should be an nn.Module. Found {type(enc).__name__}.")
    if not isinstance(getattr(enc, "output_dim", None), int):
        raise TypeError(
            f"Parameter `{name}` ({type(enc).__name__}) should expose an int `output_dim` (the "
            f"size of its pooled features)."
        )
    if getattr(enc, "num_classes", 0):
        raise ValueError(
            f"Parameter `{name}` should be a feature extractor built with num_classes=0 (its own "
            f"classifier would get no gradient). Found num_classes={enc.num_classes}."
        )


def _check_inputs(inputs: object, names: list[str], owner: str) -> Mapping[str, Any]:
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"Input `inputs` of {owner} should be a mapping modality -> tensor with keys "
            f"{names}. Found {type(inputs).__name__}."
        )
    missing = [n for n in names if n not in inputs]
    extra = [k for k in inputs if k not in names]
    if missing or extra:
        raise ValueError(
            f"Input `inputs` of {owner} should have exactly the keys {names}. Missing "
            f"{missing}, extra {extra}."
        )
    return inputs


def _check_head_name(fused_head: object, modalities: list[str]) -> str:
    if not isinstance(fused_head, str) or not fused_head:
        raise TypeError(f"Parameter `fused_head` should be a non-empty str. Found {fused_head!r}.")
    if fused_head in modalities:
        raise ValueError(
            f"Parameter `fused_head` should differ from the modality names {modalities}. "
            f"Found {fused_head!r}; pick another name for the fused head."
        )
    return fused_head


class _MultiInputModel(nn.Module):
    """A model whose input is ``{name: tensor}``, one tensor per sub-network that reads it."""

    def _input_networks(self) -> dict[str, nn.Module]:
        """``{input name: the network that reads it}``, in the order of the input dict."""
        raise NotImplementedError

    def example_input(
        self,
        size: Literal["tiny", "paper"] = "tiny",
        *,
        batch_size: int = 2,
        device: str | torch.device = "cpu",
    ) -> dict[str, torch.Tensor]:
        """Random inputs from every encoder's (backbone's) ``example_input``."""
        return {
            name: net.example_input(size, batch_size=batch_size, device=device)
            for name, net in self._input_networks().items()
        }


class MultiHeadModel(_MultiInputModel):
    """Late-fusion multi-head model over any number of modalities.

    Args:
        encoders: ``{modality: encoder}``; an encoder maps its input to ``(B, output_dim)``
            and exposes ``output_dim``: backbones built with ``num_classes=0``,
            :class:`MLPEncoder`, :class:`SmallCNNEncoder`, :class:`ConvSequenceEncoder`.
        num_classes: classes of every head.
        fusion: ``"late_concat"`` (appendix F.1; the paper's two FC layers by default),
            ``"lmf"`` (low-rank fusion) or a module taking ``{modality: (B, d)}`` and
            exposing ``output_dim``.
        fusion_kwargs: keyword arguments for the named fusion (``num_fc``, ``dropout``, ...).
        fused_head: name of the fused head in the output dict.
        head_dropout: dropout before every classifier.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        num_classes: int,
        *,
        fusion: Literal["late_concat", "lmf"] | nn.Module = "late_concat",
        fusion_kwargs: Mapping[str, Any] | None = None,
        fused_head: str = "fused",
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(encoders, Mapping) or not encoders:
            raise TypeError(
                "Parameter `encoders` should be a non-empty mapping modality -> nn.Module. "
                f"Found {encoders!r}."
            )
        for name, enc in encoders.items():
            _check_encoder(f"encoders[{name!r}]", enc)
        check_int("num_classes", num_classes, minimum=1)
        self.modalities = list(encoders)
        self.fused_head = _check_head_name(fused_head, self.modalities)
        self.num_classes = num_classes
        self.encoders = nn.ModuleDict(dict(encoders))
        dims = {name: enc.output_dim for name, enc in encoders.items()}
        if isinstance(fusion, str):
            self.fusion = create_fusion(fusion, dims, **dict(fusion_kwargs or {}))
        elif isinstance(fusion, nn.Module):
            if fusion_kwargs:
                raise ValueError(
                    "Parameter `fusion_kwargs` applies to a named fusion only; found a module "
                    "for `fusion`. Configure the module itself."
                )
            if not isinstance(getattr(fusion, "output_dim", None), int):
                raise TypeError("Parameter `fusion` should expose an int `output_dim`.")
            self.fusion = fusion
        else:
            raise TypeError(
                f"Parameter `fusion` should be 'late_concat', 'lmf' or an nn.Module. Found "
                f"{type(fusion).__name__}."
            )
        self.dropout = nn.Dropout(head_dropout) if head_dropout > 0 else nn.Identity()
        self.heads = nn.ModuleDict({name: nn.Linear(d, num_classes) for name, d in dims.items()})
        self.fused_classifier = nn.Linear(self.fusion.output_dim, num_classes)

    @property
    def head_names(self) -> list[str]:
        """Keys of the output dict: the modalities, then the fused head."""
        return [*self.modalities, self.fused_head]

    def forward_features(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{modality: (B, output_dim_m)}`` pooled features of every encoder."""
        _check_inputs(inputs, self.modalities, type(self).__name__)
        return {name: self.encoders[name](inputs[name]) for name in self.modalities}

    def forward_head(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-modality classifiers and the fused head on pooled features."""
        out = {name: self.heads[name](self.dropout(features[name])) for name in self.modalities}
        out[self.fused_head] = self.fused_classifier(self.dropout(self.fusion(features)))
        return out

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{modality: input}`` -> ``{head: (B, num_classes) logits}``."""
        return self.forward_head(self.forward_features(inputs))

    def _input_networks(self) -> dict[str, nn.Module]:
        return {name: self.encoders[name] for name in self.modalities}


class MidFusionModel(_MultiInputModel):
    """Audio-visual model with mid-level fusion after a chosen block (appendix F.2-F.4).

    Both backbones run to ``after_block`` (1 = stem, 2-5 = stages). The uni-modal heads then
    continue their own backbone to the end and classify, so they stay uni-modal as G-Blend
    needs. The fused head applies ``fusion`` to the two feature maps and continues with its
    own copy of the remaining blocks (the copy starts from the same weights):

    - :class:`MidConcat` ``"3d"``: the visual blocks (``out_channels`` must equal the visual
      channels after ``after_block``); ``"2d"``: the audio blocks (``out_channels`` = audio
      channels); ``"1d"``: one temporal conv (3, ``visual.output_dim`` wide), BN, ReLU;
    - :class:`SEGate`: both streams' blocks, pooled and concatenated;
    - :class:`NLGate`: the visual blocks on the gated visual map, concatenated with the
      pooled audio features of the audio head.

    Output: ``{visual_name: logits, audio_name: logits, fused_head: logits}``.
    """

    def __init__(
        self,
        visual: nn.Module,
        audio: nn.Module,
        fusion: MidConcat | SEGate | NLGate,
        *,
        after_block: int,
        num_classes: int,
        visual_name: str = "rgb",
        audio_name: str = "audio",
        fused_head: str = "fused",
    ) -> None:
        super().__init__()
        for pname, net in (("visual", visual), ("audio", audio)):
            _check_encoder(pname, net)
            if not all(
                hasattr(net, a)
                for a in ("forward_until", "forward_from", "stages", "block_channels")
            ):
                raise TypeError(
                    f"Parameter `{pname}` should be a staged backbone (VideoResNet / AudioResNet "
                    f"with forward_until, forward_from, stages, block_channels). Found "
                    f"{type(net).__name__}."
                )
        if not isinstance(fusion, MidConcat | SEGate | NLGate):
            raise TypeError(
                "Parameter `fusion` should be a MidConcat, SEGate or NLGate. Found "
                f"{type(fusion).__name__}."
            )
        check_block(after_block, "after_block")
        check_int("num_classes", num_classes, minimum=1)
        if visual_name == audio_name:
            raise ValueError(
                "Parameters `visual_name` and `audio_name` should differ. Both are "
                f"{visual_name!r}."
            )
        self.fused_head = _check_head_name(fused_head, [visual_name, audio_name])
        self.visual_name, self.audio_name = visual_name, audio_name
        self.after_block = after_block
        cv = visual.block_channels[after_block - 1]
        ca = audio.block_channels[after_block - 1]
        if (fusion.visual_channels, fusion.audio_channels) != (cv, ca):
            raise ValueError(
                f"Parameter `fusion` was built for ({fusion.visual_channels}, "
                f"{fusion.audio_channels}) channels but the backbones have ({cv}, {ca}) after "
                f"block {after_block}; build it with visual_channels={cv}, audio_channels={ca}."
            )
        self.visual = visual
        self.audio = audio
        self.fusion = fusion
        rest = after_block - 1  # index of the first stage after the block
        self.visual_trunk: nn.Module | None = None
        self.audio_trunk: nn.Module | None = None
        self.temporal_trunk: nn.Module | None = None
        if isinstance(fusion, MidConcat):
            if fusion.mode == "1d":
                self.temporal_trunk = nn.Sequential(
                    nn.Conv1d(fusion.output_dim, visual.output_dim, 3, padding=1, bias=False),
                    nn.BatchNorm1d(visual.output_dim),
                    nn.ReLU(),
                )
                fused_dim = visual.output_dim
            else:
                host, host_name, channels = (
                    (visual, "visual", cv) if fusion.mode == "3d" else (audio, "audio", ca)
                )
                if fusion.output_dim != channels:
                    raise ValueError(
                        f"A {fusion.mode} MidConcat continues with the {host_name} blocks, so its "
                        f"`out_channels` should be {channels}. Found output_dim="
                        f"{fusion.output_dim}; build it with out_channels={channels}."
                    )
                trunk = nn.Sequential(*copy.deepcopy(list(host.stages[rest:])))
                if fusion.mode == "3d":
                    self.visual_trunk = trunk
                else:
                    self.audio_trunk = trunk
                fused_dim = host.output_dim
        elif isinstance(fusion, SEGate):
            self.visual_trunk = nn.Sequential(*copy.deepcopy(list(visual.stages[rest:])))
            self.audio_trunk = nn.Sequential(*copy.deepcopy(list(audio.stages[rest:])))
            fused_dim = visual.output_dim + audio.output_dim
        else:
            self.visual_trunk = nn.Sequential(*copy.deepcopy(list(visual.stages[rest:])))
            fused_dim = visual.output_dim + audio.output_dim
        self.visual_head = nn.Linear(visual.output_dim, num_classes)
        self.audio_head = nn.Linear(audio.output_dim, num_classes)
        self.fused_classifier = nn.Linear(fused_dim, num_classes)
        self.fused_dim = fused_dim
        self.num_classes = num_classes

    @property
    def head_names(self) -> list[str]:
        """Keys of the output dict."""
        return [self.visual_name, self.audio_name, self.fused_head]

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{visual_name: clip, audio_name: log-mel}`` -> ``{head: logits}``."""
        _check_inputs(inputs, [self.visual_name, self.audio_name], type(self).__name__)
        k = self.after_block
        hv = self.visual.forward_until(inputs[self.visual_name], k)
        ha = self.audio.forward_until(inputs[self.audio_name], k)
        v_feat = self.visual.forward_head(self.visual.forward_from(hv, k), pre_logits=True)
        a_feat = self.audio.forward_head(self.audio.forward_from(ha, k), pre_logits=True)
        fused = self.fusion(hv, ha)
        if isinstance(self.fusion, MidConcat):
            if self.temporal_trunk is not None:
                f_feat = self.temporal_trunk(fused).mean(dim=2)
            else:
                trunk = self.visual_trunk if self.visual_trunk is not None else self.audio_trunk
                f_feat = trunk(fused).flatten(2).mean(dim=2)
        elif isinstance(self.fusion, SEGate):
            gv, ga = fused
            f_feat = torch.cat(
                [self.visual_trunk(gv).flatten(2).mean(2), self.audio_trunk(ga).flatten(2).mean(2)],
                dim=1,
            )
        else:
            f_feat = torch.cat([self.visual_trunk(fused).flatten(2).mean(2), a_feat], dim=1)
        return {
            self.visual_name: self.visual_head(v_feat),
            self.audio_name: self.audio_head(a_feat),
            self.fused_head: self.fused_classifier(f_feat),
        }

    def _input_networks(self) -> dict[str, nn.Module]:
        return {self.visual_name: self.visual, self.audio_name: self.audio}
