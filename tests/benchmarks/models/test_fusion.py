"""Fusion modules of appendix F and LMF."""

import pytest
import torch
from torch import nn

from benchmarks.models import LateConcat, LowRankFusion, MidConcat, NLGate, SEGate, create_fusion

DIMS = {"rgb": 32, "audio": 32}


def feats(batch=3, dims=DIMS):
    return {k: torch.randn(batch, d) for k, d in dims.items()}


def linears(module):
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize(
    ("num_fc", "expected"),
    [
        (0, []),
        (1, [(64, 32)]),
        (2, [(64, 32), (32, 32)]),  # F.1: FC kn->n, FC n->n (classifier n->c is the head's)
        (4, [(64, 32), (32, 32), (32, 32), (32, 32)]),
    ],
)
def test_late_concat_layers(num_fc, expected):
    fusion = LateConcat(DIMS, num_fc=num_fc)
    assert linears(fusion) == expected
    assert fusion.output_dim == (64 if num_fc == 0 else 32)
    assert fusion(feats()).shape == (3, fusion.output_dim)


def test_late_concat_dropout_after_concat():
    fusion = LateConcat(DIMS, dropout=0.5)
    assert isinstance(fusion.mlp[0], nn.Dropout)
    fusion.eval()
    x = feats()
    torch.testing.assert_close(fusion(x), fusion(x))


def test_late_concat_errors():
    with pytest.raises(ValueError, match=r"Missing \['audio'\]"):
        LateConcat(DIMS)({"rgb": torch.randn(2, 32)})
    with pytest.raises(ValueError, match=r"features\['audio'\].*\(batch, 32\)"):
        LateConcat(DIMS)({"rgb": torch.randn(2, 32), "audio": torch.randn(2, 31)})
    with pytest.raises(TypeError, match="`input_dims`"):
        LateConcat([32, 32])
    with pytest.raises(ValueError, match="`dropout`"):
        LateConcat(DIMS, dropout=1.5)


def test_lmf_shape_and_gradients():
    fusion = LowRankFusion({"a": 5, "b": 7, "c": 3}, output_dim=11, rank=3)
    x = feats(4, {"a": 5, "b": 7, "c": 3})
    out = fusion(x)
    assert out.shape == (4, fusion.output_dim) == (4, 11)
    out.sum().backward()
    assert all(p.grad is not None for p in fusion.parameters())


def test_lmf_equals_full_tensor_fusion_for_two_modalities():
    fusion = LowRankFusion({"a": 2, "b": 3}, output_dim=4, rank=2)
    x = feats(2, {"a": 2, "b": 3})
    za = torch.cat([x["a"], torch.ones(2, 1)], 1)
    zb = torch.cat([x["b"], torch.ones(2, 1)], 1)
    # W = sum_r w_r * (W_a^r ⊗ W_b^r) applied to the outer product za ⊗ zb.
    weight = torch.einsum(
        "r,rio,rjo->ijo", fusion.rank_weights[0], fusion.factors["a"], fusion.factors["b"]
    )
    expected = torch.einsum("bi,bj,ijo->bo", za, zb, weight) + fusion.bias
    torch.testing.assert_close(fusion(x), expected)


def test_create_fusion():
    assert isinstance(create_fusion("late_concat", DIMS), LateConcat)
    assert isinstance(create_fusion("lmf", DIMS, rank=2), LowRankFusion)
    with pytest.raises(ValueError, match="'late_concat', 'lmf'"):
        create_fusion("attention", DIMS)


V = torch.randn(2, 8, 4, 3, 3)  # visual after a block: (B, Cv, T, H, W)
A = torch.randn(2, 6, 10, 5)  # audio after the same block: (B, Ca, Ta, F)


