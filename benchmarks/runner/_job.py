"""The main job's loop: every (dataset, seed, method, optimizer) run, progress, report, plots."""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from argparse import Namespace
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.data.embedded import MultiModalTensorDataset
from benchmarks.runner._methods import METHODS, Method, method_named, select_methods
from benchmarks.runner._predictors import attach_cross
from benchmarks.runner._report import LEGEND, cost_ratios, markdown_table, methods_legend, verdicts
from benchmarks.runner._setups import SETUPS
from benchmarks.runner._train import RunResult, run_one

Pair = tuple[MultiModalTensorDataset, MultiModalTensorDataset]

#: Rough cost of a run relative to naive fusion, for the progress bar's ETA only.
_EXPECTED_COST = {"gblend": 3.5, "ensemble": 1.0, "early_stop": 0.6}


def expected_cost(method: Method, modalities: int) -> float:
    """Rough cost of ``method`` relative to naive (ETA weighting; the report measures it)."""
    if method.kind == "ensemble":
        return float(modalities)
    if method.kind == "early_stop":
        return 0.3 + method.fraction
    return _EXPECTED_COST.get(method.kind, 1.0)


def machine() -> dict[str, Any]:
    """The machine and software a run was measured on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def _progress(total: float, enabled: bool) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a `bench` extra: no bar without it, the lines remain
        return None
    if not enabled:
        return None
    return tqdm(
        total=round(total, 1),
        desc="main job",
        unit="naive-run",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
        file=sys.stderr,
        dynamic_ncols=True,
    )


def _say(bar: Any, line: str) -> None:
    if bar is not None:
        bar.write(line, file=sys.stdout)
    else:
        print(line, flush=True)


def _run_line(r: RunResult) -> str:
    extra = ""
    if r.ensemble_accuracy is not None:
        extra = (
            f", fused {100 * r.head_accuracy['fused']:.1f}, ens. {100 * r.ensemble_accuracy:.1f}"
            f", selected {r.selected} {100 * (r.selected_accuracy or 0):.1f}"
        )
    if r.diverged:
        extra += f" [diverged: {r.diverged}]"
    return (
        f"  seed {r.seed} {r.optimizer:7s} {r.method:16s} test top-1 {100 * r.accuracy:5.1f}"
        f"{extra} ({r.seconds:.1f} s)"
    )


def plan_job(
    datasets: Sequence[str], methods: Sequence[str] | None
) -> tuple[dict[str, Pair], list[tuple[str, list[Method]]]]:
    """Seed-0 data of every dataset and the methods to run on each.

    Raises:
        ValueError: a ``single:<m>`` method names a modality of none of the datasets.
    """
    data = {name: SETUPS[name].load_pair(0) for name in datasets}
    plan: list[tuple[str, list[Method]]] = []
    for name in datasets:
        modalities = data[name][0].modalities
        wanted = methods
        if wanted is not None:
            wanted = [n for n in wanted if not n.startswith("single:") or n[7:] in modalities]
        plan.append((name, select_methods(modalities, wanted)))
    if methods is not None:
        ran = {m.name for _, chosen in plan for m in chosen}
        missing = [n for n in methods if n.startswith("single:") and n not in ran]
        if missing:
            raise ValueError(
                f"argument --methods: {missing[0]!r} names a modality of none of the datasets "
                f"{list(datasets)}."
            )
    return data, plan


#: One run of the job: (dataset, seed, method name, optimizer).
Task = tuple[str, int, str, str]

_LOADED: dict[tuple[str, int], Pair] = {}  # this process's loaded datasets, by (name, seed)


def _pair(name: str, seed: int) -> Pair:
    """The ``(train, test)`` splits of ``name`` for ``seed``, loaded once per process."""
    if (name, seed) not in _LOADED:
        _LOADED[(name, seed)] = SETUPS[name].load_pair(seed)
    return _LOADED[(name, seed)]


def _warm_up(dataset: str, threads: int) -> None:
    """One short untimed run: the first training in a process pays one-off costs (allocator,
    kernel selection) that would inflate the first method's cost ratio."""
    torch.set_num_threads(threads)
    run_one(SETUPS[dataset], METHODS["naive"], epochs=1, data=_pair(dataset, 0))


