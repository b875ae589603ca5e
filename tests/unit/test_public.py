"""The public surface: a short top level, the functional and warnings namespaces, and the
old top-level paths kept for one release with a DeprecationWarning."""

import pytest
import torch

import blendopt
from blendopt import functional
from blendopt import warnings as blend_warnings


def test_top_level_is_short_and_every_name_resolves():
    assert len(blendopt.__all__) <= 25
    for name in blendopt.__all__:
        assert getattr(blendopt, name) is not None
    assert blendopt.functional is functional
    assert blendopt.warnings is blend_warnings
    assert blendopt.BlendWarning is blend_warnings.BlendWarning


def test_functional_and_warnings_namespaces_export_what_they_list():
    for module in (functional, blend_warnings):
        for name in module.__all__:
            assert getattr(module, name) is not None
    for name in blend_warnings.__all__:
        assert issubclass(getattr(blend_warnings, name), blend_warnings.BlendWarning)


@pytest.mark.parametrize("name", sorted(n for n in blendopt._MOVED if n != "clone_optimizer"))
def test_moved_names_work_with_a_deprecation_warning_naming_the_new_path(name):
    new_module, _ = blendopt._MOVED[name]
    with pytest.warns(DeprecationWarning, match=rf"blendopt\.{name} moved to {new_module}\.{name}"):
        old = getattr(blendopt, name)
    new = getattr(functional if new_module == "blendopt.functional" else blend_warnings, name)
    assert old is new
    assert name not in blendopt.__all__
    assert name in dir(blendopt)


def test_clone_optimizer_points_at_the_retrain_wing():
    with pytest.warns(DeprecationWarning, match=r"blendopt\.retrain\.clone_optimizer"):
        assert callable(blendopt.clone_optimizer)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        _ = blendopt.nonsense


def test_the_suite_fails_on_a_deprecated_path_used_without_pytest_warns():
    # pyproject's filterwarnings turns our own deprecations into errors, so code and tests that
    # still use an old path fail instead of warning.
    with pytest.raises(DeprecationWarning, match=r"blendopt\.optimal_blend moved to"):
        _ = blendopt.optimal_blend
    with pytest.raises(DeprecationWarning, match=r"mode=LossMode\(metric=...\)"):
        blendopt.RollingEstimator(
            torch.nn.Linear(1, 1), lambda m, b: {}, [], mode="loss", metric=lambda m, b: {}
        )
