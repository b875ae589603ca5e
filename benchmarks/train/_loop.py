"""The training loop of ``python -m benchmarks train``: one config, one run folder.

Per epoch: ``blender.start_epoch()`` (G-Blend estimates per the schedule), one pass over T
(bf16 autocast, channels-last and uint8 clips normalized on the device on CUDA, DDP under
torchrun), the holdout metric per head, a JSON line in ``epochs.jsonl``, a checkpoint.
Checkpoints (``checkpoint.pt``, written atomically) also every
``train.checkpoint_every_steps`` steps, holding the model, blender,
LR scheduler, every rank's random state and the position in the epoch; ``--resume`` continues
from there and ends with the same numbers (bit-identical on CPU: data order and augmentation
depend only on (seed, epoch, index)). After the last epoch: the test evaluation and the
report (see :mod:`benchmarks.train._report`).

The previous checkpoint is kept beside the newest (``checkpoint.prev.pt``); ``--resume``
falls back to it, with a warning, when the newest does not load. A loss that stops being
finite ends the run with :class:`DivergedError` before anything is written over: the run
folder keeps its last good checkpoint, ``epochs.jsonl``, and ``divergence.json`` plus
``report.md`` saying which head diverged at which step, the last finite losses and the
checkpoint to start again from.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import blendopt
from benchmarks.data import KINETICS_MEAN, KINETICS_STD, FrameNormalizer, SkipReport
from benchmarks.train._checkpoint import (
    load_latest,
    previous_path,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from benchmarks.train._config import ConfigError, TrainConfig, config_diff, run_identity
from benchmarks.train._data import (
    DataError,
    RunData,
    build_data,
    make_loader,
    print_skipped,
    worker_count,
)
from benchmarks.train._distributed import DistInfo, agree_all, all_gather, setup_distributed
from benchmarks.train._evaluate import (
    choose_predictor,
    evaluate_videos,
    primary_metric,
    score_videos,
    video_metrics,
)
from benchmarks.train._model import FUSED, blend_setup, build_model
from benchmarks.train._report import divergence_markdown, write_report

__all__ = ["CHECKPOINT", "DivergedError", "StopRequestedError", "run_training"]

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
EPOCHS = "epochs.jsonl"
DIVERGENCE = "divergence.json"
#: What a checkpoint of this loop holds (a file without these keys is not one).
CHECKPOINT_KEYS = ("model", "blender", "scheduler", "epoch", "batch", "step", "records", "rng")


class StopRequestedError(RuntimeError):
    """``--stop-after-steps`` was reached (a debug option that simulates a killed run)."""


class DivergedError(RuntimeError):
    """A training loss stopped being finite; ``record`` is what ``divergence.json`` holds."""

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


class _FiniteWatch:
    """Watches the per-head training losses for divergence, on their device.

    Per head: the first step whose loss is not finite (and that value), and the last finite
    loss before it with its step; plus the last few steps' losses. Recording costs a few
    device operations; on the CPU :meth:`record` also checks at once (free there), elsewhere
    the loop calls :meth:`ok` before each checkpoint and at each epoch's end (one sync).
    """

    def __init__(self, heads: Sequence[str], device: torch.device, info: DistInfo) -> None:
        k, f64 = len(heads), torch.float64
        self.heads, self.info = list(heads), info
        self.every_step = checks_every_step(device)
        self.first_bad = torch.full((k,), -1, dtype=torch.int64, device=device)
        self.bad_value = torch.zeros(k, dtype=f64, device=device)
        self.last_loss = torch.full((k,), math.nan, dtype=f64, device=device)
        self.last_step = torch.full((k,), -1, dtype=torch.int64, device=device)
        self.recent: deque[tuple[int, torch.Tensor]] = deque(maxlen=5)
        self.where: tuple[int, int] = (0, 0)  # (epoch, batch) of the latest step recorded

    def record(self, step: int, epoch: int, batch: int, losses: Mapping[str, Any]) -> bool:
        """Add the losses of optimizer step ``step`` (1-based); return False when, checked at
        once (on the CPU), a loss of some rank is not finite."""
        v = torch.stack([losses[h].detach().double() for h in self.heads])
        finite = torch.isfinite(v)
        clean = self.first_bad < 0
        new_bad = ~finite & clean
        self.first_bad = torch.where(new_bad, step, self.first_bad)
        self.bad_value = torch.where(new_bad, v, self.bad_value)
        good = finite & clean
        self.last_loss = torch.where(good, v, self.last_loss)
        self.last_step = torch.where(good, step, self.last_step)
        self.recent.append((step, v))
        self.where = (epoch, batch)
        return self.ok() if self.every_step else True

    def ok(self) -> bool:
        """Whether every loss so far was finite on every rank (one sync)."""
        return agree_all(self.info, bool((self.first_bad < 0).all()))

    def summary(self) -> dict[str, Any]:
        """This rank's view, as plain numbers (gathered from every rank on divergence)."""
        first, bad = self.first_bad.tolist(), self.bad_value.tolist()
        last, last_step = self.last_loss.tolist(), self.last_step.tolist()
        return {
            "bad": {h: (first[i], bad[i]) for i, h in enumerate(self.heads) if first[i] >= 0},
            "last": {h: (last_step[i], last[i]) for i, h in enumerate(self.heads)},
            "recent": [(s, v.tolist()) for s, v in self.recent],
            "where": self.where,
        }


