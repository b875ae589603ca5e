"""The one validator of heads and weights, the masked blend Σ_{w_k>0} w_k L_k and its average."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from blendopt._warnings import warn
from blendopt.warnings import WeightSumWarning

# check_keys' messages: for a parameter, and for what the user's callable returned (loss_fn).
_KEY_MESSAGES = {
    False: (
        "Parameter `{name}` should be a mapping head -> float. Found {found}.",
        "Parameter `{name}` has no weight for head {head!r}; give one for every head {heads}.",
        "Parameter `{name}` names the unknown head {head!r}; add it to `heads` or drop it.",
    ),
    True: (
        "`{name}` should return a mapping head -> value. Found {found}.",
        "`{name}` returned no value for head {head!r} (heads: {heads}). Return a value for "
        "every head.",
        "`{name}` returned the unknown head {head!r} (heads: {heads}); add it to `heads` or drop "
        "it from the returned mapping.",
    ),
}


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a ``ValueError`` naming ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        options = " or ".join(repr(c) for c in choices)
        raise ValueError(f"Parameter `{name}` should be {options}. Found {value!r}.")


def check_count(name: str, value: object, unit: str = "") -> int:
    """``value`` if it is an int >= 1, else a ``ValueError`` naming ``name`` (and ``unit``)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Parameter `{name}` should be an int >= 1{unit}. Found {value!r}.")
    return value


def check_heads(heads: Sequence[str]) -> list[str]:
    """``heads`` as a list, checked to be a non-empty sequence of distinct strings."""
    if isinstance(heads, str) or not isinstance(heads, Sequence):
        raise TypeError(
            "Parameter `heads` should be a list of head names, e.g. ['rgb', 'audio', "
            f"'fused']. Found {heads!r}."
        )
    heads = list(heads)
    if not heads:
        raise ValueError("Parameter `heads` should name at least one head. Found an empty list.")
    for h in heads:
        if not isinstance(h, str):
            raise TypeError(f"Parameter `heads` should hold strings. Found {h!r}.")
    duplicates = sorted({h for h in heads if heads.count(h) > 1})
    if duplicates:
        raise ValueError(f"Parameter `heads` names {duplicates[0]!r} twice; name each head once.")
    return heads


def check_keys(
    values: Mapping[str, Any], heads: Sequence[str], name: str, *, returned: bool = False
) -> None:
    """Raise unless ``values`` maps exactly ``heads`` (``returned``: ``name`` is a callable)."""
    wrong_type, no_value, unknown = _KEY_MESSAGES[returned]
    if not isinstance(values, Mapping):
        raise TypeError(wrong_type.format(name=name, found=type(values).__name__))
    missing = [h for h in heads if h not in values]
    if missing:
        raise ValueError(no_value.format(name=name, head=missing[0], heads=list(heads)))
    extra = [h for h in values if h not in heads]
    if extra:
        raise ValueError(unknown.format(name=name, head=extra[0], heads=list(heads)))


def check_weights(
    weights: Mapping[str, float],
    heads: Sequence[str],
    name: str = "weights",
    *,
    warn_sum: bool = False,
) -> dict[str, float]:
    """One finite weight >= 0 per head, not all 0 (``warn_sum``: warn unless they sum to 1)."""
    check_keys(weights, heads, name)
    out = {}
    for h in heads:
        try:
            w = float(weights[h])
        except (TypeError, ValueError):
            raise TypeError(
                f"Parameter `{name}` should map head {h!r} to a number. Found {weights[h]!r}."
            ) from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(
                f"Parameter `{name}` has the weight {w} for head {h!r}; "
                "weights should be finite and >= 0."
            )
        out[h] = w
    if sum(out.values()) == 0:
        raise ValueError(
            f"Parameter `{name}` is 0 for every head; give at least one head a positive weight."
        )
    total = math.fsum(out.values())
    if warn_sum and not math.isclose(total, 1.0, rel_tol=1e-6, abs_tol=0.0):
        normalized = ", ".join(f"{h!r}: {w / total:.4g}" for h, w in out.items())
        warn(
            f"Parameter `{name}` sums to {total:.6g}, not 1: the blended loss, its gradient and "
            f"so the effective learning rate are scaled by {total:.6g} (exactly so with SGD). "
            f"They are used as given; to keep the optimizer's learning rate pass {{{normalized}}}. "
            "If the scaling is intended, filter blendopt.warnings.WeightSumWarning.",
            WeightSumWarning,
        )
    return out