def _run_task(task: Task, epochs: int | None, metric: str) -> tuple[RunResult, float]:
    """Run one task (in this process or a worker); also return its CPU seconds."""
    name, seed, method, optimizer = task
    pair = _pair(name, seed)  # loading is not part of the run's cost
    cpu = time.process_time()
    r = run_one(
        SETUPS[name],
        method_named(method),
        optimizer=optimizer,
        seed=seed,
        epochs=epochs,
        data=pair,
        metric=metric,
    )
    return r, time.process_time() - cpu


def _run_tasks(
    tasks: Sequence[Task], args: Namespace, bar: Any, costs: Sequence[float]
) -> tuple[list[RunResult], float]:
    """Run ``tasks`` in ``args.jobs`` processes (each with ``args.threads`` torch threads);
    results in task order, and the CPU seconds of all runs."""
    jobs = max(1, min(getattr(args, "jobs", 1), len(tasks)))
    results: list[RunResult | None] = [None] * len(tasks)
    cpu_total = 0.0
    header = {name for name, *_ in tasks}
    announced: set[str] = set()

    def done(index: int, r: RunResult, cpu: float) -> None:
        nonlocal cpu_total
        results[index] = r
        cpu_total += cpu
        if r.dataset not in announced and r.dataset in header:
            announced.add(r.dataset)
            _say(bar, f"== {r.dataset}: {SETUPS[r.dataset].description}")
        _say(bar, _run_line(r))
        if bar is not None:
            bar.update(costs[index])

    if jobs == 1:
        _warm_up(tasks[0][0], args.threads)
        for i, task in enumerate(tasks):
            done(i, *_run_task(task, args.epochs, args.metric))
        return [r for r in results if r is not None], cpu_total
    # Independent runs, each seeded by itself: processes change nothing but wall time. Spawned
    # (not forked) workers, so no torch thread pool state is inherited.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_warm_up, initargs=(tasks[0][0], args.threads)
    ) as pool:
        futures = {
            pool.submit(_run_task, task, args.epochs, args.metric): i
            for i, task in enumerate(tasks)
        }
        for future in concurrent.futures.as_completed(futures):
            done(futures[future], *future.result())
    return [r for r in results if r is not None], cpu_total