def checks_every_step(device: torch.device) -> bool:
    """Whether the loop checks the losses at every step: on the CPU, where reading them back
    costs nothing; an accelerator would synchronize every step."""
    return device.type == "cpu"


def _number(x: float) -> float | str:
    """``x`` for JSON: non-finite values as strings ("nan", "inf")."""
    return x if math.isfinite(x) else str(x)


def _divergence_record(
    watch: _FiniteWatch, last_checkpoint: dict[str, Any] | None, cfg: TrainConfig, epochs: int
) -> dict[str, Any]:
    """What ``divergence.json`` holds, merged over the ranks (the earliest bad step wins)."""
    views = all_gather(watch.info, watch.summary())
    bad: dict[str, tuple[int, float]] = {}
    for view in views:
        for h, (s, v) in view["bad"].items():
            if h not in bad or s < bad[h][0]:
                bad[h] = (s, v)
    last = {h: (s, v) for h, (s, v) in views[0]["last"].items() if s >= 0}  # rank 0's losses
    step = min((s for s, _ in bad.values()), default=-1)
    first = [h for h, (s, _) in bad.items() if s == step]
    epoch, batch = views[0]["where"]
    return {
        "step": step,
        "detected_in_epoch": epoch,  # that of the step on the CPU, which checks every step
        "detected_at_batch": batch,
        "epochs_completed": epochs,
        "heads": {h: str(bad[h][1]) for h in first},
        "other_heads_later": {
            h: {"step": s, "loss": str(v)} for h, (s, v) in bad.items() if h not in first
        },
        "last_finite_losses": {h: {"step": s, "loss": v} for h, (s, v) in last.items()},
        "recent_losses": [
            {"step": s, "losses": dict(zip(watch.heads, map(_number, v), strict=True))}
            for s, v in views[0]["recent"]
        ],
        "checkpoint": last_checkpoint,
        "optim": cfg.to_dict()["optim"],
        "method": cfg.method.name,
    }


def _diverged(
    watch: _FiniteWatch,
    out: Path,
    last_checkpoint: dict[str, Any] | None,
    cfg: TrainConfig,
    records: list[dict[str, Any]],
) -> DivergedError:
    """Write ``divergence.json`` and ``report.md`` (rank 0) and build the one-line error."""
    record = _divergence_record(watch, last_checkpoint, cfg, len(records))
    identity = run_identity(cfg)
    if watch.info.is_main:
        _atomic_write(out / DIVERGENCE, json.dumps(record, indent=1) + "\n")
        _atomic_write(out / "report.md", divergence_markdown(identity["name"], record, records))
    heads = ", ".join(f"{h!r} ({v})" for h, v in record["heads"].items()) or "?"
    last = ", ".join(
        f"{h} {x['loss']:.4g} (step {x['step']})" for h, x in record["last_finite_losses"].items()
    )
    kept = (
        f"kept {out / last_checkpoint['file']} (step {last_checkpoint['step']}, "
        f"{last_checkpoint['epochs_completed']} epochs complete)"
        if last_checkpoint
        else "no checkpoint was written before it"
    )
    message = (
        f"the loss of head {heads} is not finite at step {record['step']} (detected in epoch "
        f"{record['detected_in_epoch']}); last finite losses: {last or 'none'}; {kept}; wrote "
        f"{out / DIVERGENCE} and {out / 'report.md'}. Lower optim.lr (now "
        f"{cfg.optim.lr:g}) and start a new run with another --out."
    )
    return DivergedError(message, record)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class NonEmpty:
    """The loader's batches minus the empty ones (every sample unreadable), counted.

    Under torchrun a batch is dropped on every rank when it is empty on any rank, so the
    ranks keep taking the same number of steps (their collectives stay matched).
    """

    def __init__(self, loader: Any, skips: SkipReport, info: DistInfo) -> None:
        self.loader, self.skips, self.info = loader, skips, info
        self.empty_batches = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.skips.update(batch)
            if agree_all(self.info, batch.size > 0):
                yield batch
            else:
                self.empty_batches += 1


