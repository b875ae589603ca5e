"""Paper-scale training: ``python -m benchmarks train CONFIG --data-root DIR --out RUN_DIR``.

Configs under ``benchmarks/configs/`` (TOML, validated by :func:`load_config`); the loop
(:func:`run_training`) with atomic checkpoints and exact resume, DDP under torchrun, bf16 on
CUDA, per-epoch JSONL logs, evaluation as in the paper and a run folder with report and
plots. See docs/training.md.
"""

from benchmarks.train._checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from benchmarks.train._cli import main
from benchmarks.train._config import (
    DATASETS,
    METHODS,
    SCHEMA,
    SMOKE,
    ConfigError,
    TrainConfig,
    config_diff,
    load_config,
)
from benchmarks.train._data import LAYOUTS, DataError, RunData, build_data, worker_count
from benchmarks.train._evaluate import evaluate_videos
from benchmarks.train._loop import DivergedError, StopRequestedError, run_training
from benchmarks.train._model import BlendSetup, TinyEncoder, blend_setup, build_model
from benchmarks.train._views import VideoViews, decode_clips_once

__all__ = [
    "DATASETS",
    "LAYOUTS",
    "METHODS",
    "SCHEMA",
    "SMOKE",
    "BlendSetup",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DivergedError",
    "RunData",
    "StopRequestedError",
    "TinyEncoder",
    "TrainConfig",
    "VideoViews",
    "blend_setup",
    "build_data",
    "build_model",
    "config_diff",
    "decode_clips_once",
    "evaluate_videos",
    "load_checkpoint",
    "load_config",
    "main",
    "run_training",
    "save_checkpoint",
    "worker_count",
]
