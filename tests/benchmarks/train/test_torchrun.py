"""A 2-process gloo ``torchrun`` smoke run: DDP, DistributedSampler, identical G-Blend weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CONFIGS, Roots

ROOT = Path(__file__).resolve().parents[3]


def _torchrun(roots: Roots, out: Path, *extra: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--standalone", "-m", "benchmarks", "train",
        str(CONFIGS / "kinetics_rgb_audio_online.toml"), "--data-root", str(roots.kinetics),
        "--out", str(out), "--smoke", "--device", "cpu", "--no-progress",
        "--set", "train.batch_size=1", *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((out / "ranks" / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.slow
def test_torchrun_two_processes_with_the_rolling_estimator(roots: Roots, tmp_path: Path) -> None:
    # Per-head gradients under DDP, statistics reduced across ranks: the same weights on both.
    ranks = _torchrun(roots, tmp_path, "--set", "method.name=gblend_rolling")
    assert ranks[0]["final_weights"] == ranks[1]["final_weights"]
    assert ranks[0]["weight_history"] == ranks[1]["weight_history"]
    assert ranks[0]["parameter_sum"] == ranks[1]["parameter_sum"]


@pytest.mark.slow
def test_torchrun_two_processes(roots: Roots, tmp_path: Path) -> None:
    ranks = _torchrun(roots, tmp_path)
    assert ranks[0]["final_weights"] == ranks[1]["final_weights"]
    assert ranks[0]["weight_history"] == ranks[1]["weight_history"]
    assert len(ranks[0]["weight_history"]) >= 2  # online: estimated at epochs 1 and 2
    assert ranks[0]["parameter_sum"] == ranks[1]["parameter_sum"]  # DDP kept them in sync
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["world_size"] == 2
    assert report["final_weights"] == ranks[0]["final_weights"]
    assert report["test"]["fused"]["videos"] == 4  # every test video scored once