def _optimizer(cfg: TrainConfig, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.Adagrad(params, lr=o.lr, weight_decay=o.weight_decay)


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, cfg.train.epochs * steps_per_epoch)
    warm = cfg.optim.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.optim.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return factor


def normalize_where(cfg: TrainConfig, device: torch.device) -> str:
    """Where RGB clips are normalized: ``data.normalize``, with ``"auto"`` resolved to
    ``"device"`` on CUDA (uint8 clips: a quarter of the bytes to collate, pin and copy, and
    no float work in the workers) and ``"worker"`` elsewhere (a CPU run's main process
    trains: the workers normalize in parallel with it)."""
    where = cfg.data.normalize
    if where == "auto":
        return "device" if device.type == "cuda" else "worker"
    return where


class _Runner:
    """Holds what the loop and the closures passed to blendopt share.

    ``frames`` normalizes uint8 RGB batches (datasets with ``normalize="device"``) right
    after they reach the device; float batches pass unchanged.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        device: torch.device,
        multi_label: bool,
        frames: FrameNormalizer | None = None,
    ) -> None:
        self.device = device
        self.frames = frames or FrameNormalizer(KINETICS_MEAN, KINETICS_STD)
        self.cuda = device.type == "cuda"
        self.bf16 = self.cuda and cfg.train.precision == "bf16"
        self.channels_last = self.cuda and cfg.model.channels_last
        self.multi_label = multi_label
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed clip shapes: pick the fastest kernels

    def to_device(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for m, x in inputs.items():
            x = x.to(self.device, non_blocking=True)
            if x.dtype == torch.uint8:  # frames as decoded: normalized here, on the device
                x = self.frames(x, channels_last=self.channels_last)
            if self.channels_last and x.ndim in (4, 5):
                fmt = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
                x = x.contiguous(memory_format=fmt)
            out[m] = x
        return out

    def forward(self, model: nn.Module, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ctx = (
            torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        )
        with ctx:
            logits = model(self.to_device(inputs))
        return {h: z.float() for h, z in logits.items()}

    def target(self, batch: Any) -> torch.Tensor:
        return batch[1].to(self.device, non_blocking=True)

    def loss_fn(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        logits = self.forward(model, batch[0])
        target = self.target(batch)
        if self.multi_label:
            return {h: F.binary_cross_entropy_with_logits(z, target) for h, z in logits.items()}
        return {h: F.cross_entropy(z, target) for h, z in logits.items()}

    def predict(self, model: nn.Module, batch: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return self.forward(model, batch[0]), self.target(batch)


def _channels_last(model: nn.Module) -> None:
    for p in model.parameters():
        if p.ndim == 5:
            p.data = p.data.contiguous(memory_format=torch.channels_last_3d)
        elif p.ndim == 4:
            p.data = p.data.contiguous(memory_format=torch.channels_last)


def _prepare_out(cfg: TrainConfig, out: Path, resume: bool, info: DistInfo) -> None:
    saved = out / CONFIG
    ckpt = out / CHECKPOINT
    if not ckpt.is_file() and previous_path(ckpt).is_file():
        ckpt = previous_path(ckpt)  # only the previous one: --resume falls back to it
    if resume:
        if not ckpt.is_file() or not saved.is_file():
            raise ConfigError(
                f"--resume: {out} holds no run to resume ({CHECKPOINT} and {CONFIG} missing); "
                "drop --resume to start one."
            )
        diff = config_diff(json.loads(saved.read_text()), cfg.to_dict())
        if diff:
            raise ConfigError(
                f"--resume: the run in {out} was started with another config; differing keys:\n  "
                + "\n  ".join(diff)
                + "\nResume with the same config and --set values, or pick another --out."
            )
    elif ckpt.is_file():
        raise ConfigError(
            f"--out {out} already holds a run ({ckpt.name}); pass --resume to continue it or "
            "choose another folder."
        )


def _progress_bar(total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is an optional extra
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True)


def _tensorboard(cfg: TrainConfig, out: Path, info: DistInfo) -> Any:
    if not (cfg.train.tensorboard and info.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("train.tensorboard = true but tensorboard is not installed; skipping it.")
        return None
    return SummaryWriter(str(out / "tensorboard"))


def run_training(
    cfg: TrainConfig,
    data_root: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    device: str | None = None,
    stop_after_steps: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` on ``data_root`` into the run folder ``out``; return the report.

    Args:
        cfg: the validated config.
        data_root: the dataset's folder (layout: ``benchmarks.train._data``).
        out: the run folder (config, checkpoint, epochs.jsonl, report, plots).
        resume: continue the run in ``out`` from its checkpoint.
        device: torch device name (default CUDA if available).
        stop_after_steps: raise :class:`StopRequestedError` after this many optimizer steps
            (debugging / tests: a run killed mid-way).
        progress: tqdm progress bars (if tqdm is installed, on rank 0).

    Raises:
        ConfigError, DataError: bad config, data root, or run folder (before training).
        StopRequestedError: ``stop_after_steps`` reached.
    """
    info, dev = setup_distributed(device)
    out = Path(out)
    _prepare_out(cfg, out, resume, info)
    show = progress and info.is_main
    data = build_data(cfg, data_root)  # a data root that does not match fails here
    if info.is_main and not resume:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=1, sort_keys=True) + "\n")
    where = normalize_where(cfg, dev)
    for ds in (data.train, data.holdout, data.probe, data.test):
        ds.normalize = where
    spec = data.train.spec
    runner = _Runner(cfg, dev, data.multi_label, FrameNormalizer(spec.mean, spec.std))
    workers = worker_count(cfg.data.workers, info.local_world)
    seed = cfg.train.seed

    torch.manual_seed(seed)  # identical initialization on every rank
    heads_setup = blend_setup(cfg, [*cfg.data.modalities, FUSED])
    model = build_model(cfg, data.num_classes, fusion_dropout=heads_setup.fusion_dropout)
    heads = model.head_names
    torch.manual_seed(seed + 7919 * info.rank)  # each rank its own dropout masks from here
    model.to(dev)
    if runner.channels_last:
        _channels_last(model)
    trained: nn.Module = model
    if info.enabled:
        trained = nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    if cfg.model.compile:
        trained = torch.compile(trained)

    bs = cfg.train.batch_size
    pin = dev.type == "cuda"
    train_loader = make_loader(
        data.train,
        bs,
        train=True,
        workers=workers,
        seed=seed,
        rank=info.rank,
        world=info.world,
        pin_memory=pin,
        persistent=True,
    )
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ConfigError(
            f"Config key `train.batch_size` ({bs}) is larger than this process's share of the "
            f"{len(data.train)} training videos; lower it."
        )
    train_skips, est_skips, test_skips = SkipReport(), SkipReport(), SkipReport()
    eval_bs = cfg.train.eval_batch_size

    def eval_loader(ds: Any) -> NonEmpty:
        loader = make_loader(
            ds, eval_bs, train=False, workers=workers, seed=seed, rank=info.rank, world=info.world
        )
        return NonEmpty(loader, est_skips, info)

    holdout_loader, probe_loader = eval_loader(data.holdout), eval_loader(data.probe)
    inner = _optimizer(cfg, model.parameters())
    # Heads at weight 0 stay in the graph (as 0 · L_k): DDP needs every parameter used every
    # step, and one and several processes then train identically.
    estimator: blendopt.RetrainEstimator | None = None
    if heads_setup.weights is not None:
        blender = blendopt.GradientBlender(
            inner, heads, heads_setup.weights, mask_zero_weights=False
        )
    elif heads_setup.schedule == "rolling":
        # No model copies: per-head gradients of the run itself, its default step schedule;
        # its statistics are reduced across ranks, so every rank holds the same weights.
        rolling = blendopt.RollingEstimator(
            trained, runner.loss_fn, holdout_loader, probe=probe_loader, seed=seed
        )
        blender = blendopt.GradientBlender(inner, heads, rolling, mask_zero_weights=False)
    else:
        est_train = make_loader(
            data.train,
            bs,
            train=True,
            workers=0,
            seed=seed + 1,
            rank=info.rank,
            world=info.world,
            free_running=True,
        )
        error = cfg.method.metric == "error"
        estimator = blendopt.RetrainEstimator(
            trained,
            runner.loss_fn,
            NonEmpty(est_train, est_skips, info),
            holdout_loader,
            probe=probe_loader,
            epochs=cfg.method.estimate_epochs or None,
            metric=blendopt.top1_error(runner.predict) if error else "loss",
            # An error on n samples moves in steps of 1/n: floor dO² there (as the main job).
            eps=(1.0 / len(data.holdout)) ** 2 if error else blendopt.functional.DEFAULT_EPS,
            fraction=cfg.method.fraction,
            seed=seed,
            progress=show,
        )
        schedule = (
            blendopt.Offline(horizon=cfg.train.epochs)
            if heads_setup.schedule == "offline"
            else blendopt.Online(every=cfg.method.online_every, warmup=cfg.method.online_warmup)
        )
        blender = blendopt.GradientBlender(
            inner, heads, estimator, schedule=schedule, mask_zero_weights=False
        )
    scheduler = torch.optim.lr_scheduler.LambdaLR(blender, _lr_lambda(cfg, steps_per_epoch))
    if estimator is not None:
        # Algorithm 1's copies follow the run's learning-rate schedule over the horizon.
        estimator.scheduler, estimator.scheduler_interval = scheduler, "step"
    holdout_metric = "top1_error" if cfg.method.metric == "error" else "loss"
    measure_fn = blendopt.top1_error(runner.predict) if holdout_metric == "top1_error" else None

    # -- state that a checkpoint carries --------------------------------------------------
    epoch, batch_pos, step = 0, 0, 0
    records: list[dict[str, Any]] = []
    acc: dict[str, Any] = _fresh_accumulators(heads, dev)
    last_checkpoint: dict[str, Any] | None = None
    if resume:
        ckpt, loaded, broken = load_latest(out / CHECKPOINT, CHECKPOINT_KEYS)
        if broken is not None and info.is_main:
            aside = out / "checkpoint.broken.pt"
            with contextlib.suppress(OSError):  # keep it for a look, out of the rotation
                os.replace(out / CHECKPOINT, aside)
            print(
                f"warning: {broken} Resuming from the previous checkpoint {loaded} instead; the "
                f"broken file is now {aside.name}.",
                file=sys.stderr,
                flush=True,
            )
        if ckpt["world"] != info.world:
            raise ConfigError(
                f"--resume: the run in {out} was trained by {ckpt['world']} processes; resume it "
                f"with the same number (found {info.world}), or the data order would change."
            )
        model.load_state_dict(ckpt["model"])
        blender.load_state_dict(ckpt["blender"])
        scheduler.load_state_dict(ckpt["scheduler"])
        epoch, batch_pos, step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
        records, acc = ckpt["records"], ckpt["accumulators"]
        acc["loss_sum"] = {h: v.to(dev) for h, v in acc["loss_sum"].items()}
        for report, counts in zip((train_skips, est_skips, test_skips), ckpt["skips"], strict=True):
            _restore_skips(report, counts)
        set_rng_state(ckpt["rng"][info.rank])
        last_checkpoint = {"file": loaded.name, "epochs_completed": epoch, "step": step}
        if info.is_main:
            _say_resuming(out, loaded, epoch, batch_pos, step, steps_per_epoch, cfg.train.epochs)
    watch = _FiniteWatch(heads, dev, info)

    def checkpoint() -> None:
        nonlocal last_checkpoint
        if not watch.ok():  # never write a diverged model over the last good checkpoint
            raise _diverged(watch, out, last_checkpoint, cfg, records)
        states = all_gather(info, rng_state())
        if info.is_main:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "blender": blender.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "epoch": epoch,
                    "batch": batch_pos,
                    "step": step,
                    "records": records,
                    "accumulators": {
                        **acc,
                        "loss_sum": {h: v.cpu() for h, v in acc["loss_sum"].items()},
                    },
                    "skips": [_skip_counts(r) for r in (train_skips, est_skips, test_skips)],
                    "rng": states,
                    "world": info.world,
                },
                out / CHECKPOINT,
                keep_previous=True,
            )
        last_checkpoint = {"file": CHECKPOINT, "epochs_completed": epoch, "step": step}

    writer = _tensorboard(cfg, out, info)
    every = cfg.train.checkpoint_every_steps
    with warnings.catch_warnings():
        # Zeroed heads and rejected estimates are part of G-Blend; the blender's history and
        # the report record every one of them.
        warnings.simplefilter("ignore", blendopt.BlendWarning)
        while epoch < cfg.train.epochs:
            if batch_pos == 0:
                t0 = time.perf_counter()
                record = _checked(blender.start_epoch, est_skips)
                acc["estimate_seconds"] += time.perf_counter() - t0
                if record is not None and show:
                    w = ", ".join(f"{h}={v:.3f}" for h, v in blender.weights.items())
                    print(f"epoch {epoch}: G-Blend weights {w}", flush=True)
            train_loader.sampler.set_epoch(epoch, skip=batch_pos * bs)
            bar = _progress_bar(
                steps_per_epoch, batch_pos, f"epoch {epoch + 1}/{cfg.train.epochs}", show
            )
            model.train()
            it = iter(train_loader)
            epoch_start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                batch = next(it, None)
                waited = time.perf_counter() - t0
                if batch is None:
                    break
                acc["data_wait"] += waited
                batch_pos += 1
                train_skips.update(batch)
                if not agree_all(info, batch.size > 0):
                    acc["empty_batches"] += 1
                    continue
                blender.zero_grad(set_to_none=True)
                losses = runner.loss_fn(trained, batch)
                if not watch.record(step + 1, epoch + 1, batch_pos, losses):
                    raise _diverged(watch, out, last_checkpoint, cfg, records)
                try:
                    blender.backward(losses)
                    blender.step()
                except (FloatingPointError, ValueError):  # the blender's own finite check
                    if watch.ok():
                        raise
                    raise _diverged(watch, out, last_checkpoint, cfg, records) from None
                scheduler.step()
                step += 1
                acc["clips"] += batch.size
                for h, v in losses.items():  # summed on the device: no sync per step
                    acc["loss_sum"][h] += v.detach().double()
                acc["loss_steps"] += 1
                if bar is not None:
                    bar.update(1)
                    if step % 20 == 0:
                        bar.set_postfix(
                            loss=f"{float(losses[FUSED]):.3f}", skipped=train_skips.count
                        )
                acc["seconds"] += time.perf_counter() - epoch_start
                epoch_start = time.perf_counter()
                if every and step % every == 0 and batch_pos < steps_per_epoch:
                    checkpoint()
                if stop_after_steps is not None and step >= stop_after_steps:
                    if bar is not None:
                        bar.close()
                    raise StopRequestedError(f"stopped after {step} steps (--stop-after-steps)")
            if bar is not None:
                bar.close()
            if runner.cuda:
                torch.cuda.synchronize(dev)  # the epoch's time includes its queued GPU work
            acc["seconds"] += time.perf_counter() - epoch_start
            if not watch.ok():
                raise _diverged(watch, out, last_checkpoint, cfg, records)
            records.append(
                _epoch_record(
                    epoch,
                    step,
                    acc,
                    heads,
                    blender,
                    info,
                    train_skips,
                    holdout_metric,
                    _holdout(cfg, epoch, model, runner, holdout_loader, measure_fn, heads),
                )
            )
            if show:
                r = records[-1]
                print(
                    f"epoch {epoch + 1}: loss "
                    + ", ".join(f"{h} {v:.3f}" for h, v in r["train_loss"].items())
                    + f" | {r['clips_per_second']:.1f} clips/s, data wait "
                    f"{100 * r['data_wait_share']:.0f}%",
                    flush=True,
                )
            if writer is not None:
                _log_tensorboard(writer, records[-1])
            epoch, batch_pos, acc = epoch + 1, 0, _fresh_accumulators(heads, dev)
            if info.is_main:
                _write_jsonl(out / EPOCHS, records)
            checkpoint()

    # -- evaluation and report ------------------------------------------------------------
    weights = blender.weights
    t0 = time.perf_counter()
    eval_args = {
        "multi_label": data.multi_label,
        "batch_size": eval_bs,
        "workers": workers,
        "info": info,
    }
    test = evaluate_videos(model, data.test, runner.forward, weights, skips=test_skips, **eval_args)
    on_v = score_videos(
        model, data.holdout, runner.forward, weights, skips=SkipReport(), **eval_args
    )
    holdout = video_metrics(on_v)
    choice = choose_predictor(on_v, weights, FUSED) if heads_setup.is_blend else None
    eval_seconds = time.perf_counter() - t0
    print_skipped({"train": train_skips, "estimate": est_skips, "test": test_skips})
    if writer is not None:
        writer.close()
    report = _report_dict(
        cfg,
        data,
        info,
        dev,
        heads_setup,
        blender,
        records,
        test,
        holdout,
        choice,
        (train_skips, est_skips, test_skips),
        eval_seconds,
    )
    if info.enabled:  # each rank's view, to check that every rank trained the same blend
        ranks = out / "ranks"
        ranks.mkdir(parents=True, exist_ok=True)
        checksum = float(sum(p.detach().double().sum().cpu() for p in model.parameters()))
        (ranks / f"rank{info.rank}.json").write_text(
            json.dumps(
                {
                    "rank": info.rank,
                    "final_weights": dict(blender.weights),
                    "weight_history": report["weight_history"],
                    "parameter_sum": checksum,
                }
            )
        )
    if info.is_main:
        write_report(report, records, out)
    return report


