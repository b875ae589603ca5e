"""Parameter and FLOP counts at the paper's input sizes, on the meta device (no compute)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ._registry import create, list_models

__all__ = ["ModelSummary", "count_gflops", "count_parameters", "summarize", "summary_table"]


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def count_gflops(model: nn.Module, inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> float:
    """Forward GFLOPs counted as multiply-adds, the convention of the paper's Table 6.

    ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per multiply-add of a matmul
    or convolution, so its total is halved. Norms, activations and pooling are not counted
    (nor are they in the CSN / G-Blend figures). Use meta tensors to count without compute.
    """
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(inputs)
    return counter.get_total_flops() / 2e9


def _describe(inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> str:
    if isinstance(inputs, torch.Tensor):
        return "×".join(str(s) for s in inputs.shape[1:])
    return " + ".join(f"{k} {_describe(v)}" for k, v in inputs.items())


@dataclass(frozen=True)
class ModelSummary:
    """One row of the model table."""

    name: str
    parameters: int
    gflops: float
    input_size: str

    def row(self) -> str:
        """Markdown table row."""
        gflops = f"{self.gflops:.2f}" if self.gflops >= 0.01 else f"{self.gflops:.1e}"
        params = f"{self.parameters / 1e6:.2f}"
        return f"| `{self.name}` | {params} | {gflops} | {self.input_size} |"


def summarize(name: str, **kwargs: Any) -> ModelSummary:
    """Parameters and GFLOPs (multiply-adds) of ``create(name, **kwargs)`` on one input of
    the paper's size (batch 1), built and run on the meta device."""
    with torch.device("meta"):
        model = create(name, **kwargs)
    model.eval()
    inputs = model.example_input("paper", batch_size=1, device="meta")
    return ModelSummary(
        name, count_parameters(model), count_gflops(model, inputs), _describe(inputs)
    )


HEADER = (
    "| model | parameters (M) | GFLOPs (multiply-adds, one input) | input (C×T×H×W / C×T×F) |\n"
    "|---|---:|---:|---|"
)


def summary_table(names: Iterable[str] | None = None) -> str:
    """Markdown table of every registered model (or ``names``) with default arguments."""
    rows = [summarize(n).row() for n in (list_models() if names is None else names)]
    return "\n".join([HEADER, *rows])
