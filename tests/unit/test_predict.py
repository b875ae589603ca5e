"""The weight-averaged ensemble predictor."""

import pytest
import torch

from blendopt import BlendEnsemble
from blendopt.functional import ensemble_probabilities
from tests.helpers import make_model


def test_ensemble_is_the_weighted_mean_of_head_probabilities():
    logits = {
        "a": torch.tensor([[2.0, 0.0]]),
        "b": torch.tensor([[0.0, 1.0]]),
        "fused": torch.tensor([[5.0, 5.0]]),
    }
    p = ensemble_probabilities(logits, {"a": 0.75, "b": 0.25, "fused": 0.0})
    pa, pb = torch.softmax(logits["a"], -1), torch.softmax(logits["b"], -1)
    torch.testing.assert_close(p, 0.75 * pa + 0.25 * pb)
    torch.testing.assert_close(p.sum(-1), torch.ones(1))


def test_weights_need_not_sum_to_one_and_sigmoid_for_multilabel():
    logits = {"a": torch.tensor([[0.0, 2.0]]), "b": torch.tensor([[1.0, -1.0]])}
    p = ensemble_probabilities(logits, {"a": 2.0, "b": 2.0}, activation="sigmoid")
    torch.testing.assert_close(p, (torch.sigmoid(logits["a"]) + torch.sigmoid(logits["b"])) / 2)


def test_zero_weight_head_may_be_absent():
    p = ensemble_probabilities({"a": torch.zeros(1, 3)}, {"a": 1.0, "fused": 0.0})
    torch.testing.assert_close(p, torch.full((1, 3), 1 / 3))


@pytest.mark.parametrize(
    ("logits", "weights", "match"),
    [
        ({"a": torch.zeros(1, 2)}, {"a": 0.0}, "weight > 0"),
        ({"a": torch.zeros(1, 2)}, {"a": 1.0, "b": 0.5}, "no output for head 'b'"),
        ({"a": torch.zeros(1, 2), "b": torch.zeros(1, 3)}, {"a": 1.0, "b": 1.0}, "share one shape"),
    ],
)
def test_bad_inputs_raise(logits, weights, match):
    with pytest.raises(ValueError, match=match):
        ensemble_probabilities(logits, weights)


def test_blend_ensemble_module():
    model = make_model().eval()
    ens = BlendEnsemble(model, {"a": 0.5, "b": 0.0, "fused": 0.5})
    xa, xb = torch.randn(4, 6), torch.randn(4, 5)
    out = model(xa, xb)
    expected = 0.5 * torch.softmax(out["a"], -1) + 0.5 * torch.softmax(out["fused"], -1)
    torch.testing.assert_close(ens(xa, xb), expected)
    assert "weights={'a': 0.5, 'b': 0.0, 'fused': 0.5}" in repr(ens)


def test_from_optimizer_uses_the_average_weights_by_default_and_the_last_on_request():
    from blendopt import GradientBlender
    from tests.helpers import HEADS, loss_fn, make_batches

    model = make_model()
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, weights=None)
    opt.set_weights({"a": 1.0, "b": 0.0, "fused": 0.0})
    for i, batch in enumerate(make_batches(4)):
        if i == 3:
            opt.set_weights({"a": 0.0, "b": 0.0, "fused": 1.0})
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()
    # 3 steps on head a alone, 1 on fused alone: average (0.75, 0, 0.25); last one-hot fused.
    averaged = BlendEnsemble.from_optimizer(model, opt)
    assert averaged.weights == pytest.approx({"a": 0.75, "b": 0.0, "fused": 0.25})
    last = BlendEnsemble.from_optimizer(model, opt, weights="last")
    assert last.weights == {"a": 0.0, "b": 0.0, "fused": 1.0}
    x = make_batches(1)[0]
    logits = model(x[0], x[1])
    torch.testing.assert_close(
        averaged(x[0], x[1]),
        0.75 * torch.softmax(logits["a"], -1) + 0.25 * torch.softmax(logits["fused"], -1),
    )
    with pytest.raises(ValueError, match="'average' or 'last'"):
        BlendEnsemble.from_optimizer(model, opt, weights="first")
    with pytest.raises(TypeError, match="GradientBlender"):
        BlendEnsemble.from_optimizer(model, torch.optim.SGD(model.parameters(), lr=0.1))
