"""Prediction weights chosen on V, and the decomposition training weights × prediction weights.

A multi-head run keeps its heads' logits on V and on test (:attr:`RunResult.outputs`, not
written to the JSON), so the ensemble can be read with any prediction weights without training
again. The choice on V is :meth:`blendopt.BlendEnsemble.choose`: uniform weights unless the
last or time-averaged weights beat them by more than a paired standard error (stage 1, the
"prediction weights chosen on V"); then that ensemble unless the fused head beats it the same way
(stage 2, "chosen on V"). :func:`attach_cross` reads every multi-head run of a seed with the
OGR weights of each G-Blend run of the same seed (the decomposition's "equal × OGR" cells).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from blendopt import BlendEnsemble
from blendopt.functional import ensemble_probabilities

#: Logits of every head and the target, on V ("holdout") and on test ("test").
Outputs = dict[str, tuple[dict[str, Tensor], Tensor]]

#: The rule's significance threshold, in paired standard errors (docs/why.md).
Z = 1.0


def _accuracy(outputs: Outputs, weights: Mapping[str, float]) -> float:
    logits, target = outputs["test"]
    return float((ensemble_probabilities(logits, weights).argmax(1) == target).float().mean())


def choose(
    outputs: Outputs, candidates: Mapping[str, Mapping[str, float]], fused: str
) -> dict[str, Any]:
    """Both stages on V, and the test accuracy of what each stage chose.

    Args:
        outputs: the run's logits and targets on V and test.
        candidates: name -> prediction weights, tried against ``"ensemble_uniform"``.
        fused: the fused head's name (stage 2's alternative).

    Returns:
        ``{"uniform", "weights", "weights_accuracy", "predictor", "predictor_accuracy"}``:
        the uniform ensemble's test accuracy, then each stage's record (a ``PredictorChoice``
        as a dict) and the test accuracy of what it chose.
    """
    logits, target = outputs["holdout"]
    uniform = dict.fromkeys(logits, 1.0 / len(logits))
    pool = {"ensemble_uniform": uniform, **candidates}
    first = BlendEnsemble.choose(logits, target, pool, reference="ensemble_uniform", z=Z)
    pair = {first.chosen: first.weights, fused: {fused: 1.0}}
    second = BlendEnsemble.choose(logits, target, pair, reference=first.chosen, z=Z)
    return {
        "uniform": _accuracy(outputs, uniform),
        "weights": first.to_dict(),
        "weights_accuracy": _accuracy(outputs, first.weights),
        "predictor": second.to_dict(),
        "predictor_accuracy": _accuracy(outputs, second.weights),
    }


def attach_cross(results: Sequence[Any]) -> None:
    """Set ``cross[g]`` of every multi-head run: its ensemble read with the OGR weights of the
    G-Blend run ``g`` of the same dataset, optimizer and seed (``"ogr"``: its time-averaged
    weights; ``"chosen"``/``"pick"``: stage 1 among uniform and ``g``'s last and averaged
    weights). Runs without outputs (read back from JSON) are left as they are."""
    by_seed: dict[tuple[str, str, int], list[Any]] = defaultdict(list)
    for r in results:
        if r.outputs is not None:
            by_seed[(r.dataset, r.optimizer, r.seed)].append(r)
    for runs in by_seed.values():
        for g in (r for r in runs if r.method.startswith("gblend")):
            ogr = {"ensemble": g.weights, "ensemble_avg": g.average_weights or g.weights}
            for r in runs:
                picked = choose(r.outputs, ogr, "fused")
                r.cross[g.method] = {
                    "ogr": _accuracy(r.outputs, ogr["ensemble_avg"]),
                    "chosen": picked["weights_accuracy"],
                    "pick": picked["weights"]["chosen"],
                }


def _fmt(values: Sequence[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    mean = sum(present) / len(present)
    if len(present) == 1:
        return f"{100 * mean:.1f}"
    std = (sum((v - mean) ** 2 for v in present) / (len(present) - 1)) ** 0.5
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _picks(runs: Sequence[Any], pick: Any) -> str:
    return "/".join(sorted({p for p in map(pick, runs) if p}))


def decomposition_table(by_method: Mapping[str, Sequence[Any]]) -> list[str]:
    """Training weights {OGR, equal} × prediction weights {OGR, uniform, chosen on V}: one row
    per G-Blend method and one per (equal-weight ``auxiliary``, G-Blend method) pair."""
    gblends = [m for m in by_method if m.startswith("gblend")]
    if not gblends:
        return []
    lines = [
        "| trained with | predicted with OGR | uniform | prediction weights chosen on V |",
        "|---|---|---|---|",
    ]
    for g in gblends:
        runs = by_method[g]
        chosen = _picks(runs, lambda r: (r.prediction or {}).get("chosen"))
        lines.append(
            f"| {g} (OGR) | {_fmt([r.ensemble_avg_accuracy for r in runs])} | "
            f"{_fmt([r.uniform_accuracy for r in runs])} | "
            f"{_fmt([r.prediction_accuracy for r in runs])} ({chosen}) |"
        )
        aux = [r for r in by_method.get("auxiliary", []) if g in r.cross]
        if aux:
            lines.append(
                f"| auxiliary (equal), OGR of {g} | {_fmt([r.cross[g]['ogr'] for r in aux])} | "
                f"{_fmt([r.uniform_accuracy for r in aux])} | "
                f"{_fmt([r.cross[g]['chosen'] for r in aux])} "
                f"({_picks(aux, lambda r, g=g: r.cross[g]['pick'])}) |"
            )
    return [*lines, ""]


def predictors_table(by_method: Mapping[str, Sequence[Any]]) -> list[str]:
    """Every predictor of every multi-head method (test top-1 %, mean ± std over seeds)."""
    multi = {m: runs for m, runs in by_method.items() if runs[0].uniform_accuracy is not None}
    if not multi:
        return []
    lines = [
        "| method | fused | ens. last | ens. avg | ens. uniform | prediction weights chosen on V "
        "| chosen on V |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, runs in multi.items():
        pw = _picks(runs, lambda r: (r.prediction or {}).get("chosen"))
        lines.append(
            f"| {m} | {_fmt([r.head_accuracy.get('fused') for r in runs])} | "
            f"{_fmt([r.ensemble_accuracy for r in runs])} | "
            f"{_fmt([r.ensemble_avg_accuracy for r in runs])} | "
            f"{_fmt([r.uniform_accuracy for r in runs])} | "
            f"{_fmt([r.prediction_accuracy for r in runs])} ({pw}) | "
            f"{_fmt([r.selected_accuracy for r in runs])} ({_picks(runs, lambda r: r.selected)}) |"
        )
    return [*lines, ""]
