"""Smoke test of the exact-engine comparison (the timings themselves are benchmark results)."""

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
