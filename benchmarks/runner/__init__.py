"""The main job: every method of the paper's comparison on the embedded datasets, on a CPU.

``python -m benchmarks`` (``make run``) trains, per embedded dataset and seed, each single
modality, naive late fusion, dropout at the concatenation, equal-weight auxiliary losses, and
G-Blend offline (Algorithm 2) and online (Algorithm 3), and prints tables in the shape of the
paper's Table 5.
"""

from benchmarks.runner._batches import TensorBatches
from benchmarks.runner._methods import (
    OPTIMIZERS,
    Method,
    all_methods,
    make_optimizer,
    select_methods,
)
from benchmarks.runner._report import markdown_table, verdicts
from benchmarks.runner._setups import SETUPS, DatasetSetup
from benchmarks.runner._train import HOLDOUT, RunResult, evaluate, loss_fn, online_schedule, run_one

__all__ = [
    "HOLDOUT",
    "OPTIMIZERS",
    "SETUPS",
    "DatasetSetup",
    "Method",
    "RunResult",
    "TensorBatches",
    "all_methods",
    "evaluate",
    "loss_fn",
    "make_optimizer",
    "markdown_table",
    "online_schedule",
    "run_one",
    "select_methods",
    "verdicts",
]
