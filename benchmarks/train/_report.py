"""The run folder's report: ``report.json``, ``report.md`` and the two plots of the paper
(per-head train/holdout curves, Fig. 4; weights over time, Fig. 5a)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.runner._plots import plot_curves, plot_weights

__all__ = [
    "choice_line",
    "divergence_markdown",
    "markdown_report",
    "reproduces_line",
    "write_report",
]

_PERCENT = ("clip_top1", "video_top1", "video_top5", "mAP", "mAUC")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{100 * v:.1f}"
    return str(v)


def reproduces_line(report: Mapping[str, Any]) -> str:
    """ "Reproduces: ..." for the method run: a baseline run from a G-Blend config says that the
    config's paper row is not this run's."""
    if report["paper"]:
        return f"Reproduces: {report['paper']}"
    config_method = report.get("config_method", report["method"])
    if config_method != report["method"]:
        row = report.get("config_paper") or "(not stated)"
        return (
            f"Reproduces: no paper row of this config: this run trains `{report['method']}`; the "
            f"config's method `{config_method}` reproduces {row}."
        )
    return "Reproduces: (not stated)"


def markdown_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown: the paper's numbers beside ours, per head and predictor."""
    metrics = [m for m in _PERCENT if m in next(iter(report["test"].values()), {})]
    lines = [
        f"# {report['name']}",
        "",
        reproduces_line(report),
        f"Dataset {report['dataset']}, modalities {', '.join(report['modalities'])}, method "
        f"`{report['method']}`, {report['epochs']} epochs ({report['steps']} steps) on "
        f"{report['world_size']} × {report['device']}.",
        "",
        "| predictor | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    chosen = report["predictors"].get("selected_on_holdout")
    for head, values in report["test"].items():
        tags = []
        if head == report["predictors"]["method_head"]:
            tags.append("method's head")
        if head == chosen:
            tags.append("chosen on holdout")
        name = head + (f" ({', '.join(tags)})" if tags else "")
        lines.append(f"| {name} | " + " | ".join(_fmt(values.get(m)) for m in metrics) + " |")
    if report["expected"]:
        exp = report["expected"]
        lines.append("| paper | " + " | ".join(str(exp.get(m, "")) for m in metrics) + " |")
    lines += [
        "",
        "Legend: each head is its own classifier; `ensemble` averages the heads' probabilities "
        "with the final blend weights; the predictor chosen on the holdout V (never on test) is "
        "the ensemble unless the fused head beats it on V by more than a paired standard error "
        "(blendopt's `BlendEnsemble.choose`). Numbers are percentages.",
        "",
        *(
            [choice_line(report["predictors"]["choice"]), ""]
            if "choice" in report["predictors"]
            else []
        ),
        "Final weights: " + ", ".join(f"{h} {w:.3f}" for h, w in report["final_weights"].items()),
        "",
        f"Skipped media: train {report['skipped']['train']}, estimate/holdout "
        f"{report['skipped']['estimate_and_holdout']}, test {report['skipped']['test']} "
        f"({report['skipped']['by_reason']}).",
        "",
        "Timing: {train_seconds:.1f} s training, {estimate_seconds:.1f} s G-Blend estimates, "
        "{eval_seconds:.1f} s evaluation; {clips_per_second:.1f} clips/s, data wait "
        "{wait:.0f}% of training time.".format(
            wait=100 * report["timing"]["data_wait_share"], **report["timing"]
        ),
        "",
        *[f"- {n}" for n in report["data"]],
    ]
    return "\n".join(lines) + "\n"


def choice_line(choice: Mapping[str, Any]) -> str:
    """The choice on V and its reason, from a ``PredictorChoice`` record (``to_dict()``)."""
    ref, metric = choice["reference"], "mAP" if choice["metric"] == "map" else "video top-1"
    se = choice["standard_errors"]
    others = ", ".join(
        f"`{c}` {_fmt(choice['scores'][c])} (gain {100 * g:+.1f} ± {100 * se[c]:.1f})"
        for c, g in choice["gains"].items()
        if c != ref
    )
    why = "it beat" if choice["chosen"] != ref else "no candidate beat"
    return (
        f"Chosen on V: `{choice['chosen']}` ({why} `{ref}` by more than {choice['z']:g} paired "
        f"standard error). {metric} on V ({choice['size']} videos): `{ref}` "
        f"{_fmt(choice['scores'][ref])}, {others}."
    )


def divergence_markdown(
    name: str, record: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> str:
    """``report.md`` of a run that diverged: where, the last finite losses, what is kept."""
    ckpt = record["checkpoint"]
    heads = ", ".join(f"`{h}` ({v})" for h, v in record["heads"].items())
    lines = [
        f"# {name}: diverged at step {record['step']}",
        "",
        f"Method `{record['method']}`, optimizer `{record['optim']['name']}` at lr "
        f"{record['optim']['lr']:g}. The loss of head {heads} stopped being finite at "
        f"optimizer step {record['step']} (detected in epoch {record['detected_in_epoch']}), after "
        f"{record['epochs_completed']} complete epochs. Training stopped there; no checkpoint "
        "was written after it. `divergence.json` holds the numbers below.",
        "",
        "Last finite training losses (rank 0): "
        + (
            ", ".join(
                f"{h} {x['loss']:.4g} (step {x['step']})"
                for h, x in record["last_finite_losses"].items()
            )
            or "none"
        )
        + ".",
        "",
        "Losses of the last steps seen: "
        + "; ".join(
            f"step {r['step']}: " + ", ".join(f"{h} {_loss(v)}" for h, v in r["losses"].items())
            for r in record["recent_losses"]
        )
        + ".",
        "",
        (
            f"Kept: `{ckpt['file']}` (step {ckpt['step']}, {ckpt['epochs_completed']} epochs "
            "complete; its losses were still finite), and the one before it as "
            "`checkpoint.prev.pt` where there was one; load with "
            "`torch.load(path, weights_only=True)`. `epochs.jsonl` keeps every finished epoch."
            if ckpt
            else "Kept: nothing to resume from (it diverged before the first checkpoint); "
            "`epochs.jsonl` keeps every finished epoch."
        ),
        "",
        "Fix: lower `optim.lr` (or use warm-up, `optim.warmup_epochs`) and start a new run in "
        "another `--out`.",
    ]
    if records:
        lines += ["", "| epoch | step | " + " | ".join(records[0]["train_loss"]) + " |"]
        lines.append("|---|---|" + "---|" * len(records[0]["train_loss"]))
        for r in records:
            losses = " | ".join(f"{v:.4g}" for v in r["train_loss"].values())
            lines.append(f"| {r['epoch']} | {r['step']} | {losses} |")
    return "\n".join(lines) + "\n"


def _loss(v: float | str) -> str:
    return v if isinstance(v, str) else f"{v:.4g}"


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(
    report: Mapping[str, Any], records: Sequence[Mapping[str, Any]], out: str | os.PathLike[str]
) -> list[Path]:
    """Write ``report.json``, ``report.md``, ``curves.png`` and ``weights.png`` into ``out``.

    The plots need matplotlib (the ``bench`` extra); without it they are left out with a note.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.json", out / "report.md"]
    _atomic_text(written[0], json.dumps(report, indent=1, default=float) + "\n")
    _atomic_text(written[1], markdown_report(report))
    try:
        written.append(plot_curves(records, out / "curves.png", title=str(report["name"])))
        written.append(plot_weights(records, out / "weights.png", title=str(report["name"])))
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib).")
    return written
