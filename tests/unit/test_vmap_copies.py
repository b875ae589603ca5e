"""The vmap engine of Algorithm 1's copies against a hand-written lockstep loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import blendopt
from blendopt import retrain
from blendopt.retrain import CopyTraining, TrainPlan, VmapCopies, supports_vmap
from tests.helpers import HEADS, loss_fn, make_batches, make_model


def train_copies_vmap(
    model, heads, loss_fn, optimizer, batches, *, epochs=None, steps=None, seed=0, **kw
):
    """The vmap engine with the plan and training given as keywords (``all_heads``: every head
    ``loss_fn`` returns; ``seed``: the estimate's seed, from which the dropout stream's is
    derived)."""
    plan = TrainPlan(epochs, steps, kw.pop("per_epoch", None), seed=seed)
    every = list(kw.pop("all_heads", None) or heads)
    training = CopyTraining(loss_fn, batches, every, plan, optimizer=optimizer, **kw)
    return retrain.train_copies_vmap(model, heads, training)


def loop_copies(model, optimizer, batches, heads=HEADS, steps=None):
    """Reference: one deep copy per head, each trained on its own head's loss (Algorithm 1)."""
    copies = {h: copy.deepcopy(model) for h in heads}
    opts = {h: blendopt.retrain.clone_optimizer(optimizer, model, net) for h, net in copies.items()}
    for net in copies.values():
        net.train()
    for i, batch in enumerate(batches):
        if steps is not None and i >= steps:
            break
        for h, net in copies.items():
            opts[h].zero_grad(set_to_none=True)
            loss_fn(net, batch)[h].backward()
            opts[h].step()
    return copies


def assert_same_copies(expected, got: VmapCopies, atol=1e-5):
    assert list(got.models) == list(expected)
    for h, net in expected.items():
        state, other = net.state_dict(), got.models[h].state_dict()
        assert list(state) == list(other)
        for name in state:
            torch.testing.assert_close(other[name], state[name], atol=atol, rtol=1e-4, msg=name)


OPTIMIZERS = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "sgd-nesterov-wd": lambda p: torch.optim.SGD(
        p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01
    ),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adam-foreach-amsgrad": lambda p: torch.optim.Adam(p, lr=0.01, foreach=True, amsgrad=True),
    "adam-fused": lambda p: torch.optim.Adam(p, lr=0.01, fused=True),
    "sgd-maximize-fused": lambda p: torch.optim.SGD(
        p, lr=0.01, momentum=0.9, maximize=True, fused=True
    ),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.05),
    "rmsprop-centered": lambda p: torch.optim.RMSprop(p, lr=0.01, centered=True, momentum=0.5),
    "asgd": lambda p: torch.optim.ASGD(p, lr=0.05),
    "rprop": lambda p: torch.optim.Rprop(p, lr=0.01),
    "nadam": lambda p: torch.optim.NAdam(p, lr=0.01),
    "radam": lambda p: torch.optim.RAdam(p, lr=0.01),
    "adamax": lambda p: torch.optim.Adamax(p, lr=0.01),
    "adadelta": lambda p: torch.optim.Adadelta(p, lr=1.0),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_matches_lockstep_loop(name):
    model = make_model()
    opt = OPTIMIZERS[name](model.parameters())
    batches = make_batches(n_batches=6)
    expected = loop_copies(model, opt, batches)
    got = train_copies_vmap(model, HEADS, loss_fn, opt, batches, epochs=1)
    assert got.steps == 6
    assert got.nonfinite == dict.fromkeys(HEADS)
    assert_same_copies(expected, got)


def test_copies_moved_and_reference_untouched():
    model = make_model()
    before = copy.deepcopy(model.state_dict())
    model.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    got = train_copies_vmap(model, HEADS, loss_fn, opt, make_batches(), steps=3)
    assert not model.training
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], atol=0, rtol=0)
        assert model.get_parameter(name).grad is None
    # copy "a" moved its encoder and head, but not head "b" nor the fused layers
    a = got.models["a"]
    assert not torch.equal(a.enc_a[0].weight, model.enc_a[0].weight)
    assert torch.equal(a.head_b.weight, model.head_b.weight)
    assert torch.equal(a.head_fused[0].weight, model.head_fused[0].weight)
    assert opt.state == {}  # the user's optimizer has no state


def test_weight_decay_leaves_unreached_parameters_frozen():
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.5)
    got = train_copies_vmap(model, HEADS, loss_fn, opt, make_batches(), steps=4)
    assert torch.equal(got.models["b"].enc_a[0].weight, model.enc_a[0].weight)
    assert not torch.equal(got.models["fused"].enc_a[0].weight, model.enc_a[0].weight)


