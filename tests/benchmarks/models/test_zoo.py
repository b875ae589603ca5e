"""Every registered model: forward and backward on a tiny CPU input, shapes, ``output_dim``
of every part, gradient reach."""

import pytest
import torch
from torch import nn

from benchmarks.models import create, list_models


def _capture(model: nn.Module) -> dict[str, tuple[nn.Module, tuple, object]]:
    """Forward hooks recording (module, inputs, output) of the parts that expose a width."""
    seen: dict[str, tuple[nn.Module, tuple, object]] = {}
    parts: dict[str, nn.Module] = {}
    if isinstance(getattr(model, "fusion", None), nn.Module):
        parts["fusion"] = model.fusion
    for name, enc in getattr(model, "encoders", {}).items():
        parts[f"encoder {name}"] = enc
    for attr in ("visual", "audio"):
        if isinstance(getattr(model, f"{attr}_head", None), nn.Linear):
            parts[f"{attr} head"] = getattr(model, f"{attr}_head")
    if isinstance(getattr(model, "fc", None), nn.Linear):
        parts["fc"] = model.fc
    for key, module in parts.items():

        def hook(module, args, output, key=key):
            seen[key] = (module, args, output)

        module.register_forward_hook(hook)
    return seen


def _check_widths(model: nn.Module, seen) -> None:
    for key, (module, args, output) in seen.items():
        if key == "fusion":
            if isinstance(output, tuple):  # SEGate: both gated streams
                assert tuple(o.shape[1] for o in output) == module.output_dim
            else:
                assert output.shape[1] == module.output_dim
        elif key.startswith("encoder"):
            assert output.shape == (2, module.output_dim), key
        elif key == "fc":
            assert args[0].shape == (2, model.output_dim)
        else:  # uni-modal heads of a mid-fusion model
            backbone = getattr(model, key.split()[0])
            assert args[0].shape == (2, backbone.output_dim), key


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create(name)
    seen = _capture(model)
    inputs = model.example_input("tiny", batch_size=2)
    out = model(inputs)
    if isinstance(out, dict):
        assert list(out) == model.head_names
        assert "fusion" in seen
        for head, logits in out.items():
            assert logits.shape == (2, model.num_classes), head
        loss = sum(logits.mean() for logits in out.values())
    else:
        width = model.num_classes if getattr(model, "num_classes", 0) else model.output_dim
        assert "fc" in seen or not hasattr(model, "fc")
        assert out.shape == (2, width)
        loss = out.mean()
    _check_widths(model, seen)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient reaches {missing[:5]} ({len(missing)} in all)"


@pytest.mark.parametrize("name", ["r3d_10", "audio_resnet_18"])
def test_backbone_output_dim_is_the_pooled_width(name):
    model = create(name, num_classes=0)
    assert model(model.example_input()).shape == (2, model.output_dim)
