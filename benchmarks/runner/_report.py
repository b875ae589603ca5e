"""Tables and verdicts of the main job (the shape of the paper's Table 5), computed from runs."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from scipy import stats

from benchmarks.runner._methods import METHODS
from benchmarks.runner._predictors import decomposition_table, predictors_table
from benchmarks.runner._train import RunResult

#: The columns' legend (printed once per report).
LEGEND = """\
Columns (test top-1 %, mean ± std over seeds):
- **own**: the method's own predictor: its modality's head (single), the averaged
  single-modality models (ensemble), else the fused head;
- **fused / ens. last / ens. avg**: for methods that train several heads (auxiliary,
  uncertainty, G-Blend): the fused head alone; the ensemble of every head's probabilities
  weighted by the last blend weights; the same with the weights averaged over the steps;
- **selected on V**: the predictor chosen on the holdout V (the pick in brackets; no test data
  is used): first the prediction weights (uniform, unless the last or averaged weights beat
  uniform's top-1 on V by more than one paired standard error), then that ensemble unless the
  fused head beats it the same way (`blendopt.BlendEnsemble.choose`);
- **Predictors** table: the same with the ensemble at uniform weights and the prediction
  weights chosen on V (stage 1 alone);
- **Decomposition** table: training weights {OGR: a G-Blend run; equal: `auxiliary`} ×
  prediction weights {OGR (the G-Blend run's averaged weights, same seed), uniform, chosen on
  V among uniform and that run's last and averaged weights}; no extra training;
- **cost**: CPU seconds per run (process time; one thread) as a ratio to naive fusion's,
  same dataset and optimizer;
- **(k/n diverged)**: k of the n seeds hit a non-finite loss; training stopped there and the
  model was evaluated as it was (these runs count in the mean).
- **Verdicts**: a difference is the mean over the seeds both methods ran; the bracket is its
  95% confidence interval from a paired t-test over those seeds (seed s gives every method the
  same split and initialization), "within noise" when it holds 0."""


def _mean(values: Iterable[float]) -> float:
    return statistics.mean(values)


def _std(values: Sequence[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    if len(present) == 1:
        return f"{100 * present[0]:.1f}"
    return f"{100 * _mean(present):.1f} ± {100 * _std(present):.1f}"


def _weights(weights: Sequence[dict[str, float]]) -> str:
    heads = list(weights[0])
    return ", ".join(f"{h} {_mean([w[h] for w in weights]):.2f}" for h in heads)


def _groups(results: Sequence[RunResult]) -> dict[tuple[str, str], dict[str, list[RunResult]]]:
    groups: dict[tuple[str, str], dict[str, list[RunResult]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in results:
        groups[(r.dataset, r.optimizer)][r.method].append(r)
    return groups


def _cost(r: RunResult) -> float:
    return r.cpu_seconds if r.cpu_seconds > 0 else r.seconds


def cost_ratios(results: Sequence[RunResult]) -> dict[tuple[str, str, str], float]:
    """(dataset, optimizer, method) -> mean CPU seconds per run / naive's (where naive ran).

    The job runs on one thread, so a run's process CPU time is its cost on an idle core and,
    unlike wall time, does not grow when other processes load the machine. Runs without a CPU
    time (older reports) fall back to wall seconds.
    """
    out = {}
    for (dataset, optimizer), by_method in _groups(results).items():
        if "naive" not in by_method:
            continue
        naive = _mean([_cost(r) for r in by_method["naive"]])
        for method, runs in by_method.items():
            out[(dataset, optimizer, method)] = _mean([_cost(r) for r in runs]) / max(naive, 1e-9)
    return out


def markdown_table(results: Sequence[RunResult]) -> str:
    """One table per (dataset, optimizer), one row per method, one column per predictor."""
    costs = cost_ratios(results)
    lines = []
    for (dataset, optimizer), by_method in _groups(results).items():
        seeds = sorted({r.seed for runs in by_method.values() for r in runs})
        lines += [
            f"### {dataset}, {optimizer} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
            "",
            "| method | own | fused | ens. last | ens. avg | selected on V | cost | "
            "final weights (avg over steps) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for method, runs in by_method.items():
            multi = runs[0].ensemble_accuracy is not None
            picks = "/".join(sorted({r.selected for r in runs if r.selected}))
            cost = costs.get((dataset, optimizer, method))
            weights = "—"
            if multi:
                weights = _weights([r.weights for r in runs])
                if runs[0].average_weights is not None:
                    weights += f" ({_weights([r.average_weights or r.weights for r in runs])})"
            diverged = sum(r.diverged is not None for r in runs)
            label = f"{method} ({diverged}/{len(runs)} diverged)" if diverged else method
            lines.append(
                f"| {label} | {_fmt([r.accuracy for r in runs])} | "
                f"{_fmt([r.predictor('fused') for r in runs])} | "
                f"{_fmt([r.ensemble_accuracy for r in runs])} | "
                f"{_fmt([r.ensemble_avg_accuracy for r in runs])} | "
                f"{_fmt([r.selected_accuracy for r in runs])}{f' ({picks})' if picks else ''} | "
                f"{'—' if cost is None else f'{cost:.2f}×'} | {weights} |"
            )
        lines.append("")
        for title, table in (
            ("Predictors", predictors_table(by_method)),
            ("Decomposition", decomposition_table(by_method)),
        ):
            if table:
                lines += [f"**{title}** ({dataset}, {optimizer}):", "", *table]
    return "\n".join(lines)


def methods_legend(names: Sequence[str]) -> str:
    """One line per registered method that ran (its summary and source)."""
    return "\n".join(f"- `{n}`: {METHODS[n].summary}" for n in dict.fromkeys(names) if n in METHODS)


#: Seed -> test accuracy of one method's predictor: runs of the same seed share the split and
#: the initialization, so two methods are compared seed by seed.
BySeed = Mapping[int, float]


def paired_difference(a: BySeed, b: BySeed) -> str:
    """'+x.x points' (the mean of ``a - b`` over their common seeds) with its 95% confidence
    interval by a paired t-test (``scipy.stats.ttest_rel``); 'within noise' when the interval
    holds 0. One common seed gives no interval; a difference the same on every seed, none."""
    seeds = sorted(a.keys() & b.keys())
    x, y = [a[s] for s in seeds], [b[s] for s in seeds]
    diff = _mean(x) - _mean(y)
    text = f"{100 * diff:+.1f} points"
    if len(seeds) < 2:
        return f"{text} [one seed: no interval]"
    if len({round(u - v, 12) for u, v in zip(x, y, strict=True)}) == 1:  # t is undefined
        return f"{text} [the same on all {len(seeds)} paired seeds]"
    low, high = stats.ttest_rel(x, y).confidence_interval(0.95)
    noise = "; within noise" if low <= 0 <= high else ""
    return f"{text} [95% CI {100 * low:+.1f}, {100 * high:+.1f}; {len(seeds)} paired seeds{noise}]"


def _pct(values: BySeed) -> str:
    return f"{100 * _mean(values.values()):.1f}%"


def decomposition_verdict(
    dataset: str, optimizer: str, by_method: dict[str, list[RunResult]]
) -> str | None:
    """Where a G-Blend result comes from: the training weights (OGR- vs equal-trained model,
    both read with uniform weights), the prediction weights (the equal-trained model read with
    the OGR weights vs uniform), and chosen on V vs the equal-weight ensemble; ``None`` without
    an ``auxiliary`` run and a G-Blend run of the same seeds."""
    aux_runs = by_method.get("auxiliary", [])
    text = []
    for g in (m for m in by_method if m.startswith("gblend")):
        runs = [r for r in by_method[g] if r.uniform_accuracy is not None]
        aux = [r for r in aux_runs if g in r.cross and r.uniform_accuracy is not None]
        if not runs or not aux:
            continue
        equal = {r.seed: r.uniform_accuracy for r in aux}
        trained = {r.seed: r.uniform_accuracy for r in runs}
        predicted = {r.seed: r.cross[g]["ogr"] for r in aux}
        chosen = {r.seed: r.prediction_accuracy for r in runs}
        stayed = all(
            abs(w - 1 / len(r.weights)) < 1e-9
            for r in runs
            for w in (r.average_weights or r.weights).values()
        )
        note = " (no estimate: its weights stayed uniform)" if stayed else ""
        text.append(
            f"{g}{note}: training with its OGR weights instead of equal weights (both read with "
            f"uniform weights) gives {_pct(trained)} vs {_pct(equal)} "
            f"({paired_difference(trained, equal)}); reading the equal-weight model with the OGR "
            f"weights instead of uniform gives {_pct(predicted)} "
            f"({paired_difference(predicted, equal)}); its prediction weights chosen on V give "
            f"{_pct(chosen)} ({paired_difference(chosen, equal)} vs "
            "the equal-weight ensemble)."
        )
    if not text:
        return None
    return f"**{dataset}, {optimizer}, where the gain comes from**: " + " ".join(text)


def verdicts(results: Sequence[RunResult]) -> list[str]:
    """One paragraph per (dataset, optimizer), computed from the measured means.

    Compares naive fusion with the best single modality, then each G-Blend method (its
    predictor chosen on V, and its fused head alone) with the best single modality and the best
    other baseline (each on its predictor chosen on V), seed by seed: a difference whose paired
    95% confidence interval holds 0 is called within noise. Where ``auxiliary`` ran
    beside G-Blend, a paragraph first splits the difference (:func:`decomposition_verdict`).
    """
    costs = cost_ratios(results)
    out = []
    for (dataset, optimizer), by_method in _groups(results).items():
        decomposition = decomposition_verdict(dataset, optimizer, by_method)
        if decomposition is not None:
            out.append(decomposition)
        best_of = {m: {r.seed: r.best_on_v for r in runs} for m, runs in by_method.items()}
        singles = {m: v for m, v in best_of.items() if m.startswith("single:")}
        if not singles or "naive" not in best_of:
            continue
        n = len({r.seed for runs in by_method.values() for r in runs})
        single, single_v = max(singles.items(), key=lambda kv: _mean(kv[1].values()))
        naive_v = best_of["naive"]
        below = _mean(naive_v.values()) < _mean(single_v.values())
        text = [
            f"**{dataset}, {optimizer}** ({n} seed{'s' if n > 1 else ''}): the best single "
            f"modality is {single} ({_pct(single_v)}); naive fusion scores "
            f"{_pct(naive_v)} ({paired_difference(naive_v, single_v)}), so this dataset "
            f"{'is' if below else 'is not'} in the paper's regime."
        ]
        baselines = {
            m: v
            for m, v in best_of.items()
            if not m.startswith(("single:", "gblend")) and m in METHODS
        }
        if baselines:
            base, base_v = max(baselines.items(), key=lambda kv: _mean(kv[1].values()))
            text.append(
                f"The best baseline other than G-Blend is {base} ({_pct(base_v)}, "
                f"predictor chosen on V)."
            )
        else:
            base, base_v = single, single_v
        for method in (m for m in by_method if m.startswith("gblend")):
            runs = by_method[method]
            chosen = best_of[method]
            fused = {r.seed: r.head_accuracy["fused"] for r in runs if "fused" in r.head_accuracy}
            picks = "/".join(sorted({r.selected for r in runs if r.selected}))
            cost = costs.get((dataset, optimizer, method))
            sentence = (
                f"{method} reaches {_pct(chosen)} with the predictor chosen on V "
                f"({picks}): {paired_difference(chosen, single_v)} vs {single}"
            )
            if base != single:
                sentence += f", {paired_difference(chosen, base_v)} vs {base}"
            if fused:
                sentence += f"; its fused head alone scores {_pct(fused)}: "
                sentence += f"{paired_difference(fused, single_v)} vs {single}"
                if base != single:
                    sentence += f", {paired_difference(fused, base_v)} vs {base}"
            if cost is not None:
                sentence += f"; it costs {cost:.1f}× naive"
            text.append(sentence + ".")
        out.append(" ".join(text))
    return out
