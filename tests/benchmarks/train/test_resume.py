"""Kill a run after a checkpoint, ``--resume`` it: the same final report as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import Roots
from .test_smoke import run

TIMING = {"seconds", "estimate_seconds", "clips_per_second", "data_wait_share"}


def _numbers(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    report = json.loads((out / "report.json").read_text())
    report.pop("timing")
    report["config"]["data"].pop("workers")  # may differ between a run and its resume
    records = [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (out / "epochs.jsonl").read_text().splitlines()
    ]
    return report, records


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "every", "stop", "resume_workers"),
    [
        # killed mid-epoch 2, resumed from the step-3 checkpoint (mid-epoch 1), online G-Blend
        # re-estimating at every epoch; resumed with a DataLoader worker (same data anyway)
        ("kinetics_rgb_audio_online.toml", 3, 5, 1),
        # killed at the end of epoch 2's second step, resumed from the epoch-1 checkpoint
        ("kinetics_rgb_audio.toml", 0, 6, 0),
        # Table 4 (RGB + flow + audio): the flow clips' random crop and flip follow the same
        # per-item seeds; resumed mid-epoch with a worker reading the flow files
        ("kinetics_rgb_flow_audio.toml", 3, 5, 1),
    ],
)
def test_kill_and_resume_gives_the_same_report(
    roots: Roots, tmp_path: Path, config: str, every: int, stop: int, resume_workers: int
) -> None:
    sets = ("--set", f"train.checkpoint_every_steps={every}")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(roots, config, whole, *sets) == 0
    assert run(roots, config, parts, *sets, "--stop-after-steps", str(stop)) == 3
    assert not (parts / "report.json").exists()
    resumed = ("--set", f"data.workers={resume_workers}", "--resume")
    assert run(roots, config, parts, *sets, *resumed) == 0
    a, b = _numbers(whole), _numbers(parts)
    assert a[1] == b[1]  # per-epoch losses, holdout metrics, weights: bit-identical on CPU
    assert a[0] == b[0]


def test_resume_refuses_another_config(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "config.json").write_text(
        json.dumps({"train": {"epochs": 3, "seed": 1}, "data": {"workers": 0}})
    )
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        run(roots, "kinetics_rgb_audio.toml", tmp_path, "--resume")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "train.epochs: 3 -> 2" in err
    assert "train.seed: 1 -> 0" in err
    assert "data.workers" not in err  # may change on resume


def test_resume_needs_a_run_and_a_run_needs_resume(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        run(roots, "kinetics_rgb_audio.toml", tmp_path, "--resume")
    assert "holds no run to resume" in capsys.readouterr().err
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(SystemExit):
        run(roots, "kinetics_rgb_audio.toml", tmp_path)
    assert "pass --resume" in capsys.readouterr().err


@pytest.mark.slow
def test_device_normalization_trains_the_same_and_resumes(roots: Roots, tmp_path: Path) -> None:
    # data.normalize=device (uint8 clips, normalized after the copy; the CUDA default) gives
    # the worker-normalized run's numbers bit for bit on CPU, and a run killed under one
    # setting resumes under the other to the same report.
    config, sets = "kinetics_rgb_audio_online.toml", ("--set", "train.checkpoint_every_steps=3")
    worker, device, moved = tmp_path / "worker", tmp_path / "device", tmp_path / "moved"
    assert run(roots, config, worker, *sets, "--set", "data.normalize=worker") == 0
    assert run(roots, config, device, *sets, "--set", "data.normalize=device") == 0
    assert run(roots, config, moved, *sets, "--stop-after-steps", "5") == 3
    assert run(roots, config, moved, *sets, "--set", "data.normalize=device", "--resume") == 0
    numbers = {}
    for name, out in (("worker", worker), ("device", device), ("moved", moved)):
        report, records = _numbers(out)
        report["config"]["data"].pop("normalize")
        numbers[name] = report, records
    assert numbers["device"][1] == numbers["worker"][1]  # losses, holdout metrics, weights
    assert numbers["device"][0] == numbers["worker"][0]
    assert numbers["moved"] == numbers["worker"]
