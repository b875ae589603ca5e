"""Tables of the main job's results, in the shape of the paper's Table 5."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence

from benchmarks.runner._train import RunResult


def _mean_std(values: Sequence[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f}"


def _weights(results: Sequence[RunResult]) -> str:
    heads = list(results[0].weights)
    mean = {h: statistics.mean(r.weights[h] for r in results) for h in heads}
    return ", ".join(f"{h} {w:.2f}" for h, w in mean.items())


def markdown_table(results: Sequence[RunResult]) -> str:
    """One table per (dataset, optimizer): test top-1 (%) per method, mean ± std over seeds.

    ``head`` is the method's own head: its modality head for a single modality, else the
    fused head; ``ensemble`` is the weight-averaged ensemble of the heads; ``selected on V`` is
    whichever of the two scored higher on the holdout V (blends only; no test peeking).
    """
    groups: dict[tuple[str, str], dict[str, list[RunResult]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in results:
        groups[(r.dataset, r.optimizer)][r.method].append(r)
    lines = []
    for (dataset, optimizer), by_method in groups.items():
        seeds = sorted({r.seed for runs in by_method.values() for r in runs})
        lines += [
            f"### {dataset}, {optimizer} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
            "",
            "| method | test top-1: head | ensemble | selected on V | final weights | s/run |",
            "|---|---|---|---|---|---|",
        ]
        for method, runs in by_method.items():
            ensemble = [r.ensemble_accuracy for r in runs if r.ensemble_accuracy is not None]
            selected = [r.selected_accuracy for r in runs if r.selected_accuracy is not None]
            picks = "/".join(sorted({r.selected for r in runs if r.selected}))
            lines.append(
                f"| {method} | {_mean_std([r.accuracy for r in runs])} | "
                f"{_mean_std(ensemble) if ensemble else '—'} | "
                f"{f'{_mean_std(selected)} ({picks})' if selected else '—'} | "
                f"{_weights(runs) if method.startswith(('gblend', 'auxiliary')) else '—'} | "
                f"{statistics.mean(r.seconds for r in runs):.1f} |"
            )
        lines.append("")
    return "\n".join(lines)


def verdicts(results: Sequence[RunResult]) -> list[str]:
    """Per (dataset, optimizer): does naive fusion fall below the best single modality, and
    does G-Blend (offline, online; its predictor selected on V) beat both? Plain statements of
    the measured means."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        value = r.selected_accuracy if r.selected_accuracy is not None else r.accuracy
        groups[(r.dataset, r.optimizer)][r.method].append(value)
    out = []
    for (dataset, optimizer), acc in groups.items():
        means = {m: statistics.mean(v) for m, v in acc.items()}
        singles = {m: v for m, v in means.items() if m.startswith("single:")}
        if not singles or "naive" not in means:
            continue
        best_single, best = max(singles.items(), key=lambda kv: kv[1])
        parts = [
            f"{dataset}/{optimizer}: best single {best_single} {100 * best:.1f}, "
            f"naive {100 * means['naive']:.1f} "
            f"({'below' if means['naive'] < best else 'not below'} "
            "the best single modality)"
        ]
        parts.extend(
            f"{g} {100 * means[g]:.1f} ({100 * (means[g] - best):+.1f} vs best single, "
            f"{100 * (means[g] - means['naive']):+.1f} vs naive)"
            for g in ("gblend_offline", "gblend_online")
            if g in means
        )
        out.append("; ".join(parts))
    return out
