"""The main job: every method of the comparison on the embedded datasets, on a CPU.

``python -m benchmarks`` (``make run``) trains, per embedded dataset and seed, every method of
the registry (:data:`METHODS`: single modalities, naive fusion, dropout, pre-training, early
stopping, auxiliary losses, uncertainty weighting, an ensemble of single-modality models,
OGM-GE, G-Blend offline and online), reports every predictor in the shape of the paper's
Table 5 with computed verdicts, and plots weights, per-head curves and accuracy vs cost.
:func:`train_method` and the registry know nothing of the embedded data (the ``train``
sub-command reuses them).
"""

from benchmarks.runner._baselines import (
    OGMGE,
    UncertaintyWeighting,
    early_stop_steps,
    ogm_ge_coefficients,
)
from benchmarks.runner._batches import TensorBatches
from benchmarks.runner._job import render_report, run_job, write_run_folder
from benchmarks.runner._methods import (
    METHODS,
    OPTIMIZERS,
    EstimatorContext,
    Method,
    all_methods,
    make_optimizer,
    method_choices,
    offline_schedule,
    online_schedule,
    register_method,
    retrain_estimator,
    select_methods,
)
from benchmarks.runner._report import (
    LEGEND,
    cost_ratios,
    markdown_table,
    paired_difference,
    verdicts,
)
from benchmarks.runner._run_folder import load_run
from benchmarks.runner._setups import SETUPS, DatasetSetup
from benchmarks.runner._train import (
    HOLDOUT,
    PREDICTORS,
    RunResult,
    Trained,
    evaluate,
    loss_fn,
    predict,
    run_one,
    train_method,
)

__all__ = [
    "HOLDOUT",
    "LEGEND",
    "METHODS",
    "OGMGE",
    "OPTIMIZERS",
    "PREDICTORS",
    "SETUPS",
    "DatasetSetup",
    "EstimatorContext",
    "Method",
    "RunResult",
    "TensorBatches",
    "Trained",
    "UncertaintyWeighting",
    "all_methods",
    "cost_ratios",
    "early_stop_steps",
    "evaluate",
    "load_run",
    "loss_fn",
    "make_optimizer",
    "markdown_table",
    "method_choices",
    "offline_schedule",
    "ogm_ge_coefficients",
    "online_schedule",
    "paired_difference",
    "predict",
    "register_method",
    "render_report",
    "retrain_estimator",
    "run_job",
    "run_one",
    "select_methods",
    "train_method",
    "verdicts",
    "write_run_folder",
]
