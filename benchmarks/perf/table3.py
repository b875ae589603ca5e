"""Print the paper's Table 3 shape (optimizer × method) from pytest-benchmark JSON files.

Usage::

    python -m pytest benchmarks/perf/test_optimizers.py --benchmark-only \\
        --benchmark-json=reports/bench.json
    python -m benchmarks.perf.table3 reports/bench.json [other.json ...]

Per optimizer and method: test top-1 (%) of the predictor chosen on V (else the method's own
head), of the fused head alone, and the wall and CPU time of the run as ratios to naive's with
the same optimizer (CPU time does not grow with other load on the machine). One table per
file, so two saved runs compare two library versions.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The optimizer-comparison records of one pytest-benchmark JSON report."""
    out = []
    for bench in report.get("benchmarks", []):
        info = bench.get("extra_info", {})
        if not info.get("table3"):
            continue
        out.append({**info, "seconds": bench["stats"]["median"]})
    return out


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown table: optimizer × method, accuracy and time ratio to naive."""
    naive = {r["optimizer"]: r["seconds"] for r in records if r["method"] == "naive"}
    naive_cpu = {r["optimizer"]: r.get("cpu_seconds") for r in records if r["method"] == "naive"}
    lines = [
        "| optimizer | method | top-1 (chosen on V) | fused head | time (s) | time / naive | "
        "CPU / naive |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        acc = r["accuracy"]
        chosen = acc["selected"] if acc.get("selected") is not None else acc["own"]
        pick = f" ({acc['selected_on_v']})" if acc.get("selected_on_v") else ""
        base = naive.get(r["optimizer"])
        ratio = f"{r['seconds'] / base:.2f}×" if base else "—"
        cpu, cpu_base = r.get("cpu_seconds"), naive_cpu.get(r["optimizer"])
        cpu_ratio = f"{cpu / cpu_base:.2f}×" if cpu and cpu_base else "—"
        lines.append(
            f"| {r['optimizer']} | {r['method']} | {_pct(chosen)}{pick} | {_pct(acc['fused'])} | "
            f"{r['seconds']:.2f} | {ratio} | {cpu_ratio} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.perf.table3", description=__doc__.splitlines()[0]
    )
    parser.add_argument("json", nargs="+", type=Path, help="pytest-benchmark JSON file(s)")
    args = parser.parse_args(argv)
    for path in args.json:
        if not path.is_file():
            parser.error(f"argument json: no file {str(path)!r}")
        report = json.loads(path.read_text())
        records = rows(report)
        if not records:
            parser.error(f"{path} holds no optimizer-comparison benchmark (test_optimizers.py)")
        seeds = sorted({r["seed"] for r in records})
        print(f"### {path} ({records[0]['dataset']}, seed {', '.join(map(str, seeds))})\n")
        print(table(records))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
