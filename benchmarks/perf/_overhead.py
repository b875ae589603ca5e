"""Shared set-up of the per-step overhead measurements (GradientBlender vs the summed loss)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from blendopt import GradientBlender

HEADS = ("rgb", "audio", "fused")
WEIGHTS = {"rgb": 0.630, "audio": 0.014, "fused": 0.356}  # the paper's Kinetics RGB+audio weights


class LateFusionMLP(nn.Module):
    """A small two-modality late-fusion model: one head per modality plus the fused head."""

    def __init__(
        self, dim_rgb: int = 256, dim_audio: int = 128, hidden: int = 512, classes: int = 50
    ) -> None:
        super().__init__()
        self.rgb = nn.Sequential(
            nn.Linear(dim_rgb, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.audio = nn.Sequential(
            nn.Linear(dim_audio, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.head_rgb = nn.Linear(hidden, classes)
        self.head_audio = nn.Linear(hidden, classes)
        self.fused = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, rgb: torch.Tensor, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        fr, fa = self.rgb(rgb), self.audio(audio)
        return {
            "rgb": self.head_rgb(fr),
            "audio": self.head_audio(fa),
            "fused": self.fused(torch.cat([fr, fa], dim=1)),
        }


@dataclass(frozen=True)
class StepPair:
    """Two training steps on identical models and data: the naive summed loss and the blender."""

    naive: Callable[[], None]
    blend: Callable[[], None]
    naive_model: nn.Module
    blend_model: nn.Module


def make_steps(batch: int = 128, seed: int = 0) -> StepPair:
    """Build the naive ``sum(w*L).backward(); opt.step()`` step and the GradientBlender step."""
    g = torch.Generator().manual_seed(seed)
    rgb, audio = torch.randn(batch, 256, generator=g), torch.randn(batch, 128, generator=g)
    target = torch.randint(0, 50, (batch,), generator=g)

    def losses(model: nn.Module) -> dict[str, torch.Tensor]:
        return {h: F.cross_entropy(z, target) for h, z in model(rgb, audio).items()}

    torch.manual_seed(seed)
    naive_model = LateFusionMLP()
    blend_model = LateFusionMLP()
    blend_model.load_state_dict(naive_model.state_dict())
    naive_opt = torch.optim.SGD(naive_model.parameters(), lr=1e-3, momentum=0.9)
    blender = GradientBlender(
        torch.optim.SGD(blend_model.parameters(), lr=1e-3, momentum=0.9), list(HEADS), WEIGHTS
    )

    def naive_step() -> None:
        naive_opt.zero_grad()
        ls = losses(naive_model)
        sum(WEIGHTS[h] * ls[h] for h in HEADS).backward()
        naive_opt.step()

    def blend_step() -> None:
        blender.zero_grad()
        blender.backward(losses(blend_model))
        blender.step()

    return StepPair(naive_step, blend_step, naive_model, blend_model)