def run_job(args: Namespace, argv: Sequence[str] = ()) -> list[RunResult]:
    """Run the main job described by the parsed ``args`` and write its run folder.

    Runs go to ``args.jobs`` worker processes (1: in this process); each run is seeded by
    itself, so the results do not depend on the number of processes.

    Raises:
        ValueError: a ``single:<m>`` method names a modality of none of the datasets.
    """
    torch.set_num_threads(args.threads)
    data, plan = plan_job(args.datasets, args.methods)
    _LOADED.update({(name, 0): pair for name, pair in data.items()})  # loaded once, reused
    seeds = {n: args.seeds or SETUPS[n].seeds for n in args.datasets}
    tasks: list[Task] = []
    costs: list[float] = []
    for name, methods in plan:
        for seed in range(seeds[name]):
            for method in methods:
                for optimizer in args.optimizers:
                    tasks.append((name, seed, method.name, optimizer))
                    costs.append(expected_cost(method, len(data[name][0].modalities)))
    bar = _progress(sum(costs), not args.no_progress)
    start = time.perf_counter()
    try:
        results, cpu_seconds = _run_tasks(tasks, args, bar, costs)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - start
    attach_cross(results)  # the decomposition's equal × OGR cells: no training, logits kept
    meta = {
        "command": "python -m benchmarks " + " ".join(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "datasets": {n: SETUPS[n].description for n in args.datasets},
        "epochs": {n: args.epochs or SETUPS[n].epochs for n in args.datasets},
        "seeds": seeds,
        "metric": args.metric,
        "jobs": getattr(args, "jobs", 1),
    }
    write_run_folder(args.out, results, meta, plots=not args.no_plots)
    report = render_report(results, meta)
    print()
    print(report)
    print(f"total {seconds:.0f} s wall, {cpu_seconds:.0f} s CPU; wrote {args.out}/")
    if args.docs is not None:
        from benchmarks.runner.benchmark_doc import render_doc

        args.docs.write_text(render_doc(results, meta))
        print(f"wrote {args.docs}")
    return results


def render_report(results: Sequence[RunResult], meta: dict[str, Any], plots: str = "") -> str:
    """The Markdown report: tables, legend, verdicts (and the plots' list)."""
    names = [r.method for r in results]
    parts = [
        "# Main job report",
        "",
        f"`{meta['command']}`, {meta['date']}, {meta['seconds']:.0f} s wall "
        f"({meta.get('cpu_seconds', 0):.0f} s CPU) on "
        f"{meta['machine']['platform']} ({meta['machine']['cpu_count']} CPUs, "
        f"torch {meta['machine']['torch']}, {meta['machine']['torch_threads']} thread(s)).",
        "",
        LEGEND,
        "",
        "Methods:",
        "",
        methods_legend(names),
        "",
        markdown_table(results),
        "## Verdicts (computed from the numbers above)",
        "",
        "\n\n".join(verdicts(results)),
        "",
    ]
    if plots:
        parts += ["## Plots", "", plots, ""]
    return "\n".join(parts)


def _plot_points(results: Sequence[RunResult]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    costs = cost_ratios(results)
    grouped: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in results:
        grouped.setdefault((r.dataset, r.optimizer), {}).setdefault(r.method, []).append(
            r.best_on_v
        )
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for key, by_method in grouped.items():
        out[key] = [
            {
                "method": m,
                "cost": costs[(*key, m)],
                "accuracy": 100 * statistics.mean(v),
                "std": 100 * statistics.stdev(v) if len(v) > 1 else 0.0,
            }
            for m, v in by_method.items()
            if (*key, m) in costs
        ]
    return out


def write_plots(folder: Path, results: Sequence[RunResult]) -> list[Path]:
    """Per (dataset, optimizer): accuracy vs cost; for seed 0, weights over time (Fig. 5a) of
    the methods whose weights move, and per-head curves (Fig. 4) of the multi-head methods."""
    from benchmarks.runner import _plots

    written = []
    for (dataset, optimizer), points in _plot_points(results).items():
        stem = f"{dataset}_{optimizer}"
        if points:
            written.append(
                _plots.plot_accuracy_cost(
                    points,
                    folder / f"{stem}_accuracy_vs_cost.png",
                    title=f"{dataset}, {optimizer}: test top-1 (predictor chosen on V) vs cost",
                )
            )
        for r in results:
            if (r.dataset, r.optimizer) != (dataset, optimizer) or r.seed != 0 or not r.epochs:
                continue
            if r.method.startswith("gblend") or r.method == "uncertainty":
                written.append(
                    _plots.plot_weights(
                        r.epochs,
                        folder / f"{stem}_{r.method}_weights.png",
                        title=f"{r.method} weights ({dataset}, {optimizer}, seed 0)",
                    )
                )
            if r.ensemble_accuracy is not None and r.method in ("auxiliary_1", "gblend_offline"):
                written.append(
                    _plots.plot_curves(
                        r.epochs,
                        folder / f"{stem}_{r.method}_curves.png",
                        title=f"{r.method} ({dataset}, {optimizer}, seed 0)",
                    )
                )
    return written


def write_run_folder(
    folder: Path, results: Sequence[RunResult], meta: dict[str, Any], *, plots: bool = True
) -> Path:
    """Write ``embedded_benchmark.json``, the plots (``plots/``) and ``embedded_benchmark.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "embedded_benchmark.json").write_text(
        json.dumps({"meta": meta, "runs": [r.to_dict() for r in results]}, indent=1) + "\n"
    )
    listing = ""
    if plots:
        try:
            written = write_plots(folder / "plots", results)
        except ImportError:  # matplotlib is a `bench` extra
            written = []
        listing = "\n".join(f"- [{p.name}]({p.relative_to(folder)})" for p in written)
    path = folder / "embedded_benchmark.md"
    path.write_text(render_report(results, meta, listing))
    return path
