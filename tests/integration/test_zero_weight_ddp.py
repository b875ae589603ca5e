"""Heads at weight 0 under DDP: masked (needs find_unused_parameters) or kept as 0·L."""

import warnings

import pytest
import torch
import torch.distributed as dist

from blendopt import GradientBlender
from tests.helpers import HEADS, loss_fn, make_batches, make_model

ZERO_HEAD = {"a": 0.0, "b": 0.4, "fused": 0.6}


def _train(find_unused, mask):
    model = make_model(seed=0)
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)
    opt = GradientBlender(
        torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9),
        HEADS,
        ZERO_HEAD,
        mask_zero_weights=mask,
    )
    try:
        for batch in make_batches(3):
            opt.zero_grad()
            opt.backward(loss_fn(ddp, batch))
            opt.step()
    except RuntimeError as error:
        return str(error)
    return "ok"


@pytest.mark.slow
def test_zero_weight_heads_under_ddp(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # DDP's own notes on unused params
            masked_unused = _train(find_unused=True, mask=True)
            kept_default = _train(find_unused=False, mask=False)
            masked_default = _train(find_unused=False, mask=True)
    finally:
        dist.destroy_process_group()
    assert masked_unused == "ok"
    assert kept_default == "ok"
    # Why the docs name the two options: a masked head's parameters get no gradient, which
    # default DDP refuses at the next iteration.
    assert "find_unused_parameters" in masked_default
