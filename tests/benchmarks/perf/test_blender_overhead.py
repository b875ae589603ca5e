"""Smoke test of the per-step overhead measurement (the ratio itself is a benchmark result)."""

import torch

from benchmarks.perf._overhead import make_steps
from benchmarks.perf.blender_overhead import main, measure


def test_both_steps_train_identical_models_identically():
    pair = make_steps(batch=8)
    for _ in range(3):
        pair.naive()
        pair.blend()
    for p, q in zip(pair.naive_model.parameters(), pair.blend_model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_measure_and_cli(capsys):
    ratios = measure(rounds=6, batch=8)
    assert len(ratios) == 6
    assert all(r > 0 for r in ratios)
    main(["--rounds", "20", "--batch", "8"])
    assert "median" in capsys.readouterr().out
