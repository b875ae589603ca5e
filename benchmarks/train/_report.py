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

__all__ = ["markdown_report", "write_report"]

_PERCENT = ("clip_top1", "video_top1", "video_top5", "mAP", "mAUC")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{100 * v:.1f}"
    return str(v)


def markdown_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown: the paper's numbers beside ours, per head and predictor."""
    metrics = [m for m in _PERCENT if m in next(iter(report["test"].values()), {})]
    lines = [
        f"# {report['name']}",
        "",
        f"Reproduces: {report['paper'] or '(not stated)'}",
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
        "with the final blend weights; the predictor chosen on the holdout V (never on test) "
        "compares the fused head and the ensemble on V. Numbers are percentages.",
        "",
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
