"""Estimator study: the rolling/gradient estimators against the baselines on embedded data.

``python -m benchmarks.perf.estimator_study --seeds 0 1 2`` trains, per seed and on the same
split, every single modality, naive fusion, equal-weight auxiliary losses, exact G-Blend
offline/online (``RetrainEstimator``, Algorithm 1) and the ``RollingEstimator`` variants, on one
thread, and prints: test top-1 of the fused head, of the weighted ensemble of heads and of the
predictor chosen on the holdout (the ensemble unless the fused head beats it there by a paired
standard error, ``blendopt.BlendEnsemble.choose``); wall time as a ratio to naive training
measured in the same process (runs interleaved per seed); the final weights and the weight
trajectories. With
``--compare`` it also runs the exact estimator (Algorithm 1, look-ahead one super-epoch) at the
boundaries of a rolling run, on the same checkpoints, without applying it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

import blendopt
from benchmarks.runner import SETUPS, TensorBatches, evaluate, loss_fn, make_optimizer
from benchmarks.runner._train import BATCH_SIZE, HOLDOUT, online_schedule, predict

#: The main job's datasets (``mfeat_small`` is the regime built from real data there).
STUDY_SETUPS = dict(SETUPS)

EstimatorFactory = Callable[..., tuple[Any, Any]]


def per_sample_loss(model: torch.nn.Module, batch: Any) -> dict[str, torch.Tensor]:
    """Unreduced cross-entropy per head (per-sample values for paired standard errors)."""
    inputs, target = batch
    return {
        h: torch.nn.functional.cross_entropy(z, target, reduction="none")
        for h, z in model(inputs).items()
    }


def _rolling_variant(probe: bool = True, **kwargs: Any) -> EstimatorFactory:
    def make(model, holdout, probe_data, epochs, seed, steps_per_epoch):
        est = blendopt.RollingEstimator(
            model,
            loss_fn,
            TensorBatches(holdout, 64, shuffle=True)
            if not isinstance(kwargs.get("mode"), blendopt.LossMode)
            else TensorBatches(holdout, 512, shuffle=False),
            probe=None
            if not probe
            else (
                TensorBatches(probe_data, 64, shuffle=True)
                if not isinstance(kwargs.get("mode"), blendopt.LossMode)
                else TensorBatches(probe_data, 512, shuffle=False)
            ),
            seed=seed,
            **kwargs,
        )
        schedule = (
            blendopt.Online(every=steps_per_epoch * 3, unit="step")
            if kwargs.get("mode") == "loss"
            else None
        )
        return est, schedule

    return make


def _exact(kind: str, noise_aware: bool = False) -> EstimatorFactory:
    def make(model, holdout, probe, epochs, seed, steps_per_epoch, train_batches=None):
        est = blendopt.RetrainEstimator(
            model,
            loss_fn,
            train_batches,
            TensorBatches(holdout, 512, shuffle=False),
            probe=TensorBatches(probe, 512, shuffle=False),
            metric=blendopt.top1_error(predict),
            eps=(1.0 / len(holdout)) ** 2,
            seed=seed,
            noise_aware=noise_aware,
        )
        schedule = (
            blendopt.Offline(horizon=epochs) if kind == "offline" else online_schedule(epochs)
        )
        return est, schedule

    make.needs_train = True  # type: ignore[attr-defined]
    return make


# name -> (fixed weights rule or estimator factory)
VARIANTS: dict[str, Any] = {
    "rolling": _rolling_variant(probe=False),  # the default: gradient mode, private params
    "rolling_probe": _rolling_variant(),
    "rolling_all_params": _rolling_variant(probe=False, mode=blendopt.GradientMode(params="all")),
    "rolling_correlated": _rolling_variant(
        probe=False, mode=blendopt.GradientMode(correlated=True)
    ),
    "rolling_raw": _rolling_variant(probe=False, shrink=False, floor=0.0, smoothing=0.0),
    "rolling_loss": _rolling_variant(mode=blendopt.LossMode(metric=per_sample_loss)),
    # short runs: measure every 2 steps, estimate every 20 (the default needs >= 80 steps)
    "rolling_short": _rolling_variant(
        probe=False, mode=blendopt.GradientMode(interval=2), every=20
    ),
    "gblend_offline": _exact("offline"),
    "gblend_online": _exact("online"),
    "gblend_online_noise": _exact("online", noise_aware=True),
}


def run(
    dataset: str, method: str, seed: int, *, optimizer: str = "sgd", compare: bool = False
) -> dict[str, Any]:
    """One training run; returns accuracies, weights, trajectory and seconds."""
    setup = STUDY_SETUPS[dataset]
    train_full, test = setup.load("train", seed), setup.load("test", seed)
    split = blendopt.holdout_split(
        len(train_full), holdout=HOLDOUT, labels=train_full.targets, seed=seed
    )
    train, holdout, probe = (
        train_full.subset(split.train),
        train_full.subset(split.holdout),
        train_full.subset(split.probe),
    )
    start, cpu_start = time.perf_counter(), time.process_time()
    torch.manual_seed(seed)
    model = setup.build_model(train)
    heads, fused = model.head_names, model.fused_head
    inner = make_optimizer(optimizer, model.parameters(), setup.lr)
    batches = TensorBatches(train, BATCH_SIZE, shuffle=True)
    epochs = setup.epochs
    if method == "naive":
        blender = blendopt.GradientBlender(inner, heads, {h: float(h == fused) for h in heads})
    elif method == "auxiliary":
        blender = blendopt.GradientBlender(inner, heads, blendopt.functional.uniform_weights(heads))
    elif method.startswith("single:"):
        m = method.split(":", 1)[1]
        blender = blendopt.GradientBlender(inner, heads, {h: float(h == m) for h in heads})
    else:
        factory = VARIANTS[method]
        extra = {"train_batches": batches} if getattr(factory, "needs_train", False) else {}
        est, schedule = factory(model, holdout, probe, epochs, seed, len(batches), **extra)
        blender = blendopt.GradientBlender(inner, heads, est, schedule=schedule)
    comparisons = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        for epoch in range(epochs):
            blender.start_epoch()
            if compare and epoch in _boundaries(epochs):
                comparisons.append(_exact_at(model, inner, batches, holdout, probe, seed, epoch))
                comparisons[-1]["rolling"] = blender.weights
            model.train()
            for batch in batches:
                blender.zero_grad()
                blender.backward(loss_fn(model, batch))
                blender.step()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    head_acc, ens = evaluate(model, test, blender.weights)
    # The ensemble unless the fused head beats it on V by a paired standard error (blendopt).
    choice = blendopt.BlendEnsemble.from_holdout(
        model,
        TensorBatches(holdout, 512, shuffle=False),
        {"ensemble": blender.weights, "fused": {fused: 1.0}},
        reference="ensemble",
    ).choice
    selected = choice.chosen
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "fused": head_acc[fused],
        "heads": head_acc,
        "ensemble": ens,
        "selected": selected,
        "selected_acc": ens if selected == "ensemble" else head_acc[fused],
        "selection": choice.to_dict(),
        "weights": blender.weights,
        "trajectory": [(r["step"], r["kind"], r["weights"]) for r in blender.history],
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "comparisons": comparisons,
    }


def _boundaries(epochs: int) -> set[int]:
    sched = online_schedule(epochs)
    return {e for e in range(1, epochs) if sched.is_due(e)}


def _exact_at(model, inner, batches, holdout, probe, seed, epoch) -> dict[str, Any]:
    """Algorithm 1 at this checkpoint (not applied), looking ahead one super-epoch."""
    setup_every = online_schedule(30).every
    est = blendopt.estimate_weights(
        model,
        loss_fn,
        batches,
        TensorBatches(holdout, 512, shuffle=False),
        optimizer=inner,
        epochs=setup_every,
        probe=TensorBatches(probe, 512, shuffle=False),
        metric=blendopt.top1_error(predict),
        eps=(1.0 / len(holdout)) ** 2,
        seed=seed + 1000 * epoch,
    )
    return {"epoch": epoch, "exact": est.weights, "exact_accepted": est.accepted}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic_av", choices=sorted(STUDY_SETUPS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["naive", "auxiliary", "single", *VARIANTS],
        help="naive, auxiliary, single, and any of " + ", ".join(VARIANTS),
    )
    parser.add_argument("--compare", action="store_true", help="rolling vs exact at boundaries")
    parser.add_argument("--json", default=None, help="write every run's record to this file")
    parser.add_argument("--from-json", default=None, help="only print the tables of a saved run")
    parser.add_argument(
        "--timing",
        type=int,
        default=0,
        metavar="N",
        help="only time: N interleaved rounds of naive and each --methods entry (seed = first)",
    )
    parser.add_argument(
        "--flops",
        action="store_true",
        help="only count FLOPs (torch FlopCounterMode) of naive and each --methods entry",
    )
    args = parser.parse_args(argv)
    if args.flops:
        print(flops(args.dataset, args.methods, args.seeds[0], args.optimizer))
        return
    if args.from_json:
        with open(args.from_json) as f:
            records = json.load(f)
        methods = list(dict.fromkeys(r["method"] for r in records))
        print(summary(records, methods, sorted({r["seed"] for r in records})))
        print(trajectories(records))
        return
    torch.set_num_threads(1)
    if args.timing:
        print(timing(args.dataset, args.methods, args.seeds[0], args.timing, args.optimizer))
        return
    modalities = STUDY_SETUPS[args.dataset].load("train", 0).modalities
    methods = []
    for m in args.methods:
        methods += [f"single:{x}" for x in modalities] if m == "single" else [m]
    if "naive" not in methods:
        methods.insert(0, "naive")
    records = []
    run(args.dataset, "naive", args.seeds[0], optimizer=args.optimizer)  # warm-up, discarded
    for seed in args.seeds:
        naive_again = None
        for method in [*methods, "naive"]:  # naive first and last: its time is the mean of both
            rec = run(args.dataset, method, seed, optimizer=args.optimizer)
            if method == "naive" and naive_again is None:
                naive_again = rec
            elif method == "naive":
                for key in ("seconds", "cpu_seconds"):
                    naive_again[key] = (naive_again[key] + rec[key]) / 2
                continue
            records.append(rec)
            print(
                f"seed {seed} {method:20s} fused {rec['fused']:.3f} ens {rec['ensemble']:.3f} "
                f"sel {rec['selected_acc']:.3f} ({rec['selected']}) {rec['seconds']:.2f}s "
                + " ".join(f"{h}={w:.2f}" for h, w in rec["weights"].items()),
                flush=True,
            )
        if args.compare:
            rec = run(args.dataset, "rolling", seed, optimizer=args.optimizer, compare=True)
            rec["method"] = "rolling+compare"
            records.append(rec)
            for c in rec["comparisons"]:
                print(
                    f"  compare epoch {c['epoch']}: rolling "
                    + " ".join(f"{h}={w:.2f}" for h, w in c["rolling"].items())
                    + " | exact "
                    + " ".join(f"{h}={w:.2f}" for h, w in c["exact"].items())
                    + ("" if c["exact_accepted"] else " (rejected)"),
                    flush=True,
                )
    print(summary(records, methods, args.seeds))
    print(trajectories(records))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)


def flops(dataset: str, methods: list[str], seed: int, optimizer: str) -> str:
    """Whole-run FLOPs (training, estimation and the final evaluation) as a ratio to naive.

    Independent of machine load; it counts matrix arithmetic only, not Python overhead, so it
    is the overhead a large model (where arithmetic dominates) would see.
    """
    from torch.utils.flop_counter import FlopCounterMode

    totals = {}
    for m in ["naive", *[m for m in methods if m != "naive"]]:
        counter = FlopCounterMode(display=False)
        with counter:
            run(dataset, m, seed, optimizer=optimizer)
        totals[m] = counter.get_total_flops()
    lines = ["| method | GFLOP | / naive |", "|---|---|---|"]
    lines += [f"| {m} | {t / 1e9:.2f} | {t / totals['naive']:.3f} |" for m, t in totals.items()]
    return "\n".join(lines)


def timing(dataset: str, methods: list[str], seed: int, rounds: int, optimizer: str) -> str:
    """Median per-round ratio to naive of wall and CPU time, runs interleaved round by round."""
    methods = [m for m in methods if m != "naive"]
    run(dataset, "naive", seed, optimizer=optimizer)  # warm-up
    ratios: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    for _ in range(rounds):
        base = run(dataset, "naive", seed, optimizer=optimizer)
        for m in methods:
            r = run(dataset, m, seed, optimizer=optimizer)
            ratios[m].append(
                (r["seconds"] / base["seconds"], r["cpu_seconds"] / base["cpu_seconds"])
            )
    lines = [
        f"Timing: {rounds} interleaved rounds, {dataset} seed {seed}, 1 thread "
        "(median ratio to the naive run of the same round; p10-p90 of the CPU ratio)",
        "| method | wall / naive | CPU / naive | CPU p10-p90 |",
        "|---|---|---|---|",
    ]
    for m, values in ratios.items():
        wall = statistics.median(v[0] for v in values)
        cpu = sorted(v[1] for v in values)
        lo, hi = cpu[int(0.1 * (len(cpu) - 1))], cpu[round(0.9 * (len(cpu) - 1))]
        lines.append(f"| {m} | {wall:.3f} | {statistics.median(cpu):.3f} | {lo:.2f}-{hi:.2f} |")
    return "\n".join(lines)


def trajectories(records: list[dict[str, Any]]) -> str:
    """Weight trajectories of the estimated methods, and the rolling-vs-exact comparison."""
    lines = ["", "Weight trajectories (step: weights at each estimate that changed them)"]
    for r in records:
        if not r["trajectory"] or r["method"].startswith(("single", "naive", "auxiliary")):
            continue
        points = [
            f"{step}:" + "/".join(f"{w:.2f}" for w in weights.values())
            for step, kind, weights in r["trajectory"]
            if kind == "estimate"
        ]
        peak = max((max(weights.values()) for _, _, weights in r["trajectory"]), default=0.0)
        lines.append(
            f"- {r['method']} seed {r['seed']} (max weight {peak:.2f}): " + " ".join(points)
        )
    compared = [r for r in records if r["comparisons"]]
    if compared:
        lines += ["", "| seed | epoch | rolling (in use) | exact (Algorithm 1, same checkpoint) |"]
        lines.append("|---|---|---|---|")
        for r in compared:
            for c in r["comparisons"]:
                fmt = lambda w: ", ".join(f"{h} {x:.2f}" for h, x in w.items())  # noqa: E731
                rejected = "" if c["exact_accepted"] else " (rejected)"
                lines.append(
                    f"| {r['seed']} | {c['epoch']} | {fmt(c['rolling'])} | {fmt(c['exact'])}"
                    f"{rejected} |"
                )
    return "\n".join(lines)


def summary(records: list[dict[str, Any]], methods: list[str], seeds: list[int]) -> str:
    """Markdown table: mean ± std over seeds, and time vs naive (per-seed ratio, then mean)."""
    naive = {r["seed"]: r["seconds"] for r in records if r["method"] == "naive"}
    naive_cpu = {r["seed"]: r["cpu_seconds"] for r in records if r["method"] == "naive"}
    lines = [
        "| method | fused | ensemble | chosen on V | best head | wall / naive | CPU / naive "
        "| final weights |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ms(xs: list[float]) -> str:
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{100 * statistics.mean(xs):.1f} ± {100 * sd:.1f}"

    for m in methods:
        rs = [r for r in records if r["method"] == m]
        if not rs:
            continue
        ratio = statistics.mean(r["seconds"] / naive[r["seed"]] for r in rs)
        cpu = statistics.mean(r["cpu_seconds"] / naive_cpu[r["seed"]] for r in rs)
        heads = list(rs[0]["weights"])
        mean_w = {h: statistics.mean(r["weights"][h] for r in rs) for h in heads}
        best_head = ms([max(r["heads"].values()) for r in rs])
        picks = "/".join(sorted({r["selected"] for r in rs if r.get("selected")}))
        lines.append(
            f"| {m} | {ms([r['fused'] for r in rs])} | {ms([r['ensemble'] for r in rs])} | "
            f"{ms([r['selected_acc'] for r in rs])}{f' ({picks})' if picks else ''} | "
            f"{best_head} | {ratio:.2f} | {cpu:.2f} | "
            + ", ".join(f"{h} {w:.2f}" for h, w in mean_w.items())
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