@pytest.mark.parametrize(
    ("mode", "downsample", "shape"),
    [
        ("1d", 0, (2, 14, 10)),
        ("2d", 0, (2, 14, 10, 5)),
        ("2d", 1, (2, 14, 5, 5)),
        ("3d", 0, (2, 14, 10, 3, 3)),
    ],
)
def test_mid_concat_shapes(mode, downsample, shape):
    fusion = MidConcat(8, 6, mode=mode, audio_downsample=downsample)
    out = fusion(V, A)
    assert out.shape == shape
    assert fusion.output_dim == 14


def test_mid_concat_content_and_temporal_replication():
    fusion = MidConcat(8, 6, mode="3d")
    out = fusion(V, A)
    # audio channels: frequency-averaged audio tiled over space
    torch.testing.assert_close(out[:, 8:, :, 1, 2], A.mean(3))
    # visual channels: 4 frames replicated to the audio's 10 (nearest)
    index = (torch.arange(10) * 4) // 10
    torch.testing.assert_close(out[:, :8, :, 0, 0], V[:, :, index, 0, 0])
    two_d = MidConcat(8, 6, mode="2d")(V, A)
    torch.testing.assert_close(two_d[:, :8, :, 0], two_d[:, :8, :, 4])  # tiled on frequency


@pytest.mark.parametrize("mode", ["1d", "2d", "3d"])
def test_mid_concat_projection(mode):
    fusion = MidConcat(8, 6, mode=mode, out_channels=5)
    assert fusion.output_dim == 5
    assert fusion(V, A).shape[1] == 5


def test_mid_concat_errors():
    with pytest.raises(ValueError, match="`mode`"):
        MidConcat(8, 6, mode="4d")
    with pytest.raises(ValueError, match="mode '2d' only"):
        MidConcat(8, 6, mode="3d", audio_downsample=1)
    with pytest.raises(ValueError, match=r"`visual`.*8 channels"):
        MidConcat(8, 6)(torch.randn(2, 7, 4, 3, 3), A)
    with pytest.raises(ValueError, match=r"`audio`.*4-D"):
        MidConcat(8, 6)(V, torch.randn(2, 6, 10))


@pytest.mark.parametrize("direction", ["audio_to_visual", "visual_to_audio", "both"])
@pytest.mark.parametrize("residual", ["skip", "replace"])
def test_se_gate(direction, residual):
    gate = SEGate(8, 6, direction=direction, residual=residual, reduction=2)
    v, a = gate(V, A)
    assert v.shape == V.shape
    assert a.shape == A.shape
    assert gate.output_dim == (8, 6)
    assert torch.equal(v, V) == (direction == "visual_to_audio")
    assert torch.equal(a, A) == (direction == "audio_to_visual")
    if direction != "visual_to_audio":
        weights = gate.to_visual(A.mean((2, 3)))
        expected = V * weights[..., None, None, None]
        torch.testing.assert_close(v, V + expected if residual == "skip" else expected)


def test_se_gate_errors():
    with pytest.raises(ValueError, match="`direction`"):
        SEGate(8, 6, direction="sideways")
    with pytest.raises(ValueError, match="`residual`"):
        SEGate(8, 6, residual="add")


def test_nl_gate():
    gate = NLGate(8, 6, inner_channels=4, audio_downsample=1)
    out = gate(V, A)
    assert out.shape == V.shape
    assert gate.output_dim == 8
    # key/value is the 2-D concat of F.2 (visual tiled on frequency, audio shortened)
    assert gate.key_value.mode == "2d"
    assert gate.phi.in_channels == 14
    identity = NLGate(8, 6, zero_init=True).eval()
    torch.testing.assert_close(identity(V, A), V)


def test_reprs_show_the_configuration():
    assert "num_fc=2, output_dim=32" in repr(LateConcat(DIMS))
    assert "rank=3" in repr(LowRankFusion(DIMS, rank=3))
    assert "mode='2d'" in repr(MidConcat(8, 6, mode="2d"))
    assert "direction='both', residual='skip'" in repr(SEGate(8, 6))
    assert "key_value" in repr(NLGate(8, 6))
