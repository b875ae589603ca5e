"""Training configs: TOML files under ``benchmarks/configs/``, validated against one schema.

A config has six tables (``experiment``, ``data``, ``model``, ``method``, ``optim``,
``train``); :data:`SCHEMA` lists every key with its type and default. Unknown keys and bad
values raise :class:`ConfigError` naming the key (the CLI turns it into an argparse error).
``--set table.key=value`` overrides a key (the value is read as a TOML value, else as a
string); ``--smoke`` applies :data:`SMOKE` (tiny models and clips, two epochs) first.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (the `bench` extra installs tomli there)
    import tomli as tomllib

__all__ = [
    "DATASETS",
    "METHODS",
    "SCHEMA",
    "SMOKE",
    "ConfigError",
    "TrainConfig",
    "config_diff",
    "load_config",
    "run_identity",
]

DATASETS = ("kinetics", "sports1m", "audioset", "mini_audioset", "epic")
MULTI_LABEL = ("audioset", "mini_audioset")
#: Method names of ``[method] name`` (the names of ``benchmarks.runner``'s methods).
METHODS = ("naive", "dropout", "auxiliary", "gblend_offline", "gblend_online", "gblend_rolling")
MODALITIES = ("rgb", "audio", "flow")
_REQUIRED = object()


@dataclass(frozen=True)
class Key:
    """One config key: its type(s), default, and allowed values."""

    types: tuple[type, ...]
    default: Any
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    doc: str = ""


def _k(types: type | tuple[type, ...], default: Any, **kw: Any) -> Key:
    return Key(types if isinstance(types, tuple) else (types,), default, **kw)


SCHEMA: dict[str, dict[str, Key]] = {
    "experiment": {
        "name": _k(str, _REQUIRED, doc="run name"),
        "paper": _k(str, "", doc="the paper's table/row this config reproduces"),
        "expected": _k(dict, {}, doc="the paper's numbers, metric -> value (percent)"),
    },
    "data": {
        "dataset": _k(str, _REQUIRED, choices=DATASETS),
        "modalities": _k(list, ["rgb", "audio"]),
        "train_annotations": _k(str, "", doc="relative to --data-root"),
        "test_annotations": _k(str, ""),
        "class_labels": _k(str, "", doc="AudioSet class_labels_indices.csv"),
        "labels_file": _k(str, "", doc="Sports-1M labels.txt (optional)"),
        "media_dir": _k(str, "", doc="folder of the media under --data-root"),
        "path_template": _k(str, "", doc="media path under media_dir; '': found by lookup"),
        "max_missing": _k(float, 0.05, minimum=0.0, doc="share of media that may be missing"),
        "max_unknown_labels": _k(float, 0.01, minimum=0.0, doc="AudioSet rows, unknown ids"),
        "train_split": _k(str, "train"),
        "test_split": _k(str, "val"),
        "only_local": _k(bool, False, doc="drop lines whose file is not on disk"),
        "num_train_videos": _k((int, str), 0, doc="0: all; 'mini': mini-Sports size"),
        "num_test_videos": _k((int, str), 0),
        "limit_videos": _k(int, 0, minimum=0, doc="0: all; else a seeded sample per split"),
        "min_count": _k(int, 500, minimum=1, doc="Algorithm 4: drop classes under this"),
        "target_count": _k(int, 1100, minimum=1, doc="Algorithm 4: positives per class"),
        "epic_target": _k(str, "verb", choices=("verb", "noun", "action")),
        "holdout": _k(float, 0.08, minimum=0.0),
        "num_frames": _k(int, 16, minimum=1),
        "frame_stride": _k(int, 2, minimum=1),
        "crop_size": _k(int, 224, minimum=1),
        "train_short_side": _k(list, [256, 320]),
        "test_short_side": _k(int, 256, minimum=1),
        "test_clips": _k(int, 10, minimum=1),
        "test_crops": _k(int, 1, choices=(1, 3)),
        "workers": _k(int, -1, minimum=-1, doc="-1: from the CPU count"),
        "normalize": _k(
            str,
            "auto",
            choices=("auto", "worker", "device"),
            doc="where RGB is normalized; auto: on the device on CUDA, else in the workers",
        ),
    },
    "model": {
        "visual": _k(str, "r3d_50", doc="registered video model, or 'tiny'"),
        "audio": _k(str, "audio_resnet_50", doc="registered audio model, or 'tiny'"),
        "flow": _k(str, "r3d_50", doc="video model on 2-channel flow, or 'tiny'"),
        "num_fc": _k(int, 2, choices=(0, 1, 2, 4)),
        "channels_last": _k(bool, True, doc="on CUDA"),
        "compile": _k(bool, False),
    },
    "method": {
        "name": _k(str, "gblend_offline"),
        "metric": _k(str, "loss", choices=("loss", "error")),
        "fraction": _k(float, 1.0, minimum=0.0),
        "estimate_epochs": _k(int, 0, minimum=0, doc="0: the schedule's horizon"),
        "online_warmup": _k(int, 10, minimum=1),
        "online_every": _k(int, 5, minimum=1),
        "weights": _k(dict, {}, doc="fixed weights head -> w (no estimate)"),
        "weights_from": _k(str, "", doc="report.json of a run: use its final weights"),
        "weights_required": _k(bool, False, doc="refuse to run without fixed weights"),
    },
    "optim": {
        "name": _k(str, "sgd", choices=("sgd", "adam", "adagrad")),
        "lr": _k(float, 0.01, minimum=0.0),
        "momentum": _k(float, 0.9, minimum=0.0),
        "weight_decay": _k(float, 1e-4, minimum=0.0),
        "schedule": _k(str, "cosine", choices=("cosine", "constant")),
        "warmup_epochs": _k(int, 0, minimum=0),
    },
    "train": {
        "epochs": _k(int, 45, minimum=1),
        "batch_size": _k(int, 8, minimum=1, doc="clips per process"),
        "eval_batch_size": _k(int, 4, minimum=1, doc="test videos per process"),
        "seed": _k(int, 0, minimum=0),
        "precision": _k(str, "bf16", choices=("bf16", "fp32")),
        "checkpoint_every_steps": _k(int, 1000, minimum=0, doc="0: only every epoch"),
        "holdout_every": _k(int, 1, minimum=0, doc="measure V every n epochs (0: never)"),
        "tensorboard": _k(bool, False),
    },
}

#: ``--smoke``: the same config at a scale that runs in seconds on a CPU.
SMOKE: dict[str, Any] = {
    "data.num_frames": 4,
    "data.frame_stride": 1,
    "data.crop_size": 32,
    "data.train_short_side": [32, 40],
    "data.test_short_side": 32,
    "data.test_clips": 2,
    "data.test_crops": 1,
    "data.workers": 0,
    "data.num_train_videos": 0,
    "data.num_test_videos": 0,
    "data.limit_videos": 24,
    "data.min_count": 1,
    "data.target_count": 4,
    "data.holdout": 0.25,
    "model.visual": "tiny",
    "model.audio": "tiny",
    "model.flow": "tiny",
    "model.compile": False,
    "method.online_warmup": 1,
    "method.online_every": 1,
    "train.epochs": 2,
    "train.batch_size": 2,
    "train.eval_batch_size": 2,
    "train.checkpoint_every_steps": 0,
}

#: Keys that may change between a run and its ``--resume`` (they do not change results:
#: ``data.normalize`` moves the same float32 operations from the workers to the device).
RESUMABLE_CHANGES = ("data.workers", "data.normalize", "train.tensorboard")


class ConfigError(ValueError):
    """A config key is unknown, missing or has a bad value."""


class TrainConfig:
    """A validated config: ``cfg.data.holdout``, ``cfg["data.holdout"]``, ``cfg.to_dict()``.

    Args:
        raw: the nested tables, as read from TOML.
        source: where it came from (for messages).
        declared_method: the ``method.name`` the config file itself states, before ``--set``
            (default: the resolved one); the report's title follows the method run.

    Raises:
        ConfigError: unknown table or key, missing required key, wrong type or bad value.
    """

    def __init__(
        self,
        raw: Mapping[str, Any],
        source: str = "<config>",
        *,
        declared_method: str | None = None,
    ) -> None:
        self.source = source
        self._values = _validate(raw, source)
        self.declared_method = declared_method or self._values["method"]["name"]

    def __getattr__(self, table: str) -> Any:
        values = self.__dict__.get("_values", {})
        if table not in values:
            raise AttributeError(table)
        return _Table(values[table])

    def __getitem__(self, dotted: str) -> Any:
        table, key = dotted.split(".", 1)
        return self._values[table][key]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """A deep copy of the resolved values (every key, defaults filled in)."""
        return copy.deepcopy(self._values)

    def flat(self) -> dict[str, Any]:
        """``{"table.key": value}`` for every key."""
        return {f"{t}.{k}": v for t, keys in self._values.items() for k, v in keys.items()}

    @property
    def multi_label(self) -> bool:
        """Whether the dataset is multi-label (AudioSet, mini-AudioSet)."""
        return self._values["data"]["dataset"] in MULTI_LABEL

    def __repr__(self) -> str:
        v = self._values
        return (
            f"TrainConfig(name={v['experiment']['name']!r}, dataset={v['data']['dataset']!r}, "
            f"modalities={v['data']['modalities']}, method={v['method']['name']!r}, "
            f"epochs={v['train']['epochs']})"
        )


class _Table:
    def __init__(self, values: Mapping[str, Any]) -> None:
        self._v = values

    def __getattr__(self, key: str) -> Any:
        try:
            return self._v[key]
        except KeyError:
            raise AttributeError(key) from None


def _check_value(name: str, key: Key, value: Any) -> Any:
    if isinstance(value, bool) and bool not in key.types:
        raise ConfigError(f"Config key `{name}` should be {_type_names(key)}. Found {value!r}.")
    if float in key.types and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, key.types):
        raise ConfigError(
            f"Config key `{name}` should be {_type_names(key)}. Found {value!r} "
            f"({type(value).__name__})."
        )
    if key.choices is not None and value not in key.choices:
        raise ConfigError(
            f"Config key `{name}` should be one of {list(key.choices)}. Found {value!r}."
        )
    if key.minimum is not None and isinstance(value, (int, float)) and value < key.minimum:
        raise ConfigError(f"Config key `{name}` should be >= {key.minimum}. Found {value!r}.")
    return value


_TYPE_NAMES = {
    "str": "a string",
    "int": "an int",
    "float": "a number",
    "bool": "true/false",
    "list": "a list",
    "dict": "a table",
}


def _type_names(key: Key) -> str:
    return " or ".join(_TYPE_NAMES[t.__name__] for t in key.types)


def _validate(raw: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    unknown_tables = [t for t in raw if t not in SCHEMA]
    if unknown_tables:
        raise ConfigError(
            f"Unknown config table `[{unknown_tables[0]}]` in {source}; the tables are "
            f"{list(SCHEMA)}."
        )
    values: dict[str, dict[str, Any]] = {}
    for table, keys in SCHEMA.items():
        given = raw.get(table, {})
        if not isinstance(given, Mapping):
            raise ConfigError(f"Config key `{table}` should be a table. Found {given!r}.")
        unknown = [k for k in given if k not in keys]
        if unknown:
            raise ConfigError(
                f"Unknown config key `{table}.{unknown[0]}` in {source}; `[{table}]` has the "
                f"keys {sorted(keys)}."
            )
        out = {}
        for name, key in keys.items():
            if name in given:
                out[name] = _check_value(f"{table}.{name}", key, given[name])
            elif key.default is _REQUIRED:
                raise ConfigError(f"Config key `{table}.{name}` is required in {source}.")
            else:
                out[name] = copy.deepcopy(key.default)
        values[table] = out
    _check_together(values)
    return values


def _check_together(v: dict[str, dict[str, Any]]) -> None:
    data, method = v["data"], v["method"]
    mods = data["modalities"]
    bad = [m for m in mods if m not in MODALITIES]
    if not mods or bad or len(set(mods)) != len(mods):
        raise ConfigError(
            f"Config key `data.modalities` should list distinct names among {list(MODALITIES)}. "
            f"Found {mods!r}."
        )
    if "flow" in mods and data["dataset"] != "kinetics":
        raise ConfigError(
            f"Config key `data.modalities` lists 'flow', which only the 'kinetics' dataset reads "
            f"(precomputed flow files, docs/datasets.md). Found `data.dataset` = "
            f"{data['dataset']!r}; drop 'flow' or use kinetics."
        )
    if not 0.0 < data["holdout"] < 1.0:
        raise ConfigError(
            f"Config key `data.holdout` should be in (0, 1). Found {data['holdout']}."
        )
    jitter = data["train_short_side"]
    if (
        len(jitter) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in jitter)
        or not data["crop_size"] <= jitter[0] <= jitter[1]
    ):
        raise ConfigError(
            "Config key `data.train_short_side` should be [min, max] ints with crop_size <= min "
            f"<= max. Found {jitter!r} with crop_size={data['crop_size']}."
        )
    if data["test_short_side"] < data["crop_size"]:
        raise ConfigError(
            f"Config key `data.test_short_side` ({data['test_short_side']}) should be >= "
            f"`data.crop_size` ({data['crop_size']})."
        )
    for name in ("num_train_videos", "num_test_videos"):
        n = data[name]
        if (isinstance(n, str) and n != "mini") or (isinstance(n, int) and n < 0):
            raise ConfigError(
                f"Config key `data.{name}` should be an int >= 0 or 'mini'. Found {n!r}."
            )
    name = method["name"]
    single = name.startswith("single:") and name.split(":", 1)[1] in mods
    if name not in METHODS and not single:
        raise ConfigError(
            f"Config key `method.name` should be one of "
            f"{[*(f'single:{m}' for m in mods), *METHODS]}. Found {name!r}."
        )
    if not 0.0 < method["fraction"] <= 1.0:
        raise ConfigError(
            f"Config key `method.fraction` should be in (0, 1]. Found {method['fraction']}."
        )
    if method["metric"] == "error" and data["dataset"] in MULTI_LABEL:
        raise ConfigError(
            "Config key `method.metric` = 'error' (top-1 error) does not apply to the multi-label "
            f"dataset {data['dataset']!r}; use 'loss'."
        )
    heads = [*mods, "fused"]
    weights = method["weights"]
    if weights:
        if sorted(weights) != sorted(heads) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
            for w in weights.values()
        ):
            raise ConfigError(
                f"Config key `method.weights` should give a weight >= 0 to each head {heads}. "
                f"Found {weights!r}."
            )
        if method["weights_from"]:
            raise ConfigError("Config keys `method.weights` and `method.weights_from`: give one.")
    if method["weights_required"] and not (weights or method["weights_from"]):
        raise ConfigError(
            "Config key `method.weights_from` is required by this config "
            "(`method.weights_required = true`): point it at the report.json of the run whose "
            "weights to use, e.g. --set method.weights_from=RUNS/mini_audioset/report.json."
        )
    if (weights or method["weights_from"]) and not name.startswith("gblend"):
        raise ConfigError(
            f"Config keys `method.weights`/`method.weights_from` apply to G-Blend methods; "
            f"`method.name` is {name!r}."
        )


def parse_override(text: str) -> tuple[str, Any]:
    """``"table.key=value"`` → (``"table.key"``, value read as TOML, else the raw string)."""
    if "=" not in text:
        raise ConfigError(f"--set expects table.key=value. Found {text!r}.")
    key, value = text.split("=", 1)
    key = key.strip()
    if key.count(".") != 1:
        raise ConfigError(f"--set key should be table.key (e.g. train.epochs). Found {key!r}.")
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return key, parsed


def _apply(raw: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    table, key = dotted.split(".", 1)
    if table not in SCHEMA or key not in SCHEMA[table]:
        raise ConfigError(
            f"Unknown config key `{dotted}` ({origin}); `[{table}]` has the keys "
            f"{sorted(SCHEMA.get(table, {}))}."
            if table in SCHEMA
            else f"Unknown config table `{table}` ({origin}); the tables are {list(SCHEMA)}."
        )
    raw.setdefault(table, {})[key] = value


def load_config(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    smoke: bool = False,
) -> TrainConfig:
    """Read a TOML config, apply the smoke scale and ``--set`` overrides, validate.

    Args:
        path: the TOML file.
        overrides: ``"table.key=value"`` strings, applied last.
        smoke: apply :data:`SMOKE` before the overrides.

    Returns:
        The validated :class:`TrainConfig`.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key, bad value.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {path!r}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path!r} is not valid TOML: {exc}.") from None
    declared = raw.get("method", {}).get("name") if isinstance(raw.get("method"), dict) else None
    if smoke:
        for dotted, value in SMOKE.items():
            _apply(raw, dotted, copy.deepcopy(value), "smoke scale")
    for text in overrides:
        dotted, value = parse_override(text)
        _apply(raw, dotted, value, f"--set {text}")
    return TrainConfig(
        raw, source=path, declared_method=declared if isinstance(declared, str) else None
    )


