"""RollingEstimator: per-head gradient inner products, Proposition 1 weights, noise rules."""

import warnings

import numpy as np
import pytest
import torch

import blendopt
from blendopt import (
    EstimateRequest,
    GradientBlender,
    GradientMode,
    LossMode,
    Online,
    RollingEstimator,
)
from blendopt.functional import correlated_blend, optimal_blend
from tests.helpers import HEADS, loss_fn, make_batches, make_model


def _request(weights=None, heads=HEADS):
    sgd = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return EstimateRequest(
        heads=tuple(heads),
        optimizer=sgd,
        horizon=None,
        unit="step",
        index=1,
        weights=weights or blendopt.functional.uniform_weights(heads),
    )


def _with_rows(rows, **kwargs):
    est = RollingEstimator(make_model(), loss_fn, make_batches(1), **kwargs)
    est._heads = list(HEADS)
    est.strategy._rows = [list(map(float, r)) for r in rows]
    return est


def _flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


def _reference_row(model, params, train, holdout, probe=None):
    """The measurement by plain autograd: whole gradient vectors over each head's ``params``,
    then ⟨∇L^V, v⟩ and ⟨∇L^T - ∇L^V, v⟩ (``∇L^T = v`` without a probe)."""
    model.eval()
    hl = loss_fn(model, holdout)
    pl = None if probe is None else loss_fn(model, probe)
    model.train()
    losses = loss_fn(model, train)
    gains, overs = [], []
    for h in HEADS:
        v = _flat(torch.autograd.grad(losses[h], params[h], retain_graph=True))
        gv = _flat(torch.autograd.grad(hl[h], params[h], retain_graph=True))
        gt = v if pl is None else _flat(torch.autograd.grad(pl[h], params[h], retain_graph=True))
        gains.append(float(gv @ v))
        overs.append(float((gt - gv) @ v))
    return gains + overs


@pytest.mark.parametrize("scope", ["private", "all"])
def test_inner_products_match_plain_autograd(scope):
    model = make_model(seed=1)
    train, holdout, probe = (
        make_batches(1, seed=2)[0],
        make_batches(1, seed=3),
        make_batches(1, seed=4),
    )
    est = RollingEstimator(
        model, loss_fn, holdout, probe=probe, mode=GradientMode(interval=1, params=scope)
    )
    losses = loss_fn(model, train)
    est.observe(losses, step=0)

    # Reference: whole gradient vectors over each head's parameter set, then dot products.
    private = {
        "a": list(model.head_a.parameters()),
        "b": list(model.head_b.parameters()),
        "fused": list(model.head_fused.parameters()),
    }
    every = {
        "a": [*model.enc_a.parameters(), *model.head_a.parameters()],
        "b": [*model.enc_b.parameters(), *model.head_b.parameters()],
        "fused": [
            *model.enc_a.parameters(),
            *model.enc_b.parameters(),
            *model.head_fused.parameters(),
        ],
    }
    params = private if scope == "private" else every
    expected = _reference_row(model, params, train, holdout[0], probe[0])
    row = est.strategy._rows[0]
    assert row[:3] == pytest.approx(expected[:3], rel=1e-5)
    assert row[3:] == pytest.approx(expected[3:], rel=1e-5)
    scopes = {h: len(s) for h, s in est.strategy._scopes.items()}
    assert scopes == {h: len(params[h]) for h in HEADS}


