"""`python -m benchmarks train CONFIG --smoke` on every paper config, on generated media."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from benchmarks.__main__ import main as benchmarks_main
from benchmarks.train._config import tomllib  # tomllib, or tomli on Python 3.10

from .conftest import CONFIGS, Roots

ALL = sorted(p.name for p in CONFIGS.glob("*.toml"))
FLOW = [n for n in ALL if "flow" in n]  # Table 4: RGB+flow, flow+audio, RGB+flow+audio
RUNNABLE = [n for n in ALL if not n.startswith("audioset")]


def _root(roots: Roots, config: str) -> Path:
    dataset = tomllib.loads((CONFIGS / config).read_text())["data"]["dataset"]
    return {
        "kinetics": roots.kinetics,
        "sports1m": roots.sports1m,
        "audioset": roots.audioset,
        "mini_audioset": roots.audioset,
        "epic": roots.epic,
    }[dataset]


def run(roots: Roots, config: str, out: Path, *extra: str) -> int:
    return benchmarks_main(
        ["train", str(CONFIGS / config), "--data-root", str(_root(roots, config)), "--out",
         str(out), "--smoke", "--no-progress", *extra]
    )  # fmt: skip


def test_every_config_is_covered() -> None:
    assert len(ALL) >= 14
    assert len(FLOW) == 3
    assert set(FLOW) <= set(RUNNABLE)
    assert set(ALL) == {*RUNNABLE, "audioset_r2plus1d_101.toml"}


@pytest.mark.slow
@pytest.mark.parametrize("config", RUNNABLE)
def test_smoke_run(roots: Roots, config: str, tmp_path: Path) -> None:
    assert run(roots, config, tmp_path) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    raw = tomllib.loads((CONFIGS / config).read_text())
    assert report["name"] == raw["experiment"]["name"]
    assert report["expected"] == raw["experiment"]["expected"]
    assert report["epochs"] == 2
    assert abs(sum(report["final_weights"].values()) - 1.0) < 1e-6
    heads = [*raw["data"]["modalities"], "fused", "ensemble"]
    assert list(report["test"]) == heads
    metric = report["primary_metric"]
    for values in report["test"].values():
        assert 0.0 <= values[metric] <= 1.0
        assert values["videos"] > 0
    records = [json.loads(line) for line in (tmp_path / "epochs.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert set(r["train_loss"]) == set(heads[:-1])
        assert set(r["holdout"]) == set(heads[:-1])
        assert r["clips_per_second"] > 0
        assert 0.0 <= r["data_wait_share"] <= 1.0
    for name in ("report.md", "curves.png", "weights.png", "checkpoint.pt", "config.json"):
        assert (tmp_path / name).is_file(), name
    assert raw["experiment"]["paper"] in (tmp_path / "report.md").read_text()
    # G-Blend: the predictor is chosen on V by blendopt's paired test, recorded with its reason
    choice = report["predictors"]["choice"]
    assert (choice["reference"], choice["z"]) == ("ensemble", 1.0)
    assert report["predictors"]["selected_on_holdout"] == choice["chosen"]
    assert choice["size"] == report["holdout"]["ensemble"]["videos"]
    assert f"Chosen on V: `{choice['chosen']}`" in (tmp_path / "report.md").read_text()
    if config in FLOW:  # Table 4: a flow head trained and scored on the precomputed flow
        assert report["test"]["flow"]["videos"] == 4  # every test video has its flow file
        # kin00000009 has its video but no flow file: skipped and counted, like a bad video
        assert report["skipped"]["by_reason"].get("flow file not found", 0) > 0
        assert any("kin00000009" in f for f in report["skipped"]["files"])


@pytest.mark.slow
def test_kinetics_skips_and_counts_bad_media(roots: Roots, tmp_path: Path) -> None:
    # The generated Kinetics train split has one missing and one unreadable file.
    assert run(roots, "kinetics_rgb_audio.toml", tmp_path, "--set", "method.name=naive") == 0
    report = json.loads((tmp_path / "report.json").read_text())
    skipped = report["skipped"]
    assert skipped["train"] + skipped["estimate_and_holdout"] > 0
    assert any("kin00000011" in f for f in skipped["files"]) or any(
        "kin00000010" in f for f in skipped["files"]
    )
    assert "file not found" in skipped["by_reason"] or "cannot open" in skipped["by_reason"]


@pytest.mark.slow
def test_audioset_uses_the_mini_audioset_weights(roots: Roots, tmp_path: Path) -> None:
    """Table 7: the AudioSet run trains with the weights of a mini-AudioSet run's report."""
    mini = tmp_path / "mini"
    assert run(roots, "mini_audioset_rgb_audio.toml", mini) == 0
    weights = json.loads((mini / "report.json").read_text())["final_weights"]
    full = tmp_path / "full"
    args = ("--set", f"method.weights_from={json.dumps(str(mini / 'report.json'))}")
    assert run(roots, "audioset_r2plus1d_101.toml", full, *args) == 0
    report = json.loads((full / "report.json").read_text())
    assert report["final_weights"] == pytest.approx(weights)
    assert report["weight_history"] == [] or all(
        r["kind"] != "estimate" for r in report["weight_history"]
    )
    assert set(report["test"]["fused"]) == {"mAP", "mAUC", "videos"}


