"""The harnesses that run PyTorch's and Lightning's own tests with wrapped optimizers."""

from __future__ import annotations

import sys

import pytest
import pytorch_lightning
import torch

from blendopt import GradientBlender
from tests.torch_optim import lightning_upstream


def test_stand_in_class_builds_a_blender_around_an_instance_of_itself():
    stand_in = lightning_upstream.wrapping_class(torch.optim.SGD)
    assert (stand_in.__name__, stand_in.__qualname__) == ("SGD", "SGD")
    assert issubclass(stand_in, torch.optim.SGD)
    params = [torch.nn.Parameter(torch.ones(2))]
    blender = stand_in(params, lr=0.5, momentum=0.9)
    assert isinstance(blender, GradientBlender)
    assert type(blender.optimizer) is stand_in  # `mock.patch("torch.optim.SGD.step")` reaches it
    assert blender.param_groups[0]["lr"] == 0.5
    assert blender.weights == {"x": 1.0}


def test_lightning_names_map_to_the_standalone_modules():
    finder = lightning_upstream._StandaloneAlias()
    sys.meta_path.insert(0, finder)
    try:
        import lightning.pytorch.callbacks as aliased
        from lightning.fabric.utilities import exceptions

        assert aliased is pytorch_lightning.callbacks
        assert exceptions is sys.modules["lightning_fabric.utilities.exceptions"]
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "lightning" or n.startswith("lightning.")]:
            del sys.modules[name]


def test_lightning_harness_wants_a_tests_pytorch_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        lightning_upstream.main([str(tmp_path)])
    assert "is not Lightning's tests/tests_pytorch folder" in capsys.readouterr().err
