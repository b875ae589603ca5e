"""Per-head measurement over a loader."""

import pytest
import torch

from blendopt import measure, top1_error
from blendopt._measure import is_empty_batch, measure_counted
from blendopt.functional import batch_size_of
from tests.helpers import HEADS, loss_fn, make_batches, make_model, predict


def test_batch_size_of_nested_batches():
    assert batch_size_of((torch.zeros(7, 3), torch.zeros(7))) == 7
    assert batch_size_of({"x": {"rgb": torch.zeros(5, 2)}, "y": torch.zeros(5)}) == 5
    assert batch_size_of([torch.tensor(1.0), torch.zeros(4)]) == 1
    assert batch_size_of("no tensors") == 1


def test_scalar_values_are_weighted_by_batch_size():
    batches = [(torch.full((3,), 1.0),), (torch.full((1,), 5.0),)]
    model = torch.nn.Identity()
    got = measure(model, lambda m, b: {"h": b[0].mean()}, batches, ["h"])
    assert got == {"h": pytest.approx(2.0)}  # (3*1 + 1*5) / 4, not (1 + 5) / 2


def test_per_sample_values_and_top1_error_are_exact():
    model = make_model()
    batches = make_batches(3, batch=10)
    err = measure(model, top1_error(predict), batches, HEADS)
    with torch.no_grad():
        model.eval()
        wrong = {
            h: sum(int((model(xa, xb)[h].argmax(-1) != y).sum()) for xa, xb, y in batches)
            for h in HEADS
        }
    assert err == pytest.approx({h: wrong[h] / 30 for h in HEADS})


def test_measure_uses_eval_mode_and_restores_the_mode():
    model = make_model(dropout=0.9).train()
    batches = make_batches(2)
    first = measure(model, loss_fn, batches, HEADS)
    assert first == measure(model, loss_fn, batches, HEADS)  # dropout off: deterministic
    assert model.training


def test_measure_errors_name_the_head():
    model = make_model()
    with pytest.raises(ValueError, match="no value for head 'fused'"):
        measure(model, lambda m, b: {"a": 1.0, "b": 1.0}, make_batches(1), HEADS)
    with pytest.raises(ValueError, match="shape \\(2, 2\\) for head 'a'"):
        measure(model, lambda m, b: dict.fromkeys(HEADS, torch.zeros(2, 2)), make_batches(1), HEADS)
    with pytest.raises(ValueError, match="empty"):
        measure(model, loss_fn, [], HEADS)


def test_empty_batches_are_skipped_and_counted():
    model = make_model()
    batches = make_batches(3, batch=10)
    empty = (torch.empty(0, 6), torch.empty(0, 5), torch.empty(0, dtype=torch.long))

    def strict(m, b):
        if b[2].numel() == 0:
            raise RuntimeError("the model got an empty batch")
        return loss_fn(m, b)

    with_empty = [empty, batches[0], empty, *batches[1:]]
    assert measure(model, strict, with_empty, HEADS) == measure(model, strict, batches, HEADS)
    values, skipped = measure_counted(model, strict, with_empty, HEADS)
    assert skipped == 2
    assert values == measure(model, strict, batches, HEADS)
    with pytest.raises(ValueError, match=r"empty \(2 empty batches skipped\)"):
        measure(model, strict, [empty, empty], HEADS)


def test_is_empty_batch():
    assert is_empty_batch(({}, torch.empty(0), torch.empty(0, dtype=torch.long)))
    assert not is_empty_batch((torch.zeros(1, 3),))
    assert not is_empty_batch("no tensors")
    assert not is_empty_batch(torch.tensor(0.0))  # a scalar is not a batch of 0
