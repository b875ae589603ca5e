"""Datasets in their published on-disk formats, decoding, clip sampling, metrics, embedded data.

Real-data half (paper §3.1, §4, appendix E): PyAV video/audio decoding, 100 × 40 log-mel
spectrograms, precomputed optical flow, training/test clip sampling, Kinetics / Sports-1M
(mini-Sports) / AudioSet (mini-AudioSet by Algorithm 4) / EPIC-Kitchens-55 loaders, the
bad-file report, and the metrics clip@1, video@1/@5, mAP, mAUC. Each format has a
``check_layout`` classmethod that checks a data root before training, and finds the common
on-disk layouts by itself (``*_PATH_TEMPLATES``). Annotation files are read strictly: a
file that does not parse cleanly is an :class:`AnnotationError` naming file and line. See
docs/datasets.md for the sample contract.
"""

from benchmarks.data._audio import (
    LogMelSpectrogram,
    decode_audio_clip,
    decode_audio_span,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)
from benchmarks.data._audioset import (
    AudioSet,
    UnknownLabelsWarning,
    mini_audioset,
    read_class_labels,
)
from benchmarks.data._balance import balance_multilabel, class_volumes
from benchmarks.data._common import AnnotationError
from benchmarks.data._dataset import ALL_MODALITIES, MODALITIES, ClipDataset, ClipRecord
from benchmarks.data._epic import (
    EPIC_CLASS_FILES,
    EPIC_PATH_TEMPLATES,
    EPIC_UNSEEN_VAL_PARTICIPANTS,
    EpicKitchens55,
    parse_timestamp,
    read_epic_classes,
)
from benchmarks.data._flow import (
    clip_frame_indices,
    load_flow_clip,
    open_flow,
    resize_flow,
    save_flow,
)
from benchmarks.data._kinetics import (
    KINETICS_FLOW_TEMPLATE,
    KINETICS_PATH_TEMPLATE,
    KINETICS_PATH_TEMPLATES,
    Kinetics,
)
from benchmarks.data._layout import describe_template, detect_template
from benchmarks.data._metrics import (
    average_precision,
    clip_top1,
    mean_auc,
    mean_average_precision,
    roc_auc,
    video_scores,
    video_topk,
)
from benchmarks.data._report import (
    ClipBatch,
    MediaError,
    SkippedSample,
    SkipReport,
    collate_clips,
)
from benchmarks.data._sports1m import (
    MINI_SPORTS_SIZES,
    SPORTS1M_NUM_CLASSES,
    SPORTS1M_PATH_TEMPLATES,
    Sports1M,
    uniform_sample,
    youtube_id,
)
from benchmarks.data._synthetic import write_test_video
from benchmarks.data._transforms import (
    KINETICS_MEAN,
    KINETICS_STD,
    NORMALIZE_WHERE,
    ClipSpec,
    FrameNormalizer,
    center_crop,
    horizontal_flip,
    normalize,
    random_crop,
    three_crop,
)
from benchmarks.data._video import (
    VideoInfo,
    clip_seconds,
    clip_starts_uniform,
    decode_video_clip,
    open_media,
    probe_media,
    resized_shape,
)

__all__ = [
    "ALL_MODALITIES",
    "EPIC_CLASS_FILES",
    "EPIC_PATH_TEMPLATES",
    "EPIC_UNSEEN_VAL_PARTICIPANTS",
    "KINETICS_FLOW_TEMPLATE",
    "KINETICS_MEAN",
    "KINETICS_PATH_TEMPLATE",
    "KINETICS_PATH_TEMPLATES",
    "KINETICS_STD",
    "MINI_SPORTS_SIZES",
    "MODALITIES",
    "NORMALIZE_WHERE",
    "SPORTS1M_NUM_CLASSES",
    "SPORTS1M_PATH_TEMPLATES",
    "AnnotationError",
    "AudioSet",
    "ClipBatch",
    "ClipDataset",
    "ClipRecord",
    "ClipSpec",
    "EpicKitchens55",
    "FrameNormalizer",
    "Kinetics",
    "LogMelSpectrogram",
    "MediaError",
    "SkipReport",
    "SkippedSample",
    "Sports1M",
    "UnknownLabelsWarning",
    "VideoInfo",
    "average_precision",
    "balance_multilabel",
    "center_crop",
    "class_volumes",
    "clip_frame_indices",
    "clip_seconds",
    "clip_starts_uniform",
    "clip_top1",
    "collate_clips",
    "decode_audio_clip",
    "decode_audio_span",
    "decode_video_clip",
    "describe_template",
    "detect_template",
    "horizontal_flip",
    "hz_to_mel",
    "load_flow_clip",
    "mean_auc",
    "mean_average_precision",
    "mel_filterbank",
    "mel_to_hz",
    "mini_audioset",
    "normalize",
    "open_flow",
    "open_media",
    "parse_timestamp",
    "probe_media",
    "random_crop",
    "read_class_labels",
    "read_epic_classes",
    "resize_flow",
    "resized_shape",
    "roc_auc",
    "save_flow",
    "three_crop",
    "uniform_sample",
    "video_scores",
    "video_topk",
    "write_test_video",
    "youtube_id",
]
