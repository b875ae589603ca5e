"""Write docs/api.md from the docstrings of blendopt's public names.

``python docs/gen_api.py`` rewrites the file; ``python docs/gen_api.py --check`` exits 1 if it
is out of date (tests/doc/test_api_reference.py runs the check).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import blendopt

API = Path(__file__).with_name("api.md")

# Names relative to the package: top-level names, and ``functional.X`` / ``warnings.X``.
SECTIONS = {
    "Optimizer wrapper": ["GradientBlender"],
    "Estimators and schedules": [
        "Estimator",
        "EstimateRequest",
        "BlendEstimate",
        "FixedWeights",
        "RetrainEstimator",
        "RollingEstimator",
        "GradientMode",
        "LossMode",
        "Schedule",
        "Offline",
        "Online",
    ],
    "Estimation (Algorithm 1)": [
        "RetrainConfig",
        "estimate_weights",
        "measure",
        "top1_error",
        "retrain.clone_optimizer",
    ],
    "Algorithm 1's engines: blendopt.retrain (benchmarks, custom estimators)": [
        f"retrain.{name}"
        for name in (
            "make_copies",
            "HeadCopy",
            "TrainPlan",
            "CopyTraining",
            "train_copies",
            "train_copies_vmap",
            "supports_vmap",
            "VmapCopies",
            "TrainReport",
            "blend_measured",
            "remap_param_groups",
        )
    ],
    "Data, prediction and statistics": [
        "holdout_split",
        "HoldoutSplit",
        "BlendEnsemble",
        "PredictorChoice",
        "TrainStatistics",
    ],
    "Formulas: blendopt.functional": [
        f"functional.{name}"
        for name in (
            "gblend_weights",
            "DEFAULT_EPS",
            "blend_estimate",
            "weight_rule",
            "NoiseAwareWeights",
            "reliability",
            "overfitting",
            "generalization",
            "overfitting_change",
            "ogr",
            "optimal_blend",
            "correlated_blend",
            "uniform_weights",
            "noise_aware_weights",
            "noise_aware_estimate",
            "paired_standard_errors",
            "mean_and_standard_error",
            "measure_per_sample",
            "batch_size_of",
            "ensemble_probabilities",
        )
    ],
    "Warnings: blendopt.warnings": [
        f"warnings.{name}"
        for name in (
            "BlendWarning",
            "ZeroedHeadWarning",
            "DivergedCopyWarning",
            "FlooredOverfittingWarning",
            "RejectedEstimateWarning",
            "NoEstimateWarning",
            "WeightSumWarning",
            "UnblendedStepWarning",
            "NonFiniteLossWarning",
        )
    ],
}

CONSTANTS = {
    "functional.DEFAULT_EPS": "Default floor of dO² in the G-Blend weights (see `blend_estimate`)."
}


def _resolve(path: str) -> object:
    obj: object = blendopt
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _undocumented(documented: set[str]) -> list[str]:
    """Public names (top level, and the members of public modules) whose object no section
    documents (``BlendWarning`` is documented once, as ``warnings.BlendWarning``)."""
    names = set()
    for name in blendopt.__all__:
        if inspect.ismodule(getattr(blendopt, name)):
            names |= {f"{name}.{n}" for n in getattr(blendopt, name).__all__}
        else:
            names.add(name)
    seen = {id(_resolve(n)) for n in documented}
    return sorted(n for n in names if id(_resolve(n)) not in seen)


def _signature(obj: object, name: str) -> str:
    try:
        sig = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        sig = ""
    return f"{name}{sig}"


def _methods(cls: type) -> list[tuple[str, object]]:
    out = []
    for name, member in cls.__dict__.items():
        if name.startswith("_") or not (inspect.isfunction(member) or isinstance(member, property)):
            continue
        if inspect.getdoc(member) is None:
            continue
        out.append((name, member))
    return out


def render() -> str:
    missing = _undocumented({n for names in SECTIONS.values() for n in names})
    if missing:
        raise SystemExit(f"docs/gen_api.py: add {missing} to a section")
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.",
        "",
    ]
    for section, names in SECTIONS.items():
        lines += [f"## {section}", ""]
        for name in names:
            obj = _resolve(name)
            if not callable(obj):
                lines += [f"### `blendopt.{name}`", "", "```text", f"{name} = {obj!r}", "```", ""]
                lines += [CONSTANTS[name], ""]
                continue
            kind = "class" if inspect.isclass(obj) else "function"
            lines += [
                f"### `blendopt.{name}`",
                "",
                "```text",
                f"{kind} {_signature(obj, name.rsplit('.', 1)[-1])}",
                "```",
                "",
            ]
            lines += [inspect.getdoc(obj) or "", ""]
            if inspect.isclass(obj):
                for method_name, member in _methods(obj):
                    if isinstance(member, property):
                        lines += [f"#### `{name}.{method_name}` (property)", ""]
                    else:
                        lines += [f"#### `{name}.{_signature(member, method_name)}`", ""]
                    lines += [inspect.getdoc(member) or "", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not API.exists() or API.read_text() != text:
            print("docs/api.md is out of date: run `python docs/gen_api.py`", file=sys.stderr)
            return 1
        return 0
    API.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
