"""Every registered model: forward and backward on a tiny CPU input, shapes, gradient reach."""

import pytest
import torch

from benchmarks.models import create, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create(name)
    inputs = model.example_input("tiny", batch_size=2)
    out = model(inputs)
    if isinstance(out, dict):
        assert list(out) == model.head_names
        for head, logits in out.items():
            assert logits.shape == (2, model.num_classes), head
        loss = sum(logits.mean() for logits in out.values())
    else:
        width = model.num_classes if getattr(model, "num_classes", 0) else model.output_dim
        assert out.shape == (2, width)
        loss = out.mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing, f"no gradient reaches {missing[:5]} ({len(missing)} in all)"


@pytest.mark.parametrize("name", [*list_models("r3d_*")[:1], "audio_resnet_18"])
def test_backbone_output_dim_is_the_pooled_width(name):
    model = create(name, num_classes=0)
    assert model(model.example_input()).shape == (2, model.output_dim)