def _say_resuming(
    out: Path, loaded: Path, epoch: int, batch: int, step: int, per_epoch: int, epochs: int
) -> None:
    """The ``--resume`` line: where the run continues, or that a finished run is re-evaluated."""
    if epoch >= epochs:
        print(
            f"{out} finished all {epochs} epochs ({step} steps): --resume only re-evaluates it "
            "on the test split and rewrites its report (no training).",
            flush=True,
        )
        return
    print(
        f"resuming from epoch {epoch + 1}, step {step} ({loaded.name}: {epoch} of {epochs} "
        f"epochs done, batch {batch} of {per_epoch} in this one)",
        flush=True,
    )


def _checked(fn: Callable[[], Any], skips: SkipReport) -> Any:
    """Run ``fn``; a pass that saw no readable video becomes a :class:`DataError`."""
    try:
        return fn()
    except ValueError as exc:
        if "saw no samples" not in str(exc):
            raise
        raise DataError(
            f"Every video of the holdout V or the train probe T' was unreadable ({exc}); "
            f"skipped so far: {skips.by_reason()}, e.g. {skips.files()[:3]}. Fix or drop those "
            "files, or hold out more videos (data.holdout)."
        ) from exc


def _fresh_accumulators(heads: list[str], device: torch.device) -> dict[str, Any]:
    return {
        "loss_sum": {h: torch.zeros((), dtype=torch.float64, device=device) for h in heads},
        "loss_steps": 0,
        "clips": 0,
        "seconds": 0.0,
        "data_wait": 0.0,
        "estimate_seconds": 0.0,
        "empty_batches": 0,
    }


