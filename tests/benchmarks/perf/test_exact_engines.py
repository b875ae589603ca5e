"""Smoke test of the exact-engine comparison (the timings themselves are benchmark results)."""

import pytest
import torch

from benchmarks.perf.exact_engines import build_case, compare, loop_engine, main, vmap_engine


def test_both_engines_give_the_same_copies():
    case = build_case("synthetic_av")  # no dropout: the engines agree to float tolerance
    torch.manual_seed(0)  # the same shuffled batches for both
    loop = loop_engine(case, 2)
    torch.manual_seed(0)
    vmap = vmap_engine(case, 2)
    for head in case.heads:
        a, b = loop[head].state_dict(), vmap[head].state_dict()
        for name, value in a.items():
            assert (b[name] - value).abs().max() < 1e-4, (head, name)


def test_compare_and_cli(capsys):
    row = compare(build_case("synthetic_av"), rounds=1, steps=1)
    assert row["loop_ms"] > 0
    assert row["vmap_ms"] > 0
    assert 0 < row["measure_share_loop"] < 1
    main(["--datasets", "synthetic_av", "--rounds", "1", "--steps", "1"])
    out = capsys.readouterr().out
    assert "synthetic_av" in out
    assert out.rstrip().endswith(("loop", "vmap"))


def test_time_engines_and_choose_engine(monkeypatch):
    # moved from tests/unit/test_vmap_copies.py with the timing code (the library no longer
    # times engines: engine="auto" is the loop)
    import copy

    from benchmarks.perf import exact_engines
    from tests.helpers import HEADS, loss_fn, make_batches, make_model

    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = copy.deepcopy(model.state_dict())
    batch = make_batches(1)[0]
    times = exact_engines.time_engines(model, opt, loss_fn, batch, HEADS, steps=2, repeats=2)
    assert set(times) == {"loop", "vmap"}
    assert all(t > 0 for t in times.values())
    with pytest.raises(ValueError, match="'gpu'"):
        exact_engines.time_engines(model, opt, loss_fn, batch, HEADS, engines=("gpu",))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, before[name], atol=0, rtol=0)
    lbfgs = torch.optim.LBFGS(model.parameters())
    assert exact_engines.choose_engine(model, lbfgs, loss_fn, batch, HEADS) == "loop"
    for loop_s, vmap_s, expected in ((1.0, 0.5, "vmap"), (1.0, 0.95, "loop"), (1.0, 2.0, "loop")):
        monkeypatch.setattr(
            exact_engines,
            "time_engines",
            lambda *a, t=(loop_s, vmap_s), **k: {"loop": t[0], "vmap": t[1]},
        )
        assert exact_engines.choose_engine(model, opt, loss_fn, batch, HEADS) == expected