class BlendWeights:
    """The weights in use, their (masked) blend and their time-average over steps."""

    def __init__(
        self, heads: Sequence[str], weights: Mapping[str, float], *, mask: bool = True
    ) -> None:
        self.heads = list(heads)
        self.mask = mask
        self._weights: dict[str, float] = {}
        self._active: list[int] = []
        self._cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._steps_weighted = dict.fromkeys(self.heads, 0.0)  # Σ w · steps, closed periods
        self._since = 0  # the step at which the weights in use took effect
        self._replace(weights)

    def _replace(self, weights: Mapping[str, float]) -> None:
        self._weights = {h: float(weights[h]) for h in self.heads}
        self._active = [
            i for i, h in enumerate(self.heads) if self._weights[h] > 0.0 or not self.mask
        ]
        self._cache.clear()

    @property
    def values(self) -> dict[str, float]:
        return dict(self._weights)

    @property
    def all_active(self) -> bool:
        return len(self._active) == len(self.heads)

    def set(self, weights: Mapping[str, float], *, step: int) -> None:
        """Use ``weights`` from optimizer step ``step`` on."""
        span = step - self._since
        if span > 0:
            for h in self.heads:
                self._steps_weighted[h] += self._weights[h] * span
        self._since = step
        self._replace(weights)

    def average(self, *, step: int) -> dict[str, float]:
        """Time-average of the weights over steps ``[0, step)``."""
        if step <= 0:
            return self.values
        span = max(step - self._since, 0)
        return {h: (self._steps_weighted[h] + self._weights[h] * span) / step for h in self.heads}

    def active_mask(self, device: torch.device) -> torch.Tensor:
        return self._tensor(device, torch.bool)

    def _tensor(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The blended heads' weights on ``device`` (``torch.bool``: which heads are blended)."""
        key = (device, dtype)
        if key not in self._cache:
            if dtype is torch.bool:
                values = [i in self._active for i in range(len(self.heads))]
            else:
                values = [self._weights[self.heads[i]] for i in self._active]
            self._cache[key] = torch.tensor(values, dtype=dtype, device=device)
        return self._cache[key]

    def blend(self, values: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_{k in blend} w_k L_k, every loss stacked and detached)`` in ``heads`` order."""
        active = _at_least_float32(torch.stack([values[i] for i in self._active]))
        blended = _weighted_sum(active, self._tensor(active.device, active.dtype))
        if self.all_active:
            return blended, active.detach()
        return blended, torch.stack([v.detach() for v in values])

    def state_dict(self) -> dict[str, Any]:
        return {
            "weights": [self._weights[h] for h in self.heads],
            "steps_weighted": [self._steps_weighted[h] for h in self.heads],
            "since": self._since,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._replace(dict(zip(self.heads, (float(w) for w in state_dict["weights"]), strict=True)))
        self._steps_weighted = dict(
            zip(self.heads, (float(s) for s in state_dict["steps_weighted"]), strict=True)
        )
        self._since = int(state_dict["since"])

    def __repr__(self) -> str:
        weights = ", ".join(f"{h!r}: {w:.4g}" for h, w in self._weights.items())
        return f"BlendWeights({{{weights}}}, mask={self.mask})"


def check_losses(
    losses: Mapping[str, torch.Tensor], heads: Sequence[str], head_set: frozenset[str]
) -> list[torch.Tensor]:
    """The per-head losses given to ``blend``, validated, in ``heads`` order."""
    if not isinstance(losses, Mapping):
        raise TypeError(
            "`backward` takes a dict head -> scalar loss tensor, e.g. {'rgb': loss_rgb, ...}. "
            f"Found {type(losses).__name__}."
        )
    if losses.keys() != head_set:
        extra = [h for h in losses if h not in head_set]
        missing = [h for h in heads if h not in losses]
        if extra:
            raise ValueError(
                f"Parameter `heads` should list every key of `losses`. Found extra key "
                f"{extra[0]!r}; add it to `heads` or drop it from `losses`."
            )
        raise ValueError(
            f"`losses` has no loss for head {missing[0]!r}. Pass a loss for every head in "
            f"{list(heads)} (a head can be switched off with weight 0)."
        )
    values = []
    for h in heads:
        loss = losses[h]
        if not isinstance(loss, torch.Tensor):
            raise TypeError(
                f"The loss of head {h!r} should be a tensor. Found {type(loss).__name__}."
            )
        if loss.ndim != 0:
            raise ValueError(
                f"The loss of head {h!r} should be a scalar. Found shape {tuple(loss.shape)}; "
                "reduce it (e.g. `.mean()`) before `backward`."
            )
        if not loss.requires_grad:
            raise ValueError(
                f"The loss of head {h!r} does not require grad: it was computed under "
                "torch.no_grad(), from detached outputs, or from frozen parameters only. "
                "Compute it from the model's outputs with grad enabled."
            )
        values.append(loss)
    return values


def _at_least_float32(values: torch.Tensor) -> torch.Tensor:
    return values.float() if values.dtype in (torch.float16, torch.bfloat16) else values


def _weighted_sum(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``values @ weights`` in their dtype, autocast off (bf16 rounded w = 0.630 to 0.6289)."""
    device_type = values.device.type
    try:
        autocast = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        autocast = torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
    if not autocast:
        return values @ weights
    with torch.autocast(device_type, enabled=False):
        return values @ weights
