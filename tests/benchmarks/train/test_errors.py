"""`python -m benchmarks train`: one clear line then exit; a diverging run keeps what it learned;
checkpoints that do not load fall back to the previous one; reports say what ran."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from .conftest import CONFIGS, Roots
from .test_resume import _numbers
from .test_smoke import _partial_kinetics, _run_on, run


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    "row",
    [
        "abseiling,kin99999999\n",  # a short row
        "abseiling,kin99999999,zero,1,train\n",  # a non-numeric start time
    ],
)
def test_broken_csv_rows_are_one_line_naming_the_file(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str
) -> None:
    root = _partial_kinetics(roots, tmp_path / "kinetics", keep_every=1)
    csv = root / "annotations" / "train.csv"
    csv.write_text(csv.read_text() + row)
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run")
    assert exc.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("python -m benchmarks train: error: ")
    assert "train.csv" in line
    with pytest.raises(ValueError, match=r"train\.csv"):  # --debug: the traceback
        _run_on(root, tmp_path / "run", "--debug")


@pytest.mark.parametrize(
    "row",
    [
        'zz000000099, 30.000, 40.000, "/m/09x0r", extra\n',  # 5 fields
        'zz000000099, thirty, 40.000, "/m/09x0r"\n',  # a non-numeric start
    ],
)
def test_broken_audioset_rows_are_one_line_naming_the_file(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str
) -> None:
    root = tmp_path / "audioset"
    shutil.copytree(roots.audioset, root)
    segments = root / "unbalanced_train_segments.csv"
    segments.write_text(segments.read_text() + row)
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run", config="mini_audioset_rgb_audio.toml")
    assert exc.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("python -m benchmarks train: error: ")
    assert "unbalanced_train_segments.csv" in line


def test_config_errors_are_one_line_and_only_rank_0_prints(
    roots: Roots,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((CONFIGS / "kinetics_rgb_audio.toml").read_text() + "[data\n")
    argv = [str(bad), "--data-root", str(roots.kinetics), "--out", str(tmp_path / "r")]
    from benchmarks.train import main

    with pytest.raises(SystemExit) as exc:
        main([*argv, "--smoke"])
    assert exc.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "is not valid TOML" in line
    assert str(bad) in line
    monkeypatch.setenv("RANK", "1")  # another rank under torchrun: exits 2, prints nothing
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--smoke"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == ""


def test_a_diverging_run_exits_1_and_keeps_a_report(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code = run(
        roots,
        "kinetics_rgb_audio.toml",
        out,
        *("--set", "optim.lr=1e12", "--set", "train.checkpoint_every_steps=1"),
    )
    assert code == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("python -m benchmarks train: diverged: the loss of head")
    assert "optim.lr" in line
    record = json.loads((out / "divergence.json").read_text())
    step = record["step"]
    assert step >= 2
    assert f"at step {step} " in line
    assert record["heads"]  # the head(s) whose loss went non-finite first, with the value
    assert all(not math.isfinite(float(v)) for v in record["heads"].values())
    last = record["last_finite_losses"]
    assert set(last) == {"rgb", "audio", "fused"}
    assert all(math.isfinite(x["loss"]) and x["step"] <= step for x in last.values())
    assert all(last[h]["step"] < step for h in record["heads"])
    # the last checkpoint before the divergence is kept, finite, and named
    assert record["checkpoint"] == {
        "file": "checkpoint.pt",
        "epochs_completed": 0,
        "step": step - 1,
    }
    assert str(out / "checkpoint.pt") in line
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == step - 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    report = (out / "report.md").read_text()
    assert report.startswith(f"# kinetics_rgb_audio_gblend_offline: diverged at step {step}")
    assert "Last finite training losses" in report
    assert (out / "config.json").is_file()


def test_on_an_accelerator_divergence_is_caught_before_any_checkpoint(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    """Without a check per step (as on CUDA), the blender's own check or the one before each
    checkpoint stops the run; a diverged model is never saved."""
    from benchmarks.train import _loop

    monkeypatch.setattr(_loop, "checks_every_step", lambda device: False)
    out = tmp_path / "run"
    sets = ("--set", "optim.lr=1e12", "--set", "train.checkpoint_every_steps=1")
    assert run(roots, "kinetics_rgb_audio.toml", out, *sets) == 1
    line = _one_line(capsys.readouterr().err)
    record = json.loads((out / "divergence.json").read_text())
    assert f"at step {record['step']} " in line
    assert record["checkpoint"]["step"] == record["step"] - 1
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


@pytest.mark.slow
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = "kinetics_rgb_audio.toml"
    sets = ("--set", "train.checkpoint_every_steps=2")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(roots, config, whole, *sets) == 0
    assert run(roots, config, parts, *sets, "--stop-after-steps", "5") == 3
    newest, previous = parts / "checkpoint.pt", parts / "checkpoint.prev.pt"
    assert torch.load(newest, weights_only=True)["step"] == 4
    assert torch.load(previous, weights_only=True)["step"] == 2
    newest.write_bytes(newest.read_bytes()[:1000])  # an interrupted copy
    capsys.readouterr()
    assert run(roots, config, parts, *sets, "--resume") == 0
    captured = capsys.readouterr()
    assert "warning: Checkpoint" in captured.err
    assert str(newest) in captured.err
    assert "does not load" in captured.err
    assert "checkpoint.prev.pt" in captured.err
    assert "resuming from epoch 1, step 2" in captured.out
    assert _numbers(whole) == _numbers(parts)  # the same run, from the previous checkpoint
    # neither loads: one line naming both, exit 2
    for path in (newest, previous):
        path.write_bytes(b"\x00garbage")
    with pytest.raises(SystemExit) as exc:
        run(roots, config, parts, *sets, "--resume")
    assert exc.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert "Neither checkpoint loads" in line
    assert str(newest) in line
    assert str(previous) in line


def test_resume_says_where_and_a_finished_run_only_re_evaluates(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = "kinetics_rgb_audio.toml"
    assert run(roots, config, tmp_path, "--set", "method.name=naive") == 0
    epochs = (tmp_path / "epochs.jsonl").read_text()
    capsys.readouterr()
    assert run(roots, config, tmp_path, "--set", "method.name=naive", "--resume") == 0
    out = capsys.readouterr().out
    assert "finished all 2 epochs" in out
    assert "only re-evaluates" in out
    assert "resuming from" not in out
    assert (tmp_path / "epochs.jsonl").read_text() == epochs  # nothing trained


def test_a_baseline_run_is_not_labelled_as_the_configs_method(roots: Roots, tmp_path: Path) -> None:
    assert run(roots, "kinetics_rgb_audio.toml", tmp_path, "--set", "method.name=naive") == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["name"] == "kinetics_rgb_audio_naive"
    assert report["method"] == "naive"
    assert report["paper"] == ""
    assert report["expected"] == {}  # the paper's G-Blend numbers are not this run's
    assert report["config_method"] == "gblend_offline"
    lines = (tmp_path / "report.md").read_text().splitlines()
    assert lines[0] == "# kinetics_rgb_audio_naive"
    assert lines[2].startswith("Reproduces: no paper row of this config: this run trains `naive`")
    assert not any(line.startswith("| paper |") for line in lines)
