"""Per-head measurement of a model over a data loader (the L^T' and L^V of Algorithm 1)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from blendopt._distributed import accumulator_dtype, reduced_floats
from blendopt._weighting import check_keys

#: ``metric(model, batch) -> {head: value}``. A value is a scalar tensor or float (the batch
#: mean, weighted by the batch size) or a 1-D tensor of per-sample values (averaged exactly).
MetricFn = Callable[[nn.Module, Any], Mapping[str, "torch.Tensor | float"]]
#: ``loss_fn(model, batch) -> {head: scalar loss}``.
LossFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]


def _first_tensor(obj: Any) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    children = obj.values() if isinstance(obj, Mapping) else obj
    found = map(_first_tensor, children if isinstance(obj, (Mapping, list, tuple)) else ())
    return next((t for t in found if t is not None), None)


def batch_size_of(batch: Any) -> int:
    """Size of the first dimension of the first tensor found in ``batch`` (1 if none)."""
    tensor = _first_tensor(batch)
    return int(tensor.shape[0]) if tensor is not None and tensor.ndim > 0 else 1


def is_empty_batch(batch: Any) -> bool:
    """Whether ``batch``'s first tensor has a first dimension of 0 (skipped and counted)."""
    tensor = _first_tensor(batch)
    return tensor is not None and tensor.ndim > 0 and tensor.shape[0] == 0


def measure(
    model: nn.Module,
    metric: MetricFn,
    loader: Iterable[Any],
    heads: Sequence[str],
    *,
    name: str = "metric",
) -> dict[str, float]:
    """Average ``metric`` per head over ``loader`` with ``model`` in eval mode (restored after).

    Sums and counts are reduced over the ranks of ``torch.distributed``; empty batches skipped.

    Args:
        model: the model, called only through ``metric``.
        metric: ``metric(model, batch) -> {head: value}``: a scalar (the batch mean, weighted
            by the batch size) or a 1-D tensor of per-sample values per head.
        loader: the batches.
        heads: the heads to measure; ``metric`` must return exactly these.
        name: how errors call ``metric``.

    Returns:
        head -> the average over every sample of ``loader``.

    Raises:
        ValueError: ``metric`` returns the wrong heads or shapes, or ``loader`` has no sample.
    """
    return measure_counted(model, metric, loader, heads, name=name)[0]


@torch.no_grad()
def measure_counted(
    model: nn.Module,
    metric: MetricFn,
    loader: Iterable[Any],
    heads: Sequence[str],
    *,
    name: str = "metric",
) -> tuple[dict[str, float], int]:
    """:func:`measure`, also returning the number of empty batches skipped (on all ranks)."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, float] = dict.fromkeys(heads, 0.0)
    skipped = [0]
    for batch, values in _metric_values(model, metric, loader, heads, name, skipped):
        size = None
        for h in heads:
            v = values[h]
            if not isinstance(v, torch.Tensor):
                v = torch.tensor(float(v), dtype=torch.float64)
            v = v.detach()
            v = v.to(accumulator_dtype(v.device))
            if v.ndim == 0:
                size = batch_size_of(batch) if size is None else size
                total, n = v * size, float(size)
            else:
                total, n = v.sum(), float(v.numel())
            sums[h] = sums[h] + total if h in sums else total
            counts[h] += n
    empty = skipped[0]
    if not sums or any(c == 0 for c in counts.values()):
        detail = f" ({empty} empty batches skipped)" if empty else ""
        raise ValueError(
            f"Measuring `{name}` saw no samples: the loader is empty{detail}. Pass a non-empty "
            "loader."
        )
    totals = reduced_floats([*(sums[h] for h in heads), *(counts[h] for h in heads), empty])
    k = len(heads)
    return {h: totals[i] / totals[k + i] for i, h in enumerate(heads)}, int(totals[2 * k])


def top1_error(
    predict: Callable[[nn.Module, Any], tuple[Mapping[str, torch.Tensor], torch.Tensor]],
) -> MetricFn:
    """A metric of per-head per-sample top-1 errors (0/1) from ``predict(model, batch) ->
    (logits_by_head, target)`` (logits ``(batch, classes)``, integer targets ``(batch,)``)."""

    def error(model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        logits, target = predict(model, batch)
        return {h: (out.argmax(dim=-1) != target).to(torch.float32) for h, out in logits.items()}

    error.__qualname__ = f"top1_error({getattr(predict, '__qualname__', repr(predict))})"
    return error


@torch.no_grad()
def measure_per_sample(
    model: nn.Module,
    metric: MetricFn,
    loader: Iterable[Any],
    heads: Sequence[str],
    *,
    name: str = "metric",
) -> dict[str, torch.Tensor]:
    """Per-sample values of ``metric`` per head over ``loader`` (eval mode), on this rank.

    Measured twice in the same loader order the values pair sample by sample (a batch mean
    gives one value per batch), for :func:`blendopt.functional.paired_standard_errors`.

    Returns:
        head -> 1-D float64 CPU tensor.

    Raises:
        ValueError: the loader is empty, or a value has more than one dimension.
    """
    values, _ = measure_per_sample_counted(model, metric, loader, heads, name=name)
    return values


def measure_per_sample_counted(
    model: nn.Module,
    metric: MetricFn,
    loader: Iterable[Any],
    heads: Sequence[str],
    *,
    name: str = "metric",
) -> tuple[dict[str, torch.Tensor], int]:
    """:func:`measure_per_sample`, skipping empty batches and returning how many it skipped."""
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in heads}
    skipped = [0]
    for _, values in _metric_values(model, metric, loader, heads, name, skipped):
        for h in heads:
            v = values[h]
            v = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else float(v))
            parts[h].append(v.reshape(-1).to("cpu", torch.float64))
    if not heads or not parts[heads[0]]:
        raise ValueError(
            f"Measuring `{name}` saw no samples: the loader is empty. Pass a non-empty loader."
        )
    return {h: torch.cat(parts[h]) for h in heads}, skipped[0]


def _metric_values(
    model: nn.Module,
    metric: MetricFn,
    loader: Iterable[Any],
    heads: Sequence[str],
    name: str,
    skipped: list[int],
) -> Iterator[tuple[Any, Mapping[str, Any]]]:
    """``(batch, checked values)`` per non-empty batch (eval, no grad); counts empty ones."""
    was_training = model.training
    model.eval()
    try:
        for batch in loader:
            if is_empty_batch(batch):
                skipped[0] += 1
                continue
            with torch.no_grad():
                values = metric(model, batch)
            check_keys(values, heads, name, returned=True)
            for h in heads:
                v = values[h]
                if isinstance(v, torch.Tensor) and v.ndim > 1:
                    raise ValueError(
                        f"`{name}` returned a value of shape {tuple(v.shape)} for head {h!r}. "
                        "Return a scalar (the batch mean) or a 1-D tensor of per-sample values."
                    )
            yield batch, values
    finally:
        model.train(was_training)
