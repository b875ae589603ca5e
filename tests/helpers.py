"""Small multi-head models and data shared by the tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ["a", "b", "fused"]


class TwoModalNet(nn.Module):
    """Late fusion of two vector modalities: an encoder and a head each, plus a fused head."""

    def __init__(
        self,
        dim_a: int = 6,
        dim_b: int = 5,
        hidden: int = 8,
        classes: int = 3,
        *,
        batchnorm: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        norm = (lambda n: nn.BatchNorm1d(n)) if batchnorm else (lambda n: nn.Identity())
        self.enc_a = nn.Sequential(
            nn.Linear(dim_a, hidden), norm(hidden), nn.ReLU(), nn.Dropout(dropout)
        )
        self.enc_b = nn.Sequential(
            nn.Linear(dim_b, hidden), norm(hidden), nn.ReLU(), nn.Dropout(dropout)
        )
        self.head_a = nn.Linear(hidden, classes)
        self.head_b = nn.Linear(hidden, classes)
        self.head_fused = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes)
        )

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> dict[str, torch.Tensor]:
        fa, fb = self.enc_a(xa), self.enc_b(xb)
        return {
            "a": self.head_a(fa),
            "b": self.head_b(fb),
            "fused": self.head_fused(torch.cat([fa, fb], 1)),
        }


def loss_fn(
    model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> dict[str, torch.Tensor]:
    xa, xb, y = batch
    return {h: F.cross_entropy(z, y) for h, z in model(xa, xb).items()}


def predict(model: nn.Module, batch):
    xa, xb, y = batch
    return model(xa, xb), y


def make_batches(
    n_batches: int = 4,
    batch: int = 16,
    dim_a: int = 6,
    dim_b: int = 5,
    classes: int = 3,
    seed: int = 0,
):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, classes, (batch,), generator=g)
        xa = torch.randn(batch, dim_a, generator=g) + F.one_hot(y, dim_a)[:, :dim_a].float()
        xb = torch.randn(batch, dim_b, generator=g)
        out.append((xa, xb, y))
    return out


def make_model(seed: int = 0, **kwargs) -> TwoModalNet:
    torch.manual_seed(seed)
    return TwoModalNet(**kwargs)