class _LogitFusion(torch.nn.Module):
    """The fused head reads the two modality heads' logits: neither modality head has a
    private parameter, so their scopes (the fallback) are reached by the fused loss too."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.rgb = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        )
        self.audio = torch.nn.Sequential(
            torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        )
        self.fused = torch.nn.Linear(6, 3)

    def forward(self, xa, xb):
        za, zb = self.rgb(xa), self.audio(xb)
        return {"a": za, "b": zb, "fused": self.fused(torch.cat([za, zb], 1))}


@pytest.mark.parametrize("with_probe", [False, True])
def test_shared_fallback_scopes_take_each_heads_own_gradient(with_probe):
    model = _LogitFusion()
    train, holdout, probe = (
        make_batches(1, seed=2)[0],
        make_batches(1, seed=3),
        make_batches(1, seed=4),
    )
    est = RollingEstimator(
        model, loss_fn, holdout, probe=probe if with_probe else None, mode=GradientMode(interval=1)
    )
    est.observe(loss_fn(model, train), step=0)

    scopes = {"a": model.rgb, "b": model.audio, "fused": model.fused}
    params = {h: list(scopes[h].parameters()) for h in HEADS}
    expected = _reference_row(model, params, train, holdout[0], probe[0] if with_probe else None)
    row = est.strategy._rows[0]
    assert row[:3] == pytest.approx(expected[:3], rel=1e-5)
    assert row[3:] == pytest.approx(expected[3:], rel=1e-5)
    assert est.strategy._shortcut == ["fused"]  # "a" and "b" are reached by the fused loss


def test_without_probe_the_training_gradient_stands_for_grad_lt():
    model = make_model(seed=1)
    train, holdout = make_batches(1, seed=2)[0], make_batches(1, seed=3)
    est = RollingEstimator(model, loss_fn, holdout, mode=GradientMode(interval=1))
    est.observe(loss_fn(model, train), step=0)
    model.eval()
    hl = loss_fn(model, holdout[0])
    model.train()
    losses = loss_fn(model, train)
    p = list(model.head_a.parameters())
    v, gv = _flat(torch.autograd.grad(losses["a"], p)), _flat(torch.autograd.grad(hl["a"], p))
    assert est.strategy._rows[0][0] == pytest.approx(float(gv @ v), rel=1e-5)
    assert est.strategy._rows[0][3] == pytest.approx(
        float((v - gv) @ v), rel=1e-5
    )  # |v|² - <gV, v>


def test_diagonal_weights_are_proposition_1_by_hand():
    rows = [[1.0, 2.0, 0.5, 1.0, 1.0, 0.5], [3.0, 2.0, 0.5, -1.0, 1.0, 0.5]]
    est = _with_rows(
        rows, mode=GradientMode(min_measurements=2), shrink=False, floor=0.0, smoothing=0.0
    )
    out = est.estimate(_request())
    # mean gains (2, 2, 0.5), E[o²] (1, 1, 0.25) -> 2/1, 2/1, 0.5/0.25 = 2, 2, 2 -> 1/3 each
    assert out.weights == pytest.approx(dict.fromkeys(HEADS, 1 / 3))
    assert list(out.weights.values()) == pytest.approx(
        optimal_blend([2.0, 2.0, 0.5], [1.0, 1.0, 0.25]).tolist()
    )
    assert out.generalization == pytest.approx({"a": 2.0, "b": 2.0, "fused": 0.5})
    assert out.overfitting_change == pytest.approx({"a": 0.0, "b": 1.0, "fused": 0.5})
    assert out.generalization_se["a"] == pytest.approx(1.0)  # std(1, 3) / sqrt(2)
    assert out.generalization_se["b"] == 0.0


def test_a_noisy_sigma_squared_shrinks_the_weight():
    # every gain 1 (SE 0); o of head a is 1, 1, 3, 3: 2o² = 2, 2, 18, 18, mean 10, block means
    # (2 blocks of 2) 2 and 18, SE std(2, 18) / sqrt(2) = 8 -> reliability 1 - 0.64 = 0.36.
    # b and fused: o = 1 exactly (σ² = 2, SE 0). Raw g/σ²: 0.1, 0.5, 0.5 -> /1.1.
    rows = [[1.0, 1.0, 1.0, o, 1.0, 1.0] for o in (1.0, 1.0, 3.0, 3.0)]
    est = _with_rows(rows, mode=GradientMode(min_measurements=4), floor=0.0, smoothing=0.0)
    out = est.estimate(_request())
    raw_a, raw_b = 0.1 / 1.1, 0.5 / 1.1
    a = 0.36 * raw_a + 0.64 / 3  # pulled toward the uniform prior by σ²'s noise alone
    total = a + 2 * raw_b
    assert out.weights == pytest.approx(
        {"a": a / total, "b": raw_b / total, "fused": raw_b / total}
    )
    assert out.raw_weights == pytest.approx({"a": raw_a, "b": raw_b, "fused": raw_b})
    assert out.generalization_se == {"a": 0.0, "b": 0.0, "fused": 0.0}
    assert any("weight within noise" in n for n in out.notes)


def test_correlated_weights_match_appendix_c():
    rng = np.random.default_rng(0)
    g = rng.normal(1.0, 0.2, (20, 3))
    o = rng.normal(0.0, 1.0, (20, 3)) @ np.array([[1, 0.5, 0], [0, 1, 0.3], [0, 0, 1]])
    est = _with_rows(
        np.hstack([g, o]),
        mode=GradientMode(window=20, correlated=True),
        shrink=False,
        floor=0.0,
        smoothing=0.0,
    )
    out = est.estimate(_request())
    sigma = o.T @ o / 20
    expected = correlated_blend(g.mean(0), sigma + 1e-6 * np.trace(sigma) / 3 * np.eye(3))
    expected = np.clip(expected, 0, None) / np.clip(expected, 0, None).sum()
    assert list(out.weights.values()) == pytest.approx(expected.tolist(), rel=1e-6)


def test_pure_noise_windows_stay_near_the_prior_never_one_hot():
    rng = np.random.default_rng(1)
    worst = []
    for _ in range(50):
        rows = np.hstack([rng.normal(0, 1, (16, 3)), rng.normal(0, 1, (16, 3))])
        est = _with_rows(rows, smoothing=0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", blendopt.BlendWarning)
            out = est.estimate(_request())
        worst.append(max(out.weights.values()))
        raw = _with_rows(rows, shrink=False, floor=0.0, smoothing=0.0).estimate(_request())
        worst_raw = max(raw.weights.values())
        assert worst_raw >= worst[-1] - 1e-9
    assert max(worst) < 0.8
    assert np.median(worst) < 0.45


def test_a_clear_signal_wins_and_the_floor_keeps_every_head():
    rng = np.random.default_rng(2)
    gains = rng.normal([1.0, -0.5, 0.1], 0.05, (16, 3))
    overs = rng.normal([0.1, 2.0, 1.0], 0.05, (16, 3))
    out = _with_rows(np.hstack([gains, overs]), smoothing=0.0).estimate(_request())
    assert out.weights["a"] > 0.85
    assert min(out.weights.values()) >= 0.05 - 1e-12
    assert out.raw_weights["b"] == 0.0


def test_smoothing_averages_with_the_weights_in_use():
    rows = [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0]] * 8
    est = _with_rows(rows, shrink=False, floor=0.0, smoothing=0.5)
    est.strategy._last_window = (-16, -8)  # the previous estimate's window: all left since
    out = est.estimate(_request({"a": 1.0, "b": 0.0, "fused": 0.0}))
    assert out.weights == pytest.approx({"a": 2 / 3, "b": 1 / 6, "fused": 1 / 6})


def test_evidence_is_counted_once_shrinkage_then_smoothing_by_what_left_the_window():
    # Noiseless, conclusive measurements: the first estimate is the raw weights (the initial
    # weights are no evidence: shrinkage already accounts for the prior; no smoothing).
    rows = [[2.0, 1.0, 1.0, 1.0, 1.0, 1.0]] * 8
    est = _with_rows(rows, floor=0.0, smoothing=0.5)
    first = est.estimate(_request())
    assert first.weights == pytest.approx({"a": 0.5, "b": 0.25, "fused": 0.25})
    # The same window again: every measurement was already counted, nothing is smoothed.
    again = est.estimate(_request(first.weights))
    assert again.weights == pytest.approx(first.weights)
    # 2 new measurements of a window of 8: the previous weights carry 2/8 of their evidence.
    est.strategy._rows = est.strategy._rows[2:] + [[1.0, 2.0, 1.0, 1.0, 1.0, 1.0]] * 2
    est.strategy.measurements += 2
    est.shrink = False  # the new window is noisy; compare with its raw weights
    new = est.estimate(_request(first.weights))
    mean = np.mean(est.strategy._rows, axis=0)[:3]  # raw ∝ mean g / (2 mean o²), o² = 1
    raw = dict(zip(HEADS, mean / mean.sum(), strict=True))
    assert new.weights == pytest.approx(
        {h: (1 - 0.125) * raw[h] + 0.125 * first.weights[h] for h in HEADS}
    )
    assert new.generalization_se["b"] > 0  # block means over the window


def test_block_standard_errors_count_autocorrelated_measurements_once():
    # 16 measurements that come in runs of 4 equal values carry 4 measurements' evidence.
    gains = np.repeat([1.0, 3.0, 1.0, 3.0], 4)
    rows = np.column_stack([gains, gains, gains, np.ones((16, 3))])
    out = _with_rows(rows, mode=GradientMode(window=16)).estimate(_request())
    assert out.generalization_se["a"] == pytest.approx(np.std([1, 3, 1, 3], ddof=1) / 2)


def test_correlated_ridge_is_relative_to_the_scale_of_the_measurements():
    rng = np.random.default_rng(3)
    g = rng.normal(1.0, 0.2, (12, 3))
    o = rng.normal(0.0, 1.0, (12, 3)) @ np.array([[1, 0.99, 0], [0, 0.1, 0.3], [0, 0, 1]])
    mode = GradientMode(correlated=True)
    kwargs = {"shrink": False, "floor": 0.0, "smoothing": 0.0}
    one = _with_rows(np.hstack([g, o]), mode=mode, **kwargs).estimate(_request())
    small = _with_rows(np.hstack([g, o]) * 1e-7, mode=mode, **kwargs).estimate(_request())
    assert list(small.weights.values()) == pytest.approx(list(one.weights.values()), rel=1e-9)


def test_the_floor_is_checked_against_the_blenders_heads():
    model = make_model()
    est = RollingEstimator(model, loss_fn, make_batches(1), floor=0.4)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"`floor` should be in \[0, 1/3\) for 3 heads"):
        GradientBlender(sgd, HEADS, est)


def test_too_few_measurements_keep_the_weights():
    current = {"a": 0.2, "b": 0.3, "fused": 0.5}
    out = _with_rows([[1.0] * 6] * 3).estimate(_request(current))
    assert out.weights == current
    assert out.accepted
    assert "3 of 8" in out.notes[0]


def test_trains_through_the_blender_with_its_default_schedule():
    model = make_model(seed=0, dropout=0.1)
    train = make_batches(10, seed=1)
    est = RollingEstimator(
        model,
        loss_fn,
        make_batches(2, seed=2),
        mode=GradientMode(interval=2, min_measurements=3, window=4),
        every=8,
    )
    opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1), HEADS, est)
    assert opt.schedule.unit == "step"
    assert opt.schedule.every == 8
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        for _ in range(3):
            for batch in train:
                opt.zero_grad()
                opt.backward(loss_fn(model, batch))
                opt.step()
    estimates = [r for r in opt.history if r["estimate"]["generalization_se"] is not None]
    assert len(estimates) >= 2
    assert sum(opt.weights.values()) == pytest.approx(1.0)
    assert min(opt.weights.values()) >= 0.05 - 1e-9
    assert est.measurements == 15


def test_a_head_at_weight_zero_is_still_measured():
    model = make_model(seed=0)
    est = RollingEstimator(model, loss_fn, make_batches(2, seed=2), mode=GradientMode(interval=1))
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        est,
        weights={"a": 0.0, "b": 0.0, "fused": 1.0},
    )
    for batch in make_batches(3, seed=1):
        opt.zero_grad()
        opt.backward(loss_fn(model, batch))
        opt.step()
    rows = np.array(est.strategy._rows)
    assert np.all(rows[:, 0] != 0.0)
    assert np.all(rows[:, 1] != 0.0)


def test_measuring_changes_neither_gradients_nor_the_random_stream():
    # Weights that never change (window never full): training equals plain SGD on uniform weights,
    # with dropout drawing from the global generator and a shuffling holdout loader.
    def run(with_estimator):
        model = make_model(seed=0, dropout=0.3)
        torch.manual_seed(5)
        sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        est = (
            RollingEstimator(
                model,
                loss_fn,
                _Shuffled(make_batches(3, seed=2)),
                mode=GradientMode(interval=1, min_measurements=100, window=100),
            )
            if with_estimator
            else None
        )
        opt = GradientBlender(sgd, HEADS, est)
        for batch in make_batches(6, seed=1):
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
        return [p.detach().clone() for p in model.parameters()], torch.rand(1)

    (p1, r1), (p2, r2) = run(True), run(False)
    for a, b in zip(p1, p2, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(r1, r2)


class _Shuffled:
    def __init__(self, batches):
        self.batches = batches

    def __iter__(self):
        order = torch.randperm(len(self.batches))
        return iter([self.batches[i] for i in order])


def test_loss_mode_records_dg_do_and_paired_errors():
    model = make_model(seed=0)
    holdout, probe = make_batches(2, seed=2), make_batches(2, seed=3)
    est = RollingEstimator(model, loss_fn, holdout, probe=probe, mode="loss", smoothing=0.0)
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.2),
        HEADS,
        est,
        schedule=Online(every=4, unit="step"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        for batch in make_batches(8, seed=1):
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
    record = next(r for r in opt.history[1:] if r["estimate"]["measurements"])
    e = blendopt.BlendEstimate.from_dict(record["estimate"])
    m = e.measurements
    for h in HEADS:
        assert e.generalization[h] == pytest.approx(m["holdout_before"][h] - m["holdout_after"][h])
        d_o = (m["holdout_after"][h] - m["train_after"][h]) - (
            m["holdout_before"][h] - m["train_before"][h]
        )
        assert e.overfitting_change[h] == pytest.approx(d_o)
        assert 0 < e.generalization_se[h] < float("inf")
        assert e.overfitting_change_se[h] >= e.generalization_se[h]


def test_state_dict_round_trip(tmp_path):
    model = make_model(seed=0)
    est = RollingEstimator(model, loss_fn, make_batches(2, seed=2), mode=GradientMode(interval=1))
    for batch in make_batches(3, seed=1):
        est.observe(loss_fn(model, batch), step=0)
    torch.save(est.state_dict(), tmp_path / "est.pt")
    other = RollingEstimator(model, loss_fn, make_batches(2, seed=2), mode=GradientMode(interval=1))
    other.load_state_dict(torch.load(tmp_path / "est.pt", weights_only=True))
    assert other.strategy._rows == est.strategy._rows
    assert other.measurements == 3
    assert other._holdout_batches.draws == 3


def test_resume_mid_window_continues_exactly(tmp_path):
    train = make_batches(9, seed=1)

    def build():
        model = make_model(seed=0, dropout=0.2)
        est = RollingEstimator(
            model,
            loss_fn,
            _Shuffled(make_batches(3, seed=2)),
            mode=GradientMode(interval=2, min_measurements=2, window=3),
            every=3,
        )
        opt = GradientBlender(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), HEADS, est)
        return model, opt

    def steps(model, opt, batches):
        for batch in batches:
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()

    torch.manual_seed(7)
    model, opt = build()
    steps(model, opt, train)
    reference = (opt.weights, [p.detach().clone() for p in model.parameters()])

    torch.manual_seed(7)
    model, opt = build()
    steps(model, opt, train[:3])  # mid-pass of the holdout loader (2 of 3 batches drawn)
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "rng": torch.get_rng_state()},
        tmp_path / "ckpt.pt",
    )
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    model, opt = build()
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    torch.set_rng_state(ckpt["rng"])
    steps(model, opt, train[3:])
    assert opt.weights == reference[0]
    for a, b in zip(model.parameters(), reference[1], strict=True):
        assert torch.equal(a, b)


def test_repr():
    est = RollingEstimator(make_model(), loss_fn, make_batches(1))
    assert repr(est).startswith("RollingEstimator(mode='gradient', interval=20, window=12")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "exact"}, ValueError, "mode"),
        ({"params": "some"}, ValueError, "params"),
        ({"interval": 0}, ValueError, "interval"),
        ({"window": 4, "min_measurements": 8}, ValueError, "min_measurements"),
        ({"smoothing": 1.0}, ValueError, "smoothing"),
        ({"floor": -0.1}, ValueError, "floor"),
        ({"prior": "flat"}, ValueError, "prior"),
        ({"eps": 0.0}, ValueError, "eps"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        RollingEstimator(make_model(), loss_fn, make_batches(1), **kwargs)


def test_bad_types():
    with pytest.raises(TypeError, match="model"):
        RollingEstimator("net", loss_fn, make_batches(1))
    with pytest.raises(TypeError, match="loss_fn"):
        RollingEstimator(make_model(), None, make_batches(1))


def test_a_floor_too_large_for_the_heads_is_an_error():
    est = _with_rows([[1.0] * 6] * 8, floor=0.4)
    with pytest.raises(ValueError, match="floor"):
        est.estimate(_request())


def test_works_with_an_epoch_schedule():
    model = make_model(seed=0)
    est = RollingEstimator(
        model, loss_fn, make_batches(2, seed=2), mode=GradientMode(interval=1, min_measurements=4)
    )
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.1),
        HEADS,
        est,
        schedule=Online(every=1, unit="epoch"),
    )
    for _ in range(3):
        opt.start_epoch()
        for batch in make_batches(5, seed=1):
            opt.zero_grad()
            opt.backward(loss_fn(model, batch))
            opt.step()
    assert [r["epoch"] for r in opt.history] == [0, 1, 2]
    assert opt.history[0]["estimate"]["notes"][0].startswith("0 of 4 measurements")
    assert opt.history[1]["estimate"]["generalization_se"] is not None
    assert opt.weights != blendopt.functional.uniform_weights(HEADS)


def test_loss_mode_without_probe_uses_the_steps_between_boundaries():
    model = make_model(seed=0)
    est = RollingEstimator(model, loss_fn, make_batches(2, seed=2), mode="loss", smoothing=0.0)
    opt = GradientBlender(
        torch.optim.SGD(model.parameters(), lr=0.2),
        HEADS,
        est,
        schedule=Online(every=3, unit="step"),
    )
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        for batch in make_batches(6, seed=1):
            opt.zero_grad()
            losses = loss_fn(model, batch)
            seen.append({h: float(v.detach()) for h, v in losses.items()})
            opt.backward(losses)
            opt.step()
    # boundaries at steps 0, 3, 6: the estimate at 6 compares steps 3-5 with steps 0-2
    e = blendopt.BlendEstimate.from_dict(opt.history[-1]["estimate"])
    for h in HEADS:
        before = np.mean([s[h] for s in seen[0:3]])
        after = np.mean([s[h] for s in seen[3:6]])
        assert e.measurements["train_before"][h] == pytest.approx(before)
        assert e.measurements["train_after"][h] == pytest.approx(after)
        d_o = (e.measurements["holdout_after"][h] - after) - (
            e.measurements["holdout_before"][h] - before
        )
        assert e.overfitting_change[h] == pytest.approx(d_o)


def test_flat_mode_options_are_deprecated_and_build_the_same_strategy():
    with pytest.warns(DeprecationWarning, match=r"mode=GradientMode\(interval=..., window=...\)"):
        old = RollingEstimator(make_model(), loss_fn, make_batches(1), interval=3, window=9)
    new = RollingEstimator(
        make_model(), loss_fn, make_batches(1), mode=GradientMode(interval=3, window=9)
    )
    assert repr(old) == repr(new)
    assert isinstance(old.strategy, GradientMode)
    assert old.mode == "gradient"
    with pytest.warns(DeprecationWarning, match=r"mode=LossMode\(metric=...\)"):
        loss = RollingEstimator(make_model(), loss_fn, make_batches(1), mode="loss", metric=loss_fn)
    assert loss.strategy.metric is loss_fn
    assert loss.mode == "loss"
    assert (old.interval, old.window, loss.metric) == (3, 9, loss_fn)  # read as before
    with pytest.raises(AttributeError, match="no attribute 'interval'"):
        _ = loss.interval


def test_a_mode_object_holds_only_its_own_parameters_and_is_copied():
    mode = GradientMode(interval=1)
    model = make_model()
    first = RollingEstimator(model, loss_fn, make_batches(2, seed=2), mode=mode)
    second = RollingEstimator(model, loss_fn, make_batches(2, seed=2), mode=mode)
    first.observe(loss_fn(model, make_batches(1, seed=1)[0]), step=0)
    assert first.measurements == 1
    assert second.measurements == 0  # each estimator has its own window
    assert mode.measurements == 0
    assert repr(mode).startswith("GradientMode(interval=1, window=12")
    loss = RollingEstimator(model, loss_fn, make_batches(1), mode=LossMode())
    assert repr(loss).startswith("RollingEstimator(mode='loss', metric=None, probe=False")
    assert loss.measurements == 0


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: GradientMode(interval=0), ValueError, "interval"),
        (lambda: GradientMode(params="some"), ValueError, "params"),
        (lambda: GradientMode(window=4, min_measurements=8), ValueError, "min_measurements"),
        (lambda: LossMode(metric="loss"), TypeError, "metric"),
        (
            lambda: RollingEstimator(make_model(), loss_fn, [], mode=GradientMode(), window=3),
            TypeError,
            "to the mode object",
        ),
        (
            lambda: RollingEstimator(make_model(), loss_fn, [], windw=3),
            TypeError,
            "unexpected keyword argument 'windw'",
        ),
    ],
)
def test_bad_mode_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