def _skip_counts(report: SkipReport) -> dict[str, Any]:
    return {
        "samples": report.samples,
        "batches": report.batches,
        "skipped": [[s.index, s.path, s.reason, s.fields] for s in report.skipped],
    }


def _restore_skips(report: SkipReport, counts: dict[str, Any]) -> None:
    from benchmarks.data import SkippedSample

    report.samples, report.batches = counts["samples"], counts["batches"]
    report.skipped = [SkippedSample(int(i), p, r, int(f)) for i, p, r, f in counts["skipped"]]


@torch.no_grad()
def _holdout(
    cfg: TrainConfig,
    epoch: int,
    model: nn.Module,
    runner: _Runner,
    loader: NonEmpty,
    metric: Any,
    heads: list[str],
) -> dict[str, float]:
    every = cfg.train.holdout_every
    if not every or (epoch + 1) % every:
        return {}
    fn = metric if metric is not None else runner.loss_fn
    was = torch.random.get_rng_state()
    values = _checked(
        lambda: blendopt.measure(model, fn, loader, heads, name="holdout metric"), loader.skips
    )
    torch.random.set_rng_state(was)
    return values


def _epoch_record(
    epoch: int,
    step: int,
    acc: dict[str, Any],
    heads: list[str],
    blender: blendopt.GradientBlender,
    info: DistInfo,
    skips: SkipReport,
    holdout_metric: str,
    holdout: dict[str, float],
) -> dict[str, Any]:
    sums = torch.stack(
        [acc["loss_sum"][h].cpu() for h in heads]
        + [torch.tensor(float(acc["loss_steps"]), dtype=torch.float64)]
    )
    gathered = all_gather(info, (sums, acc["clips"]))
    total = sum(g[0] for g in gathered)
    clips = sum(g[1] for g in gathered)
    steps = float(total[-1]) or 1.0
    seconds = acc["seconds"]
    return {
        "epoch": epoch + 1,
        "step": step,
        "train_loss": {h: float(total[i]) / steps for i, h in enumerate(heads)},
        "holdout": holdout,
        "holdout_metric": holdout_metric,
        "weights": dict(blender.weights),
        "seconds": seconds,
        "estimate_seconds": acc["estimate_seconds"],
        "clips_per_second": clips / seconds if seconds > 0 else 0.0,
        "data_wait_share": acc["data_wait"] / seconds if seconds > 0 else 0.0,
        "skipped_samples": skips.count,
        "empty_batches": acc["empty_batches"],
    }


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    _atomic_write(path, "".join(json.dumps(r) + "\n" for r in records))