def run_identity(cfg: TrainConfig) -> dict[str, Any]:
    """What the report calls the run: its name, the paper row it reproduces and the paper's
    numbers, for the method actually run.

    A config states one method and the paper row of that method. When ``--set method.name``
    runs another (a baseline such as ``naive``), the name swaps in that method and the paper
    row and numbers are left out (they belong to the config's method), with a note.

    Returns:
        ``{"name", "paper", "expected", "config_method", "config_paper"}``.
    """
    exp, method, declared = cfg.experiment, cfg.method.name, cfg.declared_method
    same = {"name": exp.name, "paper": exp.paper, "expected": copy.deepcopy(exp.expected)}
    if method == declared:
        return {**same, "config_method": declared, "config_paper": exp.paper}
    tag = method.replace(":", "_")
    name = exp.name.replace(declared, tag) if declared in exp.name else f"{exp.name}_{tag}"
    return {
        "name": name,
        "paper": "",
        "expected": {},
        "config_method": declared,
        "config_paper": exp.paper,
    }


def config_diff(
    old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """``table.key: old -> new`` lines for keys that differ (ignoring :data:`RESUMABLE_CHANGES`)."""
    lines = []
    for table in sorted(set(old) | set(new)):
        a, b = old.get(table, {}), new.get(table, {})
        for key in sorted(set(a) | set(b)):
            dotted = f"{table}.{key}"
            if dotted not in RESUMABLE_CHANGES and a.get(key) != b.get(key):
                lines.append(f"{dotted}: {a.get(key)!r} -> {b.get(key)!r}")
    return lines
