"""Config loading and validation, --set overrides, the CLI's errors, the data-root check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks.train import (
    SMOKE,
    ConfigError,
    TrainConfig,
    blend_setup,
    config_diff,
    load_checkpoint,
    load_config,
    save_checkpoint,
    worker_count,
)
from benchmarks.train._config import parse_override
from benchmarks.train._data import StatefulSampler
from benchmarks.train._loop import normalize_where

from .conftest import CONFIGS, Roots
from .test_smoke import run

KINETICS = CONFIGS / "kinetics_rgb_audio.toml"
MINIMAL = {"experiment": {"name": "x"}, "data": {"dataset": "kinetics"}}


def test_defaults_and_repr() -> None:
    cfg = TrainConfig(MINIMAL)
    assert cfg.data.holdout == 0.08
    assert cfg["method.name"] == "gblend_offline"
    assert cfg.flat()["model.num_fc"] == 2
    assert not cfg.multi_label
    assert repr(cfg) == (
        "TrainConfig(name='x', dataset='kinetics', modalities=['rgb', 'audio'], "
        "method='gblend_offline', epochs=45)"
    )


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({**MINIMAL, "trian": {}}, "Unknown config table `\\[trian\\]`"),
        ({**MINIMAL, "train": {"epoch": 3}}, "Unknown config key `train.epoch`"),
        ({"experiment": {"name": "x"}}, "`data.dataset` is required"),
        ({**MINIMAL, "train": {"epochs": "3"}}, "`train.epochs` should be an int. Found '3'"),
        ({**MINIMAL, "train": {"epochs": True}}, "`train.epochs` should be an int"),
        ({**MINIMAL, "train": {"epochs": 0}}, "`train.epochs` should be >= 1"),
        ({**MINIMAL, "optim": {"name": "rmsprop"}}, "`optim.name` should be one of"),
        ({**MINIMAL, "method": {"name": "gblend"}}, "`method.name` should be one of"),
        ({**MINIMAL, "method": {"name": "single:flow"}}, "`method.name`"),
        ({**MINIMAL, "data": {"dataset": "kinetics", "holdout": 1.5}}, "`data.holdout`"),
        (
            {**MINIMAL, "data": {"dataset": "kinetics", "normalize": "gpu"}},
            "`data.normalize` should be one of",
        ),
        ({**MINIMAL, "data": {"dataset": "kinetics", "modalities": ["rgb", "depth"]}}, "modal"),
        (
            {**MINIMAL, "data": {"dataset": "epic", "modalities": ["rgb", "flow"]}},
            "`data.modalities` lists 'flow', which only the 'kinetics' dataset reads",
        ),
        (
            {**MINIMAL, "data": {"dataset": "kinetics", "train_short_side": [100, 300]}},
            "`data.train_short_side`",
        ),
        (
            {
                "experiment": {"name": "x"},
                "data": {"dataset": "audioset"},
                "method": {"metric": "error"},
            },
            "does not apply to the multi-label",
        ),
        ({**MINIMAL, "method": {"weights": {"rgb": 1.0}}}, "`method.weights` should give"),
        (
            {**MINIMAL, "method": {"name": "naive", "weights_from": "r.json"}},
            "apply to G-Blend methods",
        ),
    ],
)
def test_bad_configs_name_the_key(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(raw)


def test_overrides_and_smoke() -> None:
    cfg = load_config(KINETICS, ["train.epochs=3", "optim.name=adam", "data.modalities=['rgb']"])
    assert (cfg.train.epochs, cfg.optim.name, cfg.data.modalities) == (3, "adam", ["rgb"])
    smoke = load_config(KINETICS, smoke=True)
    for dotted, value in SMOKE.items():
        assert smoke[dotted] == value
    assert load_config(KINETICS, ["train.epochs=5"], smoke=True).train.epochs == 5  # --set last
    assert parse_override("method.weights_from=runs/a.json") == (
        "method.weights_from",
        "runs/a.json",
    )
    with pytest.raises(ConfigError, match=r"Unknown config key `train\.epoch`"):
        load_config(KINETICS, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"table\.key=value"):
        load_config(KINETICS, ["epochs"])


def test_config_diff_lists_keys_and_ignores_workers() -> None:
    a = TrainConfig(MINIMAL).to_dict()
    b = TrainConfig(
        {**MINIMAL, "train": {"seed": 2}, "data": {"dataset": "kinetics", "workers": 3}}
    )
    assert config_diff(a, b.to_dict()) == ["train.seed: 0 -> 2"]


def test_blend_setup_maps_every_method() -> None:
    heads = ["rgb", "audio", "fused"]

    def setup(name: str, **method: object):
        return blend_setup(TrainConfig({**MINIMAL, "method": {"name": name, **method}}), heads)

    assert setup("single:audio").weights == {"rgb": 0.0, "audio": 1.0, "fused": 0.0}
    assert setup("single:audio").evaluated_head == "audio"
    assert setup("naive").weights == {"rgb": 0.0, "audio": 0.0, "fused": 1.0}
    assert setup("dropout").fusion_dropout == 0.5
    assert setup("auxiliary").weights == pytest.approx(dict.fromkeys(heads, 1 / 3))
    assert setup("gblend_offline").weights is None
    assert setup("gblend_offline").schedule == "offline"
    assert setup("gblend_online").schedule == "online"
    fixed = setup("gblend_offline", weights={"rgb": 0.63, "audio": 0.014, "fused": 0.356})
    assert fixed.weights == pytest.approx({"rgb": 0.63, "audio": 0.014, "fused": 0.356})


def test_weights_from_a_report(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"final_weights": {"rgb": 0.38, "audio": 0.24, "fused": 0.38}}))
    cfg = TrainConfig({**MINIMAL, "method": {"weights_from": str(report)}})
    assert blend_setup(cfg, ["rgb", "audio", "fused"]).weights == pytest.approx(
        {"rgb": 0.38, "audio": 0.24, "fused": 0.38}
    )
    report.write_text("{}")
    with pytest.raises(ConfigError, match="has no final weights"):
        blend_setup(cfg, ["rgb", "audio", "fused"])
    cfg = TrainConfig({**MINIMAL, "method": {"weights_from": str(tmp_path / "no.json")}})
    with pytest.raises(ConfigError, match="not found"):
        blend_setup(cfg, ["rgb", "audio", "fused"])


def test_cli_errors_are_argparse_errors(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run(roots, "kinetics_rgb_audio.toml", tmp_path, "--set", "train.epochs=zero")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: Config key `train.epochs` should be an int. Found 'zero'" in err
    assert "Traceback" not in err


def test_data_root_mismatch_names_path_and_layout(
    roots: Roots, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the Sports-1M root given to a Kinetics config
    with pytest.raises(SystemExit):
        run(roots, "kinetics_rgb_audio.toml", tmp_path / "a", "--data-root", str(roots.sports1m))
    err = capsys.readouterr().err
    assert f"{roots.sports1m}/annotations/train.csv" in err
    assert "Expected layout for 'kinetics'" in err
    assert not (tmp_path / "a").exists()  # failed before writing anything
    # annotations present, media elsewhere
    empty = tmp_path / "kin"
    (empty / "annotations").mkdir(parents=True)
    for name in ("train.csv", "validate.csv"):
        (empty / "annotations" / name).write_bytes(
            (roots.kinetics / "annotations" / name).read_bytes()
        )
    with pytest.raises(SystemExit):
        run(roots, "kinetics_rgb_audio.toml", tmp_path / "b", "--data-root", str(empty))
    err = capsys.readouterr().err
    assert "none of the first 12 train media files exists" in err
    assert str(empty / "train" / "abseiling") in err


def test_sampler_skips_for_a_resumed_epoch() -> None:
    sampler = StatefulSampler(10, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2, skip=4)
    assert list(sampler) == full[4:]
    assert len(sampler) == 6
    sampler.set_epoch(3)
    assert [i for i, _ in sampler] != [i for i, _ in full]
    shards = [list(StatefulSampler(10, rank=r, world=2, seed=3, seeded=False)) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(10))


def test_normalize_where_resolves_auto_by_device() -> None:
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")  # no GPU needed: names only
    auto = TrainConfig(MINIMAL)
    assert auto.data.normalize == "auto"
    assert (normalize_where(auto, cuda), normalize_where(auto, cpu)) == ("device", "worker")
    for where in ("worker", "device"):
        cfg = TrainConfig({**MINIMAL, "data": {"dataset": "kinetics", "normalize": where}})
        assert normalize_where(cfg, cuda) == normalize_where(cfg, cpu) == where
    # Where the clips are normalized does not change the values: a resume may switch it, and
    # a run folder written before the key existed resumes.
    old = TrainConfig(MINIMAL).to_dict()
    del old["data"]["normalize"]
    moved = TrainConfig({**MINIMAL, "data": {"dataset": "kinetics", "normalize": "device"}})
    assert config_diff(old, moved.to_dict()) == []


def test_worker_count() -> None:
    assert worker_count(3) == 3
    assert worker_count(0) == 0
    assert worker_count(-1, local_world_size=10**6) == 0


def test_checkpoint_is_atomic_and_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint({"a": torch.ones(2), "b": [1, "x"]}, path)
    assert load_checkpoint(path)["b"] == [1, "x"]
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint({"a": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(2))  # the old one is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_limit_videos_samples_each_split(roots: Roots) -> None:
    from benchmarks.train import build_data

    cfg = load_config(KINETICS, ["data.limit_videos=6"], smoke=True)
    data = build_data(cfg, roots.kinetics)
    videos = [r.video_id for ds in (data.train, data.holdout) for r in ds.records]
    assert len(videos) == 6
    assert len(set(videos)) == 6
    assert {r.target for ds in (data.train, data.holdout) for r in ds.records} == {0, 1}
    assert set(data.probe.records) <= set(data.train.records)
    assert len(data.test.records) == 4  # fewer than the limit: all
    assert data.holdout.mode == "test"
    assert data.holdout.spec.test_clips == 1
