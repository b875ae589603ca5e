"""Registry: create, list_models, duplicate and unknown names."""

import pytest
from torch import nn

from benchmarks.models import create, get_builder, list_models, register_model

EXPECTED = [
    "r3d_10",
    "r3d_18",
    "r3d_26",
    "r3d_34",
    "r3d_50",
    "r3d_101",
    "r3d_152",
    "r2plus1d_18",
    "r2plus1d_34",
    "r2plus1d_152",
    "ip_csn_50",
    "ip_csn_152",
    "ir_csn_152",
    "audio_resnet_18",
    "audio_resnet_50",
    "audio_resnet_152",
    "av_late_concat",
    "av_mid_concat",
    "av_se_gate",
    "av_nl_gate",
    "av_lmf",
    "av_ip_csn_152",
]


@pytest.mark.parametrize("name", EXPECTED)
def test_expected_names_registered(name):
    assert name in list_models()


def test_list_models_wildcard():
    assert list_models("r3d_*") == sorted(
        ["r3d_10", "r3d_18", "r3d_26", "r3d_34", "r3d_50", "r3d_101", "r3d_152"]
    )
    assert list_models("i*_csn_152") == ["ip_csn_152", "ir_csn_152"]
    assert list_models("nothing*") == []
    assert list_models() == sorted(list_models())


def test_create_passes_kwargs():
    model = create("r3d_10", num_classes=7, in_channels=2)
    assert model.fc.out_features == 7
    assert model.in_channels == 2


def test_duplicate_name_refused():
    with pytest.raises(ValueError, match="already registered"):

        @register_model("r3d_18")
        def r3d_18_again() -> nn.Module:  # pragma: no cover - never registered
            return nn.Identity()


def test_register_model_without_parentheses_is_a_type_error():
    def builder() -> nn.Module:  # pragma: no cover
        return nn.Identity()

    with pytest.raises(TypeError, match="register_model\\(\\)"):
        register_model(builder)


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="r3d_18") as info:
        create("r3d18")
    assert "Did you mean" in str(info.value)
    with pytest.raises(ValueError, match="names no registered model"):
        get_builder("completely_different")


@pytest.mark.parametrize("bad", [None, 3, ["r3d_18"]])
def test_non_string_name_or_pattern(bad):
    with pytest.raises(TypeError, match="`name`"):
        create(bad)
    with pytest.raises(TypeError, match="`pattern`"):
        list_models(bad)