def _log_tensorboard(writer: Any, r: dict[str, Any]) -> None:
    for h, v in r["train_loss"].items():
        writer.add_scalar(f"train_loss/{h}", v, r["epoch"])
    for h, v in r["holdout"].items():
        writer.add_scalar(f"holdout_{r['holdout_metric']}/{h}", v, r["epoch"])
    for h, v in r["weights"].items():
        writer.add_scalar(f"weight/{h}", v, r["epoch"])
    writer.add_scalar("clips_per_second", r["clips_per_second"], r["epoch"])
    writer.add_scalar("data_wait_share", r["data_wait_share"], r["epoch"])


def _report_dict(
    cfg: TrainConfig,
    data: RunData,
    info: DistInfo,
    dev: torch.device,
    setup: Any,
    blender: blendopt.GradientBlender,
    records: list[dict[str, Any]],
    test: dict[str, dict[str, float]],
    holdout: dict[str, dict[str, float]],
    choice: blendopt.PredictorChoice | None,
    skips: tuple[SkipReport, SkipReport, SkipReport],
    eval_seconds: float,
) -> dict[str, Any]:
    key = primary_metric(data.multi_label)
    predictors: dict[str, Any] = {"method_head": setup.evaluated_head}
    if choice is not None:  # the ensemble unless the fused head beats it significantly on V
        predictors["selected_on_holdout"] = choice.chosen
        predictors["choice"] = choice.to_dict()
    train_s, est_s, test_s = skips
    seconds = sum(r["seconds"] for r in records)
    clips = sum(r["clips_per_second"] * r["seconds"] for r in records)
    wait = sum(r["data_wait_share"] * r["seconds"] for r in records)
    identity = run_identity(cfg)
    return {
        "name": identity["name"],
        "paper": identity["paper"],
        "expected": identity["expected"],
        "config_method": identity["config_method"],
        "config_paper": identity["config_paper"],
        "dataset": cfg.data.dataset,
        "modalities": list(cfg.data.modalities),
        "method": cfg.method.name,
        "primary_metric": key,
        "predictors": predictors,
        "final_weights": dict(blender.weights),
        "weight_history": [
            {k: r[k] for k in ("epoch", "kind", "weights") if k in r} for r in blender.history
        ],
        "test": test,
        "holdout": holdout,
        "epochs": len(records),
        "steps": records[-1]["step"] if records else 0,
        "skipped": {
            "train": train_s.count,
            "estimate_and_holdout": est_s.count,
            "test": test_s.count,
            "by_reason": _merge_reasons(train_s, est_s, test_s),
            "files": sorted({*train_s.files(), *est_s.files(), *test_s.files()})[:100],
        },
        "data": data.notes,
        "timing": {
            "train_seconds": seconds,
            "estimate_seconds": sum(r["estimate_seconds"] for r in records),
            "eval_seconds": eval_seconds,
            "clips_per_second": clips / seconds if seconds > 0 else 0.0,
            "data_wait_share": wait / seconds if seconds > 0 else 0.0,
        },
        "world_size": info.world,
        "device": str(dev),
        "config": cfg.to_dict(),
    }


def _merge_reasons(*reports: SkipReport) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reports:
        for reason, n in r.by_reason().items():
            out[reason] = out.get(reason, 0) + n
    return out
