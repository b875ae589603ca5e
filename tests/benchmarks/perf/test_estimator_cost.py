"""Smoke test of the estimator-cost modes (the timings themselves are benchmark results)."""

import pytest
import torch

from benchmarks.perf._estimator_cost import MODES, make_setup, per_step_ratios, run_modes


def test_every_mode_trains_an_epoch_and_the_exact_ones_estimate():
    setup = make_setup(batches=3, batch=16, hidden=16, holdout_batches=1)
    before = {k: v.clone() for k, v in setup.model.state_dict().items()}
    for mode in MODES:
        epoch = MODES[mode](setup)
        epoch()
        epoch()
        blender = getattr(epoch, "blender", None)
        if mode.startswith("exact"):
            assert len(blender.history) == 2  # an estimate at each epoch boundary
    for k, v in setup.model.state_dict().items():  # every mode trains its own copy
        torch.testing.assert_close(v, before[k], atol=0, rtol=0)


def test_vmap_estimator_gives_the_loop_estimators_weights():
    setup = make_setup(batches=4, batch=16, hidden=16, holdout_batches=1)
    loop, vmap = MODES["exact-online-loop"](setup), MODES["exact-online-vmap"](setup)
    for _ in range(2):
        loop()
        vmap()
    for a, b in zip(loop.blender.history, vmap.blender.history, strict=True):
        for h, w in a["weights"].items():
            assert b["weights"][h] == pytest.approx(w, abs=1e-4)


def test_run_modes_and_ratios():
    setup = make_setup(batches=2, batch=8, hidden=8, holdout_batches=1)
    seconds = run_modes(setup, ["plain", "fixed"], rounds=2)
    assert {m: len(v) for m, v in seconds.items()} == {"plain": 2, "fixed": 2}
    rows = per_step_ratios({"plain": 2.0, "fixed": 3.0}, steps=4)
    assert rows == [("plain", 500.0, 1.0), ("fixed", 750.0, 1.5)]
