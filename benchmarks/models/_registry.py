"""Name -> builder registry for the suite's models (``create``, ``list_models``)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["create", "get_builder", "list_models", "register_model"]

BuilderT = TypeVar("BuilderT", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(
    name: str | None = None,
) -> Callable[[BuilderT], BuilderT]:
    """Decorator that registers a keyword-only model builder under ``name``.

    Without ``name`` the builder's ``__name__`` is used. Registering a name twice raises
    ``ValueError`` (a silent overwrite would make ``create`` depend on import order).
    """
    if name is not None and not isinstance(name, str):
        raise TypeError(
            f"Parameter `name` of `register_model` should be a str or None. Found "
            f"{type(name).__name__}; did you write `@register_model` where "
            f"`@register_model()` was meant?"
        )

    def decorator(builder: BuilderT) -> BuilderT:
        key = builder.__name__ if name is None else name
        if key in _REGISTRY:
            raise ValueError(
                f"Model name {key!r} is already registered (by "
                f"{_REGISTRY[key].__module__}.{_REGISTRY[key].__qualname__}); pick another "
                f"name or remove the earlier registration."
            )
        _REGISTRY[key] = builder
        return builder

    return decorator


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(
        f"Parameter `name` names no registered model: found {name!r}.{hint} "
        f"`benchmarks.models.list_models()` lists all {len(_REGISTRY)} names."
    )


def get_builder(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name`` (``ValueError`` with close names if unknown)."""
    if not isinstance(name, str):
        raise TypeError(f"Parameter `name` should be a str. Found {type(name).__name__}.")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown(name) from None


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments passed to its builder.

    Example: ``create("r2plus1d_18", num_classes=400, in_channels=2)``.
    """
    return get_builder(name)(**kwargs)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching the shell-style ``pattern`` (``"r3d_*"``)."""
    if not isinstance(pattern, str):
        raise TypeError(f"Parameter `pattern` should be a str. Found {type(pattern).__name__}.")
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))
