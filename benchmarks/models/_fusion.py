"""Fusion modules of the paper's appendix F, plus low-rank multimodal fusion (LMF).

Late fusion (:class:`LateConcat`, :class:`LowRankFusion`) maps a dict of pooled feature
vectors ``{modality: (B, d_m)}`` to ``(B, output_dim)``. Mid fusion (:class:`MidConcat`,
:class:`SEGate`, :class:`NLGate`) works on the feature maps of a visual stream
``(B, Cv, T, H, W)`` and an audio stream ``(B, Ca, Ta, F)`` after the same block.
Every module exposes ``output_dim``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from ._layers import ActivationFactory, check_int

__all__ = [
    "LateConcat",
    "LowRankFusion",
    "MidConcat",
    "NLGate",
    "SEGate",
    "create_fusion",
]


def _check_dims(input_dims: object) -> dict[str, int]:
    if not isinstance(input_dims, Mapping) or not input_dims:
        raise TypeError(
            "Parameter `input_dims` should be a non-empty mapping modality -> feature size, "
            f"e.g. {{'rgb': 2048, 'audio': 2048}}. Found {input_dims!r}."
        )
    for key, dim in input_dims.items():
        check_int(f"input_dims[{key!r}]", dim, minimum=1)
    return dict(input_dims)


def _gather(features: object, dims: Mapping[str, int], owner: str) -> list[torch.Tensor]:
    """The feature tensors in ``dims`` order, each checked to be ``(B, d_m)``."""
    if not isinstance(features, Mapping):
        raise TypeError(
            f"Input `features` of {owner} should be a mapping modality -> (batch, dim) tensor. "
            f"Found {type(features).__name__}."
        )
    missing = [k for k in dims if k not in features]
    extra = [k for k in features if k not in dims]
    if missing or extra:
        raise ValueError(
            f"Input `features` of {owner} should have exactly the keys {list(dims)}. "
            f"Missing {missing}, extra {extra}; build the fusion with matching `input_dims`."
        )
    out = []
    for key, dim in dims.items():
        x = features[key]
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != dim:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"Input `features[{key!r}]` of {owner} should be a (batch, {dim}) tensor. "
                f"Found {shape}; pool feature maps first (e.g. `forward_head(f, pre_logits=True)`)."
            )
        out.append(x)
    return out


class LateConcat(nn.Module):
    """Late fusion by concatenation (appendix F.1).

    Concatenate the k modalities' vectors (``kn`` dims when each has ``n``), optional
    dropout, then ``num_fc`` FC-ReLU layers:

    - 0: nothing (the caller's classifier maps ``kn -> c``);
    - 1: FC ``kn -> n``, ReLU;
    - 2 (the paper's): FC ``kn -> n``, ReLU, FC ``n -> n``, ReLU;
    - 4: FC ``kn -> n``, ReLU, then 3 × (FC ``n -> n``, ReLU).

    The classifier ``n -> c`` is added by the multi-head model. ``hidden_dim`` (``n``)
    defaults to the largest input size.
    """

    def __init__(
        self,
        input_dims: Mapping[str, int],
        *,
        num_fc: Literal[0, 1, 2, 4] | int = 2,
        hidden_dim: int | None = None,
        dropout: float = 0.0,
        activation: ActivationFactory = nn.ReLU,
    ) -> None:
        super().__init__()
        self.input_dims = _check_dims(input_dims)
        check_int("num_fc", num_fc, minimum=0)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Parameter `dropout` should be in [0, 1). Found {dropout!r}.")
        concat_dim = sum(self.input_dims.values())
        hidden = max(self.input_dims.values()) if hidden_dim is None else hidden_dim
        check_int("hidden_dim", hidden, minimum=1)
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        width = concat_dim
        for _ in range(num_fc):
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.num_fc = num_fc
        self.output_dim = width

    def extra_repr(self) -> str:
        return f"input_dims={self.input_dims}, num_fc={self.num_fc}, output_dim={self.output_dim}"

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{modality: (B, d_m)}`` -> ``(B, output_dim)``."""
        return self.mlp(torch.cat(_gather(features, self.input_dims, "LateConcat"), dim=1))


class LowRankFusion(nn.Module):
    """Low-rank multimodal fusion (LMF; Liu et al., ACL 2018).

    The outer product of ``[h_m, 1]`` over modalities, times a weight tensor factorized into
    ``rank`` modality-specific factors: ``sum_r prod_m ([h_m, 1] @ W_m^(r)) + b``.
    """

    def __init__(
        self, input_dims: Mapping[str, int], *, output_dim: int = 512, rank: int = 4
    ) -> None:
        super().__init__()
        self.input_dims = _check_dims(input_dims)
        check_int("output_dim", output_dim, minimum=1)
        check_int("rank", rank, minimum=1)
        self.output_dim = output_dim
        self.rank = rank
        self.factors = nn.ParameterDict(
            {
                key: nn.Parameter(torch.empty(rank, dim + 1, output_dim))
                for key, dim in self.input_dims.items()
            }
        )
        self.rank_weights = nn.Parameter(torch.empty(1, rank))
        self.bias = nn.Parameter(torch.zeros(output_dim))
        for factor in self.factors.values():
            nn.init.xavier_normal_(factor)
        nn.init.xavier_normal_(self.rank_weights)

    def extra_repr(self) -> str:
        return f"input_dims={self.input_dims}, rank={self.rank}, output_dim={self.output_dim}"

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``{modality: (B, d_m)}`` -> ``(B, output_dim)``."""
        xs = _gather(features, self.input_dims, "LowRankFusion")
        terms = []
        for key, x in zip(self.input_dims, xs, strict=True):
            z = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)  # (B, d + 1)
            terms.append(torch.einsum("bd,rdo->rbo", z, self.factors[key]))  # (rank, B, out)
        product = terms[0]
        for term in terms[1:]:
            product = product * term
        return torch.einsum("xr,rbo->bo", self.rank_weights, product) + self.bias


def _stride2_time(channels: int, count: int) -> nn.Sequential:
    """``count`` 3×1 convs with stride 2 along time (F.2: downsample audio for 2-D concat)."""
    layers: list[nn.Module] = []
    for _ in range(count):
        layers += [
            nn.Conv2d(channels, channels, (3, 1), (2, 1), (1, 0), bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


def _match_time(x: torch.Tensor, length: int) -> torch.Tensor:
    """Resize dimension 2 to ``length`` by replication (nearest), other dims unchanged."""
    if x.shape[2] == length:
        return x
    index = (torch.arange(length, device=x.device) * x.shape[2]) // length
    return x.index_select(2, index)


def _check_streams(visual: object, audio: object, cv: int, ca: int, owner: str) -> None:
    for name, x, rank, ch, layout in (
        ("visual", visual, 5, cv, "(batch, channels, time, height, width)"),
        ("audio", audio, 4, ca, "(batch, channels, time, frequency)"),
    ):
        if not isinstance(x, torch.Tensor) or x.dim() != rank or x.shape[1] != ch:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"Input `{name}` of {owner} should be a {rank}-D feature map {layout} with "
                f"{ch} channels. Found {shape}; fuse after the same block the module was "
                f"built for."
            )


class MidConcat(nn.Module):
    """Mid-level fusion by concatenation (appendix F.2), in 1-D, 2-D or 3-D form.

    - ``"1d"``: audio averaged over frequency, visual over space -> ``(B, C, T)``;
    - ``"2d"``: visual averaged over space and tiled over frequency -> ``(B, C, Ta, F)``;
      the audio time axis is first shortened by ``audio_downsample`` stride-2 convs;
    - ``"3d"``: audio averaged over frequency and tiled over space -> ``(B, C, T, H, W)``.

    Temporal matching (F.2): after the optional stride-2 audio convs (2-D form), the visual
    stream is brought to the audio stream's length by replicating frames (nearest). With
    ``out_channels`` a 1×1 conv, norm and ReLU project the ``Cv + Ca`` concatenated
    channels, so the remaining blocks of a backbone can continue from the fused map.
    ``output_dim`` is the channel count of the result.
    """

    def __init__(
        self,
        visual_channels: int,
        audio_channels: int,
        *,
        mode: Literal["1d", "2d", "3d"] = "3d",
        audio_downsample: int = 0,
        out_channels: int | None = None,
    ) -> None:
        super().__init__()
        check_int("visual_channels", visual_channels, minimum=1)
        check_int("audio_channels", audio_channels, minimum=1)
        check_int("audio_downsample", audio_downsample, minimum=0)
        if mode not in ("1d", "2d", "3d"):
            raise ValueError(f"Parameter `mode` should be '1d', '2d' or '3d'. Found {mode!r}.")
        if audio_downsample and mode != "2d":
            raise ValueError(
                f"Parameter `audio_downsample` applies to mode '2d' only (F.2); found "
                f"audio_downsample={audio_downsample} with mode {mode!r}. Set it to 0."
            )
        self.mode = mode
        self.visual_channels = visual_channels
        self.audio_channels = audio_channels
        self.audio_time = _stride2_time(audio_channels, audio_downsample)
        concat = visual_channels + audio_channels
        if out_channels is None:
            self.project: nn.Module = nn.Identity()
            self.output_dim = concat
        else:
            check_int("out_channels", out_channels, minimum=1)
            conv, norm = {
                "1d": (nn.Conv1d, nn.BatchNorm1d),
                "2d": (nn.Conv2d, nn.BatchNorm2d),
                "3d": (nn.Conv3d, nn.BatchNorm3d),
            }[mode]
            self.project = nn.Sequential(
                conv(concat, out_channels, 1, bias=False), norm(out_channels), nn.ReLU()
            )
            self.output_dim = out_channels

    def extra_repr(self) -> str:
        return (
            f"visual_channels={self.visual_channels}, audio_channels={self.audio_channels}, "
            f"mode={self.mode!r}, output_dim={self.output_dim}"
        )

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Fuse ``visual (B, Cv, T, H, W)`` and ``audio (B, Ca, Ta, F)`` feature maps."""
        _check_streams(visual, audio, self.visual_channels, self.audio_channels, "MidConcat")
        if self.mode == "1d":
            a = audio.mean(dim=3)  # (B, Ca, Ta)
            v = _match_time(visual.mean(dim=(3, 4)), a.shape[2])
            fused = torch.cat([v, a], dim=1)
        elif self.mode == "2d":
            a = self.audio_time(audio)  # (B, Ca, Ta', F)
            v = _match_time(visual.mean(dim=(3, 4)), a.shape[2])
            v = v.unsqueeze(3).expand(-1, -1, -1, a.shape[3])
            fused = torch.cat([v, a], dim=1)
        else:
            a = audio.mean(dim=3)  # (B, Ca, Ta)
            v = _match_time(visual, a.shape[2])
            a = a[..., None, None].expand(-1, -1, -1, v.shape[3], v.shape[4])
            fused = torch.cat([v, a], dim=1)
        return self.project(fused)


class _Excite(nn.Sequential):
    """Squeeze-and-excitation MLP (Hu et al. 2018): FC c -> c/r, ReLU, FC c/r -> c', sigmoid."""

    def __init__(self, source: int, target: int, reduction: int) -> None:
        hidden = max(1, source // reduction)
        super().__init__(
            nn.Linear(source, hidden), nn.ReLU(), nn.Linear(hidden, target), nn.Sigmoid()
        )


class SEGate(nn.Module):
    """Cross-modal squeeze-and-excitation gate (appendix F.3).

    Global-average-pool one stream, an SE MLP (Hu et al. 2018, the paper's [25]) makes
    per-channel weights for the *other* stream, which is scaled by them and either added to
    its input (``residual="skip"``) or replaces it (``"replace"``). ``direction`` is
    ``"audio_to_visual"``, ``"visual_to_audio"`` or ``"both"`` (the paper's best on
    Kinetics, after block 3). Returns ``(visual, audio)``; ``output_dim`` is the pair of
    their channel counts.
    """

    def __init__(
        self,
        visual_channels: int,
        audio_channels: int,
        *,
        direction: Literal["audio_to_visual", "visual_to_audio", "both"] = "both",
        residual: Literal["skip", "replace"] = "skip",
        reduction: int = 16,
    ) -> None:
        super().__init__()
        check_int("visual_channels", visual_channels, minimum=1)
        check_int("audio_channels", audio_channels, minimum=1)
        check_int("reduction", reduction, minimum=1)
        if direction not in ("audio_to_visual", "visual_to_audio", "both"):
            raise ValueError(
                "Parameter `direction` should be 'audio_to_visual', 'visual_to_audio' or "
                f"'both'. Found {direction!r}."
            )
        if residual not in ("skip", "replace"):
            raise ValueError(
                f"Parameter `residual` should be 'skip' or 'replace'. Found {residual!r}."
            )
        self.visual_channels = visual_channels
        self.audio_channels = audio_channels
        self.direction = direction
        self.residual = residual
        self.to_visual = (
            _Excite(audio_channels, visual_channels, reduction)
            if direction != "visual_to_audio"
            else None
        )
        self.to_audio = (
            _Excite(visual_channels, audio_channels, reduction)
            if direction != "audio_to_visual"
            else None
        )
        self.output_dim = (visual_channels, audio_channels)

    def extra_repr(self) -> str:
        return (
            f"visual_channels={self.visual_channels}, audio_channels={self.audio_channels}, "
            f"direction={self.direction!r}, residual={self.residual!r}"
        )

    def _gate(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        scaled = x * weights.view(*weights.shape, *([1] * (x.dim() - 2)))
        return x + scaled if self.residual == "skip" else scaled

    def forward(
        self, visual: torch.Tensor, audio: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gate the streams; both gates read the *un-gated* other stream."""
        _check_streams(visual, audio, self.visual_channels, self.audio_channels, "SEGate")
        v_pool, a_pool = visual.mean(dim=(2, 3, 4)), audio.mean(dim=(2, 3))
        new_v = visual if self.to_visual is None else self._gate(visual, self.to_visual(a_pool))
        new_a = audio if self.to_audio is None else self._gate(audio, self.to_audio(v_pool))
        return new_v, new_a


class NLGate(nn.Module):
    """Non-local gate from audio to visual (appendix F.4, Fig. 8).

    Query: the visual feature map. Key and value: the 2-D mid-concatenation (F.2) of the
    visual and audio maps, ``(B, Cv + Ca, Ta', F)``. Embedded-Gaussian attention as in the
    non-local block (Wang et al. 2018, the paper's [48]): 1×1 embeddings ``theta`` (query),
    ``phi`` (key) and ``g`` (value) to ``inner_channels``, softmax over the key positions
    (scaled by ``inner_channels ** -0.5``), a 1×1×1 output conv and norm added to the visual
    input. With ``zero_init`` the norm's scale starts at 0, so the gate starts as the
    identity (as in [48]); off by default, since then no gradient reaches the attention
    weights in the first step. The output has the visual map's shape; ``output_dim`` is
    ``visual_channels``.
    """

    def __init__(
        self,
        visual_channels: int,
        audio_channels: int,
        *,
        inner_channels: int | None = None,
        audio_downsample: int = 0,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        self.visual_channels = visual_channels
        self.audio_channels = audio_channels
        self.key_value = MidConcat(
            visual_channels, audio_channels, mode="2d", audio_downsample=audio_downsample
        )
        inner = visual_channels // 2 if inner_channels is None else inner_channels
        check_int("inner_channels", inner, minimum=1)
        kv = self.key_value.output_dim
        self.theta = nn.Conv3d(visual_channels, inner, 1)
        self.phi = nn.Conv2d(kv, inner, 1)
        self.g = nn.Conv2d(kv, inner, 1)
        self.out = nn.Sequential(
            nn.Conv3d(inner, visual_channels, 1, bias=False), nn.BatchNorm3d(visual_channels)
        )
        if zero_init:
            nn.init.zeros_(self.out[1].weight)
        self.scale = inner**-0.5
        self.output_dim = visual_channels

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Gate ``visual (B, Cv, T, H, W)`` with attention over the audio-visual 2-D map."""
        _check_streams(visual, audio, self.visual_channels, self.audio_channels, "NLGate")
        kv = self.key_value(visual, audio)
        q = self.theta(visual).flatten(2)  # (B, d, Nq)
        k = self.phi(kv).flatten(2)  # (B, d, Nk)
        v = self.g(kv).flatten(2)  # (B, d, Nk)
        attn = torch.softmax(torch.einsum("bdq,bdk->bqk", q, k) * self.scale, dim=-1)
        y = torch.einsum("bqk,bdk->bdq", attn, v).reshape(q.shape[0], q.shape[1], *visual.shape[2:])
        return visual + self.out(y)


FusionName = Literal["late_concat", "lmf"]


def create_fusion(name: str, input_dims: Mapping[str, int], **kwargs: object) -> nn.Module:
    """Late-fusion factory: ``"late_concat"`` (:class:`LateConcat`) or ``"lmf"``
    (:class:`LowRankFusion`), built for ``input_dims`` with ``kwargs``."""
    factories: dict[str, type[nn.Module]] = {"late_concat": LateConcat, "lmf": LowRankFusion}
    if name not in factories:
        raise ValueError(
            f"Parameter `fusion` should be one of {sorted(factories)} or an nn.Module with "
            f"`output_dim`. Found {name!r}."
        )
    return factories[name](input_dims, **kwargs)