def test_param_groups_and_steps_and_per_epoch():
    model = make_model()
    opt = torch.optim.SGD(
        [
            {"params": list(model.enc_a.parameters()) + list(model.enc_b.parameters()), "lr": 0.2},
            {"params": list(model.head_a.parameters()) + list(model.head_b.parameters())},
            {"params": list(model.head_fused.parameters()), "weight_decay": 0.1},
        ],
        lr=0.05,
        momentum=0.9,
    )
    batches = make_batches(n_batches=3)
    got = train_copies_vmap(model, HEADS, loss_fn, opt, batches, steps=None, epochs=3, per_epoch=2)
    # three epochs of two batches = the batches 0,1,0,1,0,1
    expected = loop_copies(model, opt, [batches[0], batches[1]] * 3)
    assert got.steps == 6
    assert_same_copies(expected, got)


def test_batchnorm_running_stats_match_loop():
    model = make_model(batchnorm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = make_batches(n_batches=5)
    expected = loop_copies(model, opt, batches)
    got = train_copies_vmap(model, HEADS, loss_fn, opt, batches, epochs=1)
    assert_same_copies(expected, got)
    assert int(got.models["a"].enc_a[1].num_batches_tracked) == 5
    assert int(model.enc_a[1].num_batches_tracked) == 0


def test_dropout_draws_differ_per_copy_and_are_seeded():
    model = make_model(dropout=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = make_batches(n_batches=3)
    kw = {"epochs": 1, "all_heads": HEADS}
    one = train_copies_vmap(model, ["a", "b"], loss_fn, opt, batches, seed=1, **kw)
    two = train_copies_vmap(model, ["a", "b"], loss_fn, opt, batches, seed=1, **kw)
    other = train_copies_vmap(model, ["a", "b"], loss_fn, opt, batches, seed=2, **kw)
    assert_same_copies(one.models, two, atol=0)
    assert not torch.equal(one.models["a"].enc_a[0].weight, other.models["a"].enc_a[0].weight)
    # the loop without dropout differs from both (dropout did act)
    nodrop = loop_copies(model, opt, batches, heads=["a", "b"])
    assert not torch.allclose(nodrop["a"].enc_a[0].weight, one.models["a"].enc_a[0].weight)


@pytest.mark.parametrize("accelerator_path", [False, True])
def test_nonfinite_copy_is_flagged_and_masked_others_train_on(accelerator_path):
    # accelerator_path: mask every step without reading a flag, as on a GPU
    model = make_model()
    batches = make_batches(n_batches=4)
    xa, xb, y = batches[2]
    batches[2] = (xa, torch.full_like(xb, float("nan")), y)  # poisons heads b and fused
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    eager = not accelerator_path
    got = train_copies_vmap(model, HEADS, loss_fn, opt, batches, epochs=1, eager_checks=eager)
    assert got.nonfinite == {"a": None, "b": 2, "fused": 2}
    assert got.skipped == {"a": 1, "b": 0, "fused": 0}
    for h in HEADS:
        assert all(torch.isfinite(t).all() for t in got.models[h].state_dict().values())
    # copy a skipped the poisoned step (plain SGD: a zero gradient moves nothing) ...
    expected = loop_copies(model, opt, [batches[i] for i in (0, 1, 3)], heads=["a"])
    assert_same_copies(expected, VmapCopies({"a": got.models["a"]}))
    # ... and copies b and fused stopped at step 2
    expected = loop_copies(model, opt, batches[:2], heads=["b", "fused"])
    assert_same_copies(expected, VmapCopies({h: got.models[h] for h in ("b", "fused")}))
    with pytest.raises(FloatingPointError, match=r"Head 'b'.*step 2"):
        got.check_finite()
    assert "nonfinite=['b', 'fused']" in repr(got)


def test_diverging_copy_does_not_spoil_the_others():
    model = make_model()
    batches = make_batches(n_batches=6)
    groups = [
        {"params": list(model.enc_b.parameters()) + list(model.head_b.parameters()), "lr": 1e35},
        {"params": list(model.enc_a.parameters()) + list(model.head_a.parameters())},
        {"params": list(model.head_fused.parameters())},
    ]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)  # copies b and fused blow up
    got = train_copies_vmap(model, HEADS, loss_fn, opt, batches, epochs=1)
    assert got.nonfinite["a"] is None
    assert got.skipped["a"] == 0
    assert got.nonfinite["b"] is not None
    assert got.nonfinite["fused"] is not None
    assert_same_copies(
        loop_copies(model, opt, batches, heads=["a"]), VmapCopies({"a": got.models["a"]})
    )


def test_progress_bar(capsys):
    pytest.importorskip("tqdm")  # an optional dependency (the bench extra)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    got = train_copies_vmap(model, HEADS, loss_fn, opt, make_batches(), steps=2, progress=True)
    assert got.steps == 2
    assert "G-Blend estimate (vmap)" in capsys.readouterr().err


def test_optimizer_factory():
    model = make_model()
    batches = make_batches()
    expected = loop_copies(model, torch.optim.Adam(model.parameters(), lr=0.01), batches)
    got = train_copies_vmap(
        model, HEADS, loss_fn, lambda params: torch.optim.Adam(params, lr=0.01), batches, epochs=1
    )
    assert_same_copies(expected, got)


def test_blender_is_unwrapped():
    model = make_model()
    blender = blendopt.GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        HEADS,
        {"a": 0.25, "b": 0.25, "fused": 0.5},  # summing to 1 (else a WeightSumWarning)
    )
    batches = make_batches()
    expected = loop_copies(model, blender.optimizer, batches)
    assert supports_vmap(blender, model) == (True, "")
    assert_same_copies(
        expected, train_copies_vmap(model, HEADS, loss_fn, blender, batches, epochs=1)
    )