def test_audioset_refuses_to_run_without_weights(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run(roots, "audioset_r2plus1d_101.toml", tmp_path)
    assert exc.value.code == 2
    assert "method.weights_from" in capsys.readouterr().err


def test_flow_root_without_flow_files_is_a_clear_error(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _partial_kinetics(roots, tmp_path / "kinetics", keep_every=1)  # videos, no flow
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run", config="kinetics_rgb_flow.toml")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "optical-flow files exists" in err
    assert str(root / "flow" / "train" / "abseiling" / "kin00000000_000000_000001.npy") in err
    assert "flow/<split>/<label>/<youtube_id>_<start:06d>_<end:06d>.npy" in err
    assert not (tmp_path / "run").exists()  # failed before writing anything
    # a root without annotations: the layout in the message names the flow files too
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        _run_on(tmp_path / "empty", tmp_path / "run", config="kinetics_flow_audio.toml")
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty'}/annotations/train.csv' (config key" in err
    assert "precomputed optical flow flow/<split>/<label>/" in err


def _partial_kinetics(roots: Roots, root: Path, keep_every: int) -> Path:
    """The generated Kinetics root with only one train video in ``keep_every`` on disk."""
    (root / "annotations").mkdir(parents=True)
    for name in ("train.csv", "validate.csv"):
        (root / "annotations" / name).write_bytes(
            (roots.kinetics / "annotations" / name).read_bytes()
        )
    for split in ("train", "val"):
        for i, path in enumerate(sorted((roots.kinetics / split).rglob("*.mp4"))):
            if split == "val" or i % keep_every == 0:
                dst = root / path.relative_to(roots.kinetics)
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_bytes(path.read_bytes())
    return root


def _run_on(root: Path, out: Path, *extra: str, config: str = "kinetics_rgb_audio.toml") -> int:
    return benchmarks_main(
        ["train", str(CONFIGS / config), "--data-root", str(root), "--out", str(out), "--smoke",
         "--no-progress", *extra]
    )  # fmt: skip


@pytest.mark.slow
def test_empty_batches_are_skipped_and_counted(roots: Roots, tmp_path: Path) -> None:
    """A batch whose every file is unreadable is skipped (and counted) by the loop and by the
    G-Blend estimate's loaders; training goes on."""
    root = _partial_kinetics(roots, tmp_path / "kinetics", keep_every=2)
    out = tmp_path / "run"
    # half the media missing: above the data.max_missing start-up limit, allowed here
    extra = ("--set", "train.epochs=3", "--set", "data.holdout=0.4", "--set", "data.max_missing=1")
    assert _run_on(root, out, *extra) == 0
    records = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert sum(r["empty_batches"] for r in records) > 0
    steps = [b["step"] - a["step"] for a, b in itertools.pairwise([{"step": 0}, *records])]
    assert all(s < 4 for s in steps)  # 4 batches per epoch, some dropped
    report = json.loads((out / "report.json").read_text())
    assert report["skipped"]["train"] > 0
    assert report["skipped"]["estimate_and_holdout"] > 0
    assert report["skipped"]["by_reason"]["file not found"] > 0


def test_an_unreadable_holdout_is_a_clear_error(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _partial_kinetics(roots, tmp_path / "kinetics", keep_every=3)
    with pytest.raises(SystemExit) as exc:
        _run_on(root, tmp_path / "run", "--set", "data.max_missing=1")  # 2 of 3 missing
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Every video of the holdout V or the train probe T' was unreadable" in err
    assert "file not found" in err


@pytest.mark.slow
def test_gblend_rolling_trains_without_copies(roots: Roots, tmp_path: Path) -> None:
    """The main job's recommended estimator runs in `train` too (no model copies)."""
    args = ("--set", "method.name=gblend_rolling")
    assert run(roots, "kinetics_rgb_audio.toml", tmp_path, *args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["method"] == "gblend_rolling"
    assert report["steps"] > 0
    assert sum(report["final_weights"].values()) == pytest.approx(1.0)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    estimator_state = ckpt["blender"]["blender"]["controller"]["estimator"]
    # RollingEstimator's own state (its measurement window), not Algorithm 1's
    assert {"rows", "measurements", "holdout_draws"} <= set(estimator_state)
