"""Reference backbones and fusion modules of the G-Blend paper (Wang, Tran, Feiszli, CVPR 2020).

- video ResNets (R3D, R(2+1)D, ip-CSN, ir-CSN), audio ResNets on log-mel input;
- fusion modules of appendix F (late concat, mid concat 1-D/2-D/3-D, SE gate, NL gate) and
  low-rank fusion (LMF);
- multi-head models returning ``{head: logits}`` for ``GradientBlender``;
- a registry: ``create(name, **kwargs)``, ``list_models(pattern)``, ``register_model``.

See docs/models.md for the table of models with parameters and GFLOPs.
"""

from . import _zoo  # noqa: F401  (registers the named builders)
from ._audio import AudioResNet, BasicBlock2D, Bottleneck2D, audio_resnet
from ._encoders import ConvSequenceEncoder, MLPEncoder, SmallCNNEncoder
from ._fusion import LateConcat, LowRankFusion, MidConcat, NLGate, SEGate, create_fusion
from ._layers import (
    Conv2Plus1D,
    Conv3DChannelSeparated,
    Conv3DInteractionPreserved,
    Conv3DSimple,
    r2plus1d_midplanes,
)
from ._multihead import MidFusionModel, MultiHeadModel
from ._registry import create, get_builder, list_models, register_model
from ._summary import ModelSummary, count_gflops, count_parameters, summarize, summary_table
from ._video import BasicBlock3D, Bottleneck3D, VideoResNet, VideoStem, video_resnet

__all__ = [
    "AudioResNet",
    "BasicBlock2D",
    "BasicBlock3D",
    "Bottleneck2D",
    "Bottleneck3D",
    "Conv2Plus1D",
    "Conv3DChannelSeparated",
    "Conv3DInteractionPreserved",
    "Conv3DSimple",
    "ConvSequenceEncoder",
    "LateConcat",
    "LowRankFusion",
    "MLPEncoder",
    "MidConcat",
    "MidFusionModel",
    "ModelSummary",
    "MultiHeadModel",
    "NLGate",
    "SEGate",
    "SmallCNNEncoder",
    "VideoResNet",
    "VideoStem",
    "audio_resnet",
    "count_gflops",
    "count_parameters",
    "create",
    "create_fusion",
    "get_builder",
    "list_models",
    "r2plus1d_midplanes",
    "register_model",
    "summarize",
    "summary_table",
    "video_resnet",
]
