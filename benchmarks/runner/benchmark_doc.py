"""Write ``docs/benchmark.md`` from a run of the main job (one step, no hand editing).

Usage (from the repository root)::

    python -m benchmarks --docs docs/benchmark.md            # run the main job and write it
    python -m benchmarks.runner.benchmark_doc reports/embedded_benchmark.json docs/benchmark.md

The page is the fixed set-up text below plus the run's tables, legend and computed verdicts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.runner._report import LEGEND, markdown_table, methods_legend, verdicts
from benchmarks.runner._run_folder import load_run
from benchmarks.runner._train import RunResult

SETUP = """\
# The embedded benchmark (the main job)

`make run` (or `python -m benchmarks`) compares, on the datasets embedded in the repository,
every method of the paper's comparison that runs at CPU scale, plus the baselines users try
first: each single modality; naive late fusion; dropout 0.5 at the concatenation; uni-modal
pre-training then fine-tuning (Table 5); early stopping at 25/50/75% of each epoch's
iterations (appendix G.2); auxiliary losses at weight 1 (Table 5's baseline) and at 1/k;
learned loss weights by homoscedastic uncertainty (Kendall et al. CVPR 2018); an ensemble of
separately trained single-modality models; OGM-GE (Peng et al. CVPR 2022); and G-Blend
offline (Algorithm 2), online (Algorithm 3) and with `blendopt.RollingEstimator` (no model
copies). It needs no network. It writes a run folder
(`reports/` by default): `embedded_benchmark.md` and `.json`, and `plots/` (weights over time
as in the paper's Fig. 5a, per-head train/holdout curves as in Fig. 4, accuracy vs cost).

```sh
python -m benchmarks --help
python -m benchmarks --datasets synthetic_av --optimizers sgd adam adagrad --seeds 3
python -m benchmarks --docs docs/benchmark.md          # also regenerate this page
```

## Set-up

- **Data** ([embedded datasets](embedded_datasets.md)): `synthetic_av` (a seeded generator in
  the paper's regime: a 16-d "visual" modality that generalizes and a 2048-d "audio" modality
  that is memorized), UCI Multiple Features (`mfeat`, 6 views), spoken + written digits
  (`digits`, FSDD MFCCs paired by class with MNIST), and two small regimes built from real
  data where naive fusion falls below the best modality: `digits_small`, a seeded, stratified
  10% of the digits training pairs (240), and `mfeat_small`, mfeat's `pix` and `zer` views with
  20 seeded training digits per class (200). The names are the same in
  `python -m benchmarks.data.embedded.curves`.
- **Split**: the official training split minus a seeded, stratified holdout V (10%; 20% for
  `digits_small`, so that V holds 48 pairs) is T; every method trains on T for the same
  epochs. Only G-Blend looks at V (and at a train probe T' of the same size) while training;
  V also picks the predictor of the multi-head methods, by a paired test, not a bare argmax:
  uniform prediction weights unless the last or averaged blend weights beat them on V by more
  than one paired standard error of top-1, then that ensemble unless the fused head beats it
  the same way. Every multi-head run keeps its heads' logits, so the decomposition table reads
  the equal-weight `auxiliary` model with each G-Blend run's weights (same seed) without
  training again. (The paper held out 8%.)
- **Model**: an MLP encoder per vector modality (a 1-D conv encoder for MFCC sequences), a
  linear head per modality, and the paper's late-concatenation fusion with two FC layers
  (appendix F.1) before the fused head (`benchmarks.models.MultiHeadModel`). Every method uses
  this model; `dropout` only sets the fusion dropout to 0.5.
- **Training**: 30 epochs (20 for `digits`), batch 64, SGD momentum 0.9 at lr 0.05 (Adam 1e-3,
  AdaGrad 0.05 with `--optimizers`). No early stopping except the `early_stop_*` rows: the
  final model is evaluated.
- **Seeds and noise**: every method runs the same seeds (0..n-1), and seed s fixes the split
  and the initialization for all of them, so methods are compared seed by seed: a verdict's
  bracket is the 95% confidence interval of the mean paired difference (paired t-test),
  "within noise" when it holds 0. The cheap regimes where methods differ by a point or more
  (`synthetic_av`, `digits_small`, `mfeat_small`) run 10 seeds, `mfeat` and `digits` (every
  method near 99%) 3; `--seeds N` sets N for every dataset.
- **What the default job leaves to options**: every dataset × every method at those seeds fits
  the 15-minute budget with SGD only (runs go to one process per CPU, `--jobs`); Adam and
  AdaGrad would triple it, so they are left to `--optimizers sgd adam adagrad`, and
  `make bench` runs all three optimizers on `synthetic_av` (naive and G-Blend, one seed).
- **Methods' details**: `pretrain` trains every modality's encoder and head (their losses at
  weight 1, the fused head at 0) for the first half of the epochs, then switches the blender
  to the fused head's loss (`set_weights`) for the second half. `early_stop_p` runs p% of each
  epoch's iterations, as the paper's appendix G.2. `uncertainty` learns one log-variance per
  head (`Σ exp(-s_k) L_k + s_k/2`); its weights are `exp(-s_k)`, normalized. `ensemble`
  averages the probabilities of the `single:<m>` models (the same runs, retrained). `ogm_ge`
  scales the encoders' gradients by OGM-GE's coefficient (the fused head fed with one
  modality's features scores each modality) and adds Gaussian noise, through the blender's
  `register_step_pre_hook`; α = 0.1, the reference default, not tuned here.
- **G-Blend**: `RetrainEstimator` with the top-1 error as the metric (the paper found it as
  effective as the loss, §2.4) and `resolution=1/|V|`: dO² is floored at (1/|V|)², the
  resolution of an error measured on |V| samples, besides the default relative `eps` (dO²
  floored at eps × the largest dO²), so a head whose measured dO is exactly 0 does not take
  all the weight. Offline looks ahead the whole run (`Offline(horizon=epochs)`);
  online scales the paper's 10-then-5 of 45 epochs to `Online(warmup=7, every=3)` at 30 epochs.
  `gblend_rolling` is `RollingEstimator` with its defaults (per-head gradient inner products
  every 5 steps until 8 measurements are in, then every 20; the first estimate as soon as the 8
  are in, then one every 50 steps; shrinkage toward uniform weights, floor 0.05, smoothing 0.5
  times the share of the previous estimate's measurements that left the window; V and T' re-cut
  to the training batch size;
  [estimators](estimators.md)), so it also estimates in the short `digits_small` and
  `mfeat_small` runs (about 90 steps).
- **Cost**: the job runs on one thread; a run's cost is its process CPU time (unlike wall
  time, it does not grow when other processes load the machine), reported as a ratio to naive
  fusion's. G-Blend's cost includes its estimates (one copy per head trained in lockstep).

Caveats that hold whatever the numbers below (from the first landing's side runs):

- An error rate measured on ~100 holdout samples has a standard error of several points, so
  late online estimates, whose changes are 1-2 points of error, follow noise. The paper's
  Kinetics holdout held ~19k videos. `digits_small` holds out 48 pairs: read its G-Blend rows
  as what G-Blend does with a tiny V.
- With the loss as the metric over a 30-epoch offline horizon, every head's holdout
  cross-entropy can end above its start (the models become overconfident while their accuracy
  improves), every dG is negative and the estimate is rejected; hence the error metric.
- `auxiliary_1` puts weight 1 on every head: with the learning rate tuned for weights that sum
  to 1, its steps are k times larger, and runs may diverge (reported as such, not hidden).
- `uncertainty`: at its optimum a head's learned weight is `exp(-s_k) = 1/(2 L_k)`, so a head
  whose training loss goes to 0 (the memorized modality, then the fused head) gets an
  unbounded weight; its steps blow up (training losses of 1e2-1e7 in the per-epoch log) and
  that head ends near chance while the other heads keep training. Its ensemble survives on
  the heads that generalize. This is the method as published, at the job's learning rate.
"""


BENCH = """\
## The optimizer comparison (`make bench`)

`benchmarks/perf/test_optimizers.py` times one training run per optimizer (SGD with momentum,
Adam, AdaGrad) and method (visual alone, naive, G-Blend offline, G-Blend online) on
`synthetic_av` through
pytest-benchmark (`pedantic`, 1 round), and records every predictor's test accuracy, the
weights and the seed in `extra_info`. `make bench` runs it with the blender-overhead benchmark
and prints the paper's Table 3 shape:

```sh
python -m pytest benchmarks/perf --benchmark-only --benchmark-json=reports/bench.json
python -m benchmarks.perf.table3 reports/bench.json
```

To compare two versions of the library, save a run before the change and compare after it
(pytest-benchmark keeps saved runs under `.benchmarks/`):

```sh
python -m pytest benchmarks/perf/test_optimizers.py --benchmark-only --benchmark-save=before
# ... change the library ...
python -m pytest benchmarks/perf/test_optimizers.py --benchmark-only \\
    --benchmark-save=after --benchmark-compare=0001
python -m benchmarks.perf.table3 .benchmarks/*/0001_before.json .benchmarks/*/0002_after.json
```
"""


def _load(meta: dict[str, Any]) -> str:
    load = meta.get("load_average")
    return "unknown" if not load else ", ".join(f"{x:.1f}" for x in load)


def render_doc(results: Sequence[RunResult], meta: dict[str, Any]) -> str:
    """The whole ``docs/benchmark.md`` page for a run."""
    m = meta["machine"]
    return "\n".join(
        [
            SETUP,
            "## Results",
            "",
            f"Measured {meta['date']} with `{meta['command']}`: {meta['seconds']:.0f} s wall, "
            f"{meta.get('cpu_seconds', 0):.0f} s CPU (the difference is other load on the "
            f"machine; load average at the end {_load(meta)}), on {m['platform']} "
            f"({m['cpu_count']} CPUs, Python {m['python']}, torch {m['torch']}, "
            f"{m['torch_threads']} torch thread(s)). Costs are ratios of CPU time measured in the "
            "same job.",
            "",
            LEGEND,
            "",
            "Methods:",
            "",
            methods_legend([r.method for r in results]),
            "",
            markdown_table(results),
            "## Verdicts",
            "",
            "Computed from the numbers above by `benchmarks.runner.verdicts` (not written by "
            "hand).",
            "",
            "\n\n".join(verdicts(results)),
            "",
            BENCH,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.runner.benchmark_doc", description=__doc__.splitlines()[0]
    )
    parser.add_argument("json", type=Path, help="a run folder's embedded_benchmark.json")
    parser.add_argument("out", type=Path, help="the page to write (docs/benchmark.md)")
    args = parser.parse_args(argv)
    if not args.json.is_file():
        parser.error(f"argument json: no file {str(args.json)!r}; run `python -m benchmarks` first")
    results, meta = load_run(args.json)
    args.out.write_text(render_doc(results, meta))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