def test_bad_arguments():
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="exactly one of"):
        train_copies_vmap(model, HEADS, loss_fn, opt, make_batches())
    with pytest.raises(ValueError, match="distinct heads"):
        train_copies_vmap(model, ["a", "a"], loss_fn, opt, make_batches(), steps=1)
    with pytest.raises(ValueError, match="yielded no non-empty batch"):
        train_copies_vmap(model, HEADS, loss_fn, opt, [], epochs=1)
    with pytest.raises(ValueError, match="include every trained head"):
        train_copies_vmap(model, ["a", "c"], loss_fn, opt, make_batches(), steps=1, all_heads=HEADS)
    with pytest.raises(ValueError, match="unknown head"):
        train_copies_vmap(model, ["a", "b"], loss_fn, opt, make_batches(), steps=1)
    other = torch.optim.SGD(make_model(1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not in the model"):
        train_copies_vmap(model, HEADS, loss_fn, other, make_batches(), steps=1)
    with pytest.raises(TypeError, match="factory should return"):
        train_copies_vmap(model, HEADS, loss_fn, lambda p: None, make_batches(), steps=1)


class _ItemNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 3)

    def forward(self, xa, xb):
        z = self.lin(xa)
        if z.sum().item() > 0:  # data-dependent control flow: not vmappable
            z = -z
        return {"a": z, "b": z, "fused": z}


def test_supports_vmap_reasons():
    model = make_model()
    assert supports_vmap(torch.optim.Adam(model.parameters()), model) == (True, "")
    ok, why = supports_vmap(torch.optim.LBFGS(model.parameters()), model)
    assert not ok
    assert "LBFGS" in why

    class MySGD(torch.optim.SGD):
        pass

    ok, why = supports_vmap(MySGD(model.parameters(), lr=0.1), model)
    assert not ok
    assert "MySGD is not a known element-wise optimizer" in why
    ok, why = supports_vmap(lambda p: torch.optim.Adafactor(p), model)
    assert not ok
    assert "Adafactor" in why
    ok, why = supports_vmap(lambda p: 1 / 0, model)
    assert not ok
    assert "factory failed" in why
    ok, why = supports_vmap("adam", model)
    assert not ok
    assert "str" in why
    lazy = nn.Sequential(nn.LazyLinear(3))
    ok, why = supports_vmap(torch.optim.SGD(lazy.parameters(), lr=0.1), lazy)
    assert not ok
    assert "uninitialized" in why
    sparse = nn.Embedding(4, 2, sparse=True)
    ok, why = supports_vmap(torch.optim.SGD(sparse.parameters(), lr=0.1), sparse)
    assert not ok
    assert "sparse" in why
    sync = nn.Sequential(nn.Linear(2, 2), nn.SyncBatchNorm(2))
    ok, why = supports_vmap(torch.optim.SGD(sync.parameters(), lr=0.1), sync)
    assert not ok
    assert "SyncBatchNorm" in why
    batch = make_batches(1)[0]
    assert supports_vmap(
        torch.optim.SGD(model.parameters(), lr=0.1), model, loss_fn=loss_fn, batch=batch
    ) == (True, "")
    item = _ItemNet()
    ok, why = supports_vmap(
        torch.optim.SGD(item.parameters(), lr=0.1), item, loss_fn=loss_fn, batch=batch
    )
    assert not ok
    assert "does not run under vmap" in why
