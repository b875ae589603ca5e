"""Mechanics of each baseline against hand-computed values (OGM-GE, uncertainty weighting, early
stopping, time-averaged weights, pre-training, the ensemble of single-modality models)."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import blendopt
from benchmarks.data.embedded import make_synthetic_av
from benchmarks.models import MLPEncoder, MultiHeadModel
from benchmarks.runner import (
    METHODS,
    OGMGE,
    SETUPS,
    TensorBatches,
    UncertaintyWeighting,
    early_stop_steps,
    make_optimizer,
    markdown_table,
    ogm_ge_coefficients,
    run_one,
    train_method,
)
from benchmarks.runner._methods import EstimatorContext, Method, retrain_estimator


@pytest.fixture(scope="module")
def small_data():
    kwargs = {"n_train": 120, "n_test": 60, "num_classes": 3, "dims": {"visual": 4, "audio": 32}}
    return make_synthetic_av("train", **kwargs), make_synthetic_av("test", **kwargs)


def _linear_model(num_fc: int = 0) -> MultiHeadModel:
    torch.manual_seed(0)
    encoders = {
        "a": MLPEncoder(3, hidden=(4,), output_dim=2),
        "b": MLPEncoder(5, hidden=(4,), output_dim=2),
    }
    kwargs = {"num_fc": num_fc, "hidden_dim": 16}
    return MultiHeadModel(encoders, 3, fusion="late_concat", fusion_kwargs=kwargs)


# -- OGM-GE ------------------------------------------------------------------------------------


def test_ogm_ge_coefficient_two_modalities_by_hand():
    # rho_v = 30 / 10 = 3 > 1: k_v = 1 - tanh(0.1 * 3); the weaker audio keeps 1.
    k = ogm_ge_coefficients({"visual": 30.0, "audio": 10.0}, alpha=0.1)
    assert k["visual"] == pytest.approx(1 - math.tanh(0.3))
    assert k["visual"] == pytest.approx(0.708687, abs=1e-6)
    assert k["audio"] == 1.0
    # Equal scores: rho = 1 is not > 1, nothing is modulated.
    assert ogm_ge_coefficients({"v": 5.0, "a": 5.0}, alpha=0.8) == {"v": 1.0, "a": 1.0}


def test_ogm_ge_coefficient_three_modalities_uses_the_mean_of_the_others():
    # rho_a = 6 / mean(2, 2) = 3; rho_b = 2 / mean(6, 2) = 0.5.
    k = ogm_ge_coefficients({"a": 6.0, "b": 2.0, "c": 2.0}, alpha=0.5)
    assert k == pytest.approx({"a": 1 - math.tanh(1.5), "b": 1.0, "c": 1.0})
    with pytest.raises(ValueError, match="at least two"):
        ogm_ge_coefficients({"a": 1.0}, alpha=0.1)


def test_ogm_ge_scores_are_the_fused_head_on_one_modality_by_hand():
    model = _linear_model(num_fc=0)  # fused head = W [h_a, h_b] + bias: the paper's concat case
    x = {"a": torch.randn(6, 3), "b": torch.randn(6, 5)}
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    features = model.forward_features(x)
    scores = OGMGE(model).scores(features, y)
    w, b = model.fused_classifier.weight, model.fused_classifier.bias
    with torch.no_grad():
        out_a = features["a"] @ w[:, :2].T + b
        out_b = features["b"] @ w[:, 2:].T + b
        expect_a = F.softmax(out_a, 1)[torch.arange(6), y].sum()
        expect_b = F.softmax(out_b, 1)[torch.arange(6), y].sum()
    assert scores["a"] == pytest.approx(float(expect_a), rel=1e-5)
    assert scores["b"] == pytest.approx(float(expect_b), rel=1e-5)


def test_ogm_ge_hook_modulates_encoder_weights_through_the_blender():
    model = _linear_model(num_fc=2)
    reference = _linear_model(num_fc=2)
    torch.manual_seed(1)
    x = {"a": torch.randn(16, 3), "b": torch.randn(16, 5)}
    y = torch.randint(0, 3, (16,))
    heads = model.head_names
    naive = {h: float(h == "fused") for h in heads}
    ogm = OGMGE(model, alpha=1.0, noise=False)
    blender = blendopt.GradientBlender(torch.optim.SGD(model.parameters(), lr=0.5), heads, naive)
    blender.register_step_pre_hook(ogm.hook)
    blender.zero_grad()
    blender.backward(ogm.losses((x, y)))
    k = dict(ogm.coefficients)
    assert min(k.values()) < 1.0  # one modality dominates at this init
    blender.step()

    # Plain SGD on the naive loss with the encoders' weight gradients scaled by k by hand.
    plain = torch.optim.SGD(reference.parameters(), lr=0.5)
    F.cross_entropy(reference(x)["fused"], y).backward()
    for m in ("a", "b"):
        for p in reference.encoders[m].parameters():
            if p.dim() >= 2:
                p.grad.mul_(k[m])
    plain.step()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_ogm_ge_noise_and_modulation_window():
    model = _linear_model(num_fc=2)
    ogm = OGMGE(model, alpha=0.1, start=1, end=3)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    ogm.coefficients = {"a": 0.5, "b": 1.0}
    ogm.epoch = 0  # before the window: nothing happens
    ogm.hook(None, (), {})
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    ogm.epoch = 1
    torch.manual_seed(0)
    ogm.hook(None, (), {})
    encoder_weights = [p for p in model.encoders["a"].parameters() if p.dim() >= 2]
    # std of a constant gradient is 0, so the GE noise has std 1e-8: k applied, noise tiny.
    for p in encoder_weights:
        torch.testing.assert_close(p.grad, torch.full_like(p, 0.5), atol=1e-6, rtol=0)
        assert not torch.equal(p.grad, torch.full_like(p, 0.5))  # the noise was added
    biases = [p for p in model.encoders["a"].parameters() if p.dim() < 2]
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in biases)
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.heads.parameters())
    with pytest.raises(ValueError, match="alpha"):
        OGMGE(model, alpha=0.0)


# -- uncertainty weighting ---------------------------------------------------------------------


def test_uncertainty_weighting_loss_form_and_gradient_by_hand():
    module = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        module.log_vars.copy_(torch.tensor([0.5, -0.2]))
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(3.0)}
    total = module(losses)
    expected = math.exp(-0.5) * 2 + math.exp(0.2) * 3 + (0.5 - 0.2) / 2
    assert float(total.detach()) == pytest.approx(expected)
    total.backward()
    # d/ds_k [exp(-s_k) L_k + s_k / 2] = -exp(-s_k) L_k + 1/2
    torch.testing.assert_close(
        module.log_vars.grad,
        torch.tensor([-math.exp(-0.5) * 2 + 0.5, -math.exp(0.2) * 3 + 0.5]),
    )
    w = module.weights()
    assert w["a"] == pytest.approx(math.exp(-0.5) / (math.exp(-0.5) + math.exp(0.2)))
    assert "heads=['a', 'b']" in repr(module)


def test_uncertainty_through_the_blender_equals_the_module():
    module = UncertaintyWeighting(["a", "b"])
    with torch.no_grad():
        module.log_vars.copy_(torch.tensor([0.3, 0.1]))
    p = nn.Parameter(torch.tensor(1.5))
    # weight 1 per head: the losses are scaled
    with pytest.warns(blendopt.warnings.WeightSumWarning):
        blender = blendopt.GradientBlender(
            torch.optim.SGD([p], lr=0.1), ["a", "b"], {"a": 1, "b": 1}
        )
    losses = {"a": p**2, "b": 3 * p}
    via_blender = blender.blend(module.scale(losses)) + module.regularizer()
    assert float(via_blender.detach()) == pytest.approx(float(module(losses).detach()))


# -- early stopping, averaged weights ----------------------------------------------------------


@pytest.mark.parametrize(
    ("batches", "fraction", "steps"),
    [(16, 0.25, 4), (15, 0.25, 4), (16, 0.5, 8), (15, 0.75, 12), (1, 0.25, 1), (4, 1.0, 4)],
)
def test_early_stop_steps(batches, fraction, steps):
    assert early_stop_steps(batches, fraction) == steps


def test_early_stop_steps_rejects_bad_fractions():
    with pytest.raises(ValueError, match="fraction"):
        early_stop_steps(10, 0.0)
    with pytest.raises(ValueError, match="fraction"):
        early_stop_steps(10, 1.5)


@pytest.mark.filterwarnings("ignore::blendopt.BlendWarning")
def test_early_stop_runs_the_right_number_of_iterations(small_data):
    result = run_one(SETUPS["synthetic_av"], METHODS["early_stop_25"], epochs=3, data=small_data)
    batches = math.ceil(108 / 64)  # 120 training samples minus a 10% holdout, batch 64
    assert result.steps == 3 * math.ceil(0.25 * batches)
    full = run_one(SETUPS["synthetic_av"], METHODS["naive"], epochs=3, data=small_data)
    assert full.steps == 3 * batches


# -- pre-training, ensemble --------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::blendopt.BlendWarning")
def test_pretrain_trains_modality_heads_first_then_the_fused_head(small_data):
    result = run_one(SETUPS["synthetic_av"], METHODS["pretrain"], epochs=4, data=small_data)
    phase1, phase2 = result.epochs[:2], result.epochs[2:]
    assert all(r["weights"]["fused"] == 0.0 and r["weights"]["visual"] == 1.0 for r in phase1)
    assert all(r["weights"] == {"visual": 0.0, "audio": 0.0, "fused": 1.0} for r in phase2)
    assert [r["kind"] for r in result.weight_history] == ["manual"]
    assert result.weight_history[0]["epoch"] == 2


def test_ensemble_members_are_the_single_modality_runs(small_data):
    train, _ = small_data
    setup = SETUPS["synthetic_av"]

    def build(dropout):
        return setup.build_model(train, fusion_dropout=dropout)

    def inner(params):
        return make_optimizer("sgd", params, setup.lr)

    batches = TensorBatches(train, 64, shuffle=True)
    ensemble = train_method(METHODS["ensemble"], build, inner, batches, epochs=2, seed=3)
    single = train_method(
        Method("single:audio", "single", "audio"), build, inner, batches, epochs=2, seed=3
    )
    for p, q in zip(
        ensemble.models["audio"].parameters(), single.models[""].parameters(), strict=True
    ):
        torch.testing.assert_close(p, q)
    assert ensemble.weights == {"visual": 0.5, "audio": 0.5}


def test_a_diverged_run_is_reported_not_raised(small_data):
    setup = dataclasses.replace(SETUPS["synthetic_av"], lr=1e6)
    result = run_one(setup, METHODS["auxiliary_1"], epochs=3, data=small_data)
    assert result.diverged is not None
    assert result.diverged.startswith("non-finite loss in epoch")
    assert result.steps < 3 * 2  # stopped before the end
    table = markdown_table([result])
    assert "| auxiliary_1 (1/1 diverged) |" in table


def test_dropout_builds_the_same_model_with_dropout_at_the_concatenation(small_data):
    train, _ = small_data
    setup = SETUPS["synthetic_av"]
    asked = []

    def build(dropout):
        asked.append(dropout)
        return setup.build_model(train, fusion_dropout=dropout)

    batches = TensorBatches(train, 64, shuffle=True)
    for name in ("naive", "dropout"):
        trained = train_method(
            METHODS[name], build, lambda p: make_optimizer("sgd", p, 0.05), batches, epochs=1
        )
    assert asked == [0.0, 0.5]
    layers = [type(m).__name__ for m in trained.models[""].fusion.modules()]
    assert "Dropout" in layers


@pytest.mark.parametrize(("metric", "resolution"), [("error", 1 / 40), ("loss", None)])
def test_retrain_estimator_floors_the_error_at_its_resolution(metric, resolution):
    # An error on |V| = 40 moves in steps of 1/40: an absolute floor of dO, beside the default
    # relative eps (a relative eps of (1/|V|)² would floor nothing).
    model = nn.Linear(2, 2)
    ctx = EstimatorContext(
        model, lambda m, b: {}, [], [], [], lambda m, b: ({}, b), metric, holdout_size=40, seed=0
    )
    config = retrain_estimator(ctx).config
    assert config.resolution == resolution
    assert config.eps == blendopt.functional.DEFAULT_EPS
